package admin

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/deact/deact/admin/adminapi"
	"github.com/deact/deact/state"
	"github.com/prometheus/client_golang/prometheus"
	clientv3 "go.etcd.io/etcd/client/v3"
	"golang.org/x/time/rate"
)

// Config configures the admin API. Zero values take the defaults in brackets.
type Config struct {
	Store    *state.Store  // required
	Fanout   *state.Fanout // required; its Run must be going for confirmations to complete
	Logger   *slog.Logger
	Registry prometheus.Registerer // metrics are registered here; nil keeps them unregistered
	// ConfirmTimeout bounds the wait for gateway nodes after a write [2s]; a request may ask for another bound
	// with the header X-Deact-Confirm-Timeout or the query parameter confirmTimeout (e.g. "500ms"; "0" = do
	// not wait), up to MaxConfirmTimeout.
	ConfirmTimeout time.Duration
	// WriteTimeout bounds the etcd calls of one admin request, counted from its start [5s]: authentication, the
	// reads before a write and the write itself. When etcd does not answer in time (no quorum, no leader), the
	// request answers its API's "unavailable" (503; ZITADEL code 14; Commvault errorCode 12). The confirmation wait after a commit is
	// bounded by ConfirmTimeout, separately; an import bounds each batch by WriteTimeout and the whole body by
	// ImportTimeout.
	WriteTimeout time.Duration
	// CommvaultRoots are the web service roots of the Commvault-compatible API, matched case-insensitively
	// [/webconsole/api, /commandcenter/api].
	CommvaultRoots []string
	// MaxBodyBytes bounds request bodies [64 KiB]; larger ones get 413. The import endpoint has MaxImportBytes.
	MaxBodyBytes int64
	// MaxImportBytes bounds the NDJSON body of /v1/import [256 MiB].
	MaxImportBytes int64
	// ImportTimeout bounds one /v1/import from its authentication to its last batch [30m]. An authenticated
	// import is exempt from the listener's read timeout (it streams); this is its bound instead.
	ImportTimeout time.Duration
	// TokenCacheTTL is how long an answer about a token is trusted without reading etcd again [2s]: a token
	// deleted elsewhere keeps working on this instance for at most that long, and one created elsewhere may, while
	// bad tokens flood this instance, be refused for that long.
	TokenCacheTTL time.Duration
	// AuthFailureRate and AuthFailureBurst count failed authentications per client address [1/s, burst 20]:
	// once the burst is spent, the address's failures get 429 instead of 401 until its budget refills. A valid
	// token is never refused for them: the limit shapes answers to failures only.
	AuthFailureRate  rate.Limit
	AuthFailureBurst int
}

// DefaultWriteTimeout is the default of Config.WriteTimeout; adminapi.DefaultImportTimeout is Config.ImportTimeout's.
const DefaultWriteTimeout = 5 * time.Second

// MaxConfirmTimeout caps the confirmation wait a request may ask for.
const MaxConfirmTimeout = time.Minute

// API serves the admin API. It is safe for concurrent use; it starts no goroutines.
type API struct {
	cfg     Config
	store   *state.Store
	fanout  *state.Fanout
	log     *slog.Logger
	auth    *authenticator
	metrics *metrics
	roots   []string // lower-cased, without trailing slash
	handler http.Handler
	zitadel http.Handler
	native  *http.ServeMux
}

// New validates cfg and builds the API.
func New(cfg Config) (*API, error) {
	if cfg.Store == nil {
		return nil, errors.New("admin: Config.Store is required")
	}
	if cfg.Fanout == nil {
		return nil, errors.New("admin: Config.Fanout is required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.ConfirmTimeout == 0 {
		cfg.ConfirmTimeout = 2 * time.Second
	}
	if cfg.ConfirmTimeout < 0 || cfg.ConfirmTimeout > MaxConfirmTimeout {
		return nil, fmt.Errorf("admin: ConfirmTimeout %v is outside [0, %v]", cfg.ConfirmTimeout, MaxConfirmTimeout)
	}
	if cfg.WriteTimeout == 0 {
		cfg.WriteTimeout = DefaultWriteTimeout
	}
	if cfg.WriteTimeout < 0 {
		return nil, fmt.Errorf("admin: WriteTimeout %v must be positive", cfg.WriteTimeout)
	}
	if len(cfg.CommvaultRoots) == 0 {
		cfg.CommvaultRoots = []string{"/webconsole/api", "/commandcenter/api"}
	}
	if cfg.MaxBodyBytes == 0 {
		cfg.MaxBodyBytes = 64 << 10
	}
	if cfg.MaxImportBytes == 0 {
		cfg.MaxImportBytes = 256 << 20
	}
	if cfg.ImportTimeout == 0 {
		cfg.ImportTimeout = adminapi.DefaultImportTimeout
	}
	if cfg.MaxBodyBytes < 0 || cfg.MaxImportBytes < 0 || cfg.ImportTimeout < 0 {
		return nil, errors.New("admin: body limits and ImportTimeout must be positive")
	}
	if cfg.TokenCacheTTL == 0 {
		cfg.TokenCacheTTL = 2 * time.Second
	}
	if cfg.AuthFailureRate == 0 {
		cfg.AuthFailureRate = 1
	}
	if cfg.AuthFailureBurst == 0 {
		cfg.AuthFailureBurst = 20
	}
	a := &API{
		cfg: cfg, store: cfg.Store, fanout: cfg.Fanout, log: cfg.Logger.With("component", "admin"),
		auth: newAuthenticator(cfg.Store, cfg.TokenCacheTTL, cfg.AuthFailureRate, cfg.AuthFailureBurst),
	}
	for _, root := range cfg.CommvaultRoots {
		root = strings.TrimSuffix(strings.ToLower(root), "/")
		if !strings.HasPrefix(root, "/") || root == "/v1" || root == "/v2" || strings.HasPrefix(root, "/v2/") ||
			strings.HasPrefix(root, "/management") || strings.HasPrefix(root, "/zitadel.") {
			return nil, fmt.Errorf("admin: Commvault root %q must be an absolute path outside /v1, /v2, /management and /zitadel.*", root)
		}
		a.roots = append(a.roots, root)
	}
	var err error
	if a.metrics, err = newMetrics(cfg.Registry); err != nil {
		return nil, err
	}
	if a.zitadel, err = a.newZitadel(); err != nil {
		return nil, err
	}
	a.native = a.nativeMux()
	a.handler = http.HandlerFunc(a.serve)
	return a, nil
}

// Handler returns the handler for everything the admin API serves: /management/v1/... and
// /v2/organizations/... (ZITADEL REST), /zitadel.management.v1.ManagementService/...,
// /zitadel.org.v2.OrganizationService/..., /zitadel.project.v2.ProjectService/... and
// /zitadel.application.v2.ApplicationService/... (gRPC, gRPC-Web, Connect), the Commvault roots, and /v1/.
// gRPC needs HTTP/2: serve it with http.Server.Protocols including UnencryptedHTTP2 (or TLS).
func (a *API) Handler() http.Handler { return a.handler }

// serve routes a request to one of the three APIs, after the checks that all of them share.
func (a *API) serve(w http.ResponseWriter, r *http.Request) {
	defer func() {
		// A panic is a bug; it must not take the daemon down or leave the client hanging.
		if v := recover(); v != nil {
			if v == http.ErrAbortHandler {
				panic(v)
			}
			a.log.Error("admin handler panicked", "panic", v, "path", r.URL.Path)
			http.Error(w, "internal error", http.StatusInternalServerError)
		}
	}()
	base := context.WithValue(r.Context(), clientIPKey, clientIP(r))
	ctx, cancel := a.storeContext(base)
	defer cancel()
	r = r.WithContext(ctx)
	if id, action, ok := a.commvaultRoute(r.URL.EscapedPath()); ok {
		a.serveCommvault(w, r, id, action)
		return
	}
	if r.URL.Path == "/v1" || strings.HasPrefix(r.URL.Path, "/v1/") {
		a.serveNative(w, r)
		return
	}
	a.serveZitadel(w, r)
}

// readBody reads a whole request body up to the API's limit.
func (a *API) readBody(r *http.Request) ([]byte, error) {
	return readLimited(r.Body, r.ContentLength, a.cfg.MaxBodyBytes)
}

func readLimited(body io.Reader, contentLength, limit int64) ([]byte, error) {
	tooLarge := newError(kindTooLarge, "DEACT-BodyTooLarge", "request body is larger than %d bytes", limit)
	if contentLength > limit {
		return nil, tooLarge
	}
	if body == nil {
		return nil, nil
	}
	b, err := io.ReadAll(io.LimitReader(body, limit+1))
	if err != nil {
		return nil, newError(kindInvalid, "DEACT-BodyUnreadable", "request body could not be read")
	}
	if int64(len(b)) > limit {
		return nil, tooLarge
	}
	return b, nil
}

// confirmTimeout is the request's bound on the confirmation wait.
func (a *API) confirmTimeout(r *http.Request) (time.Duration, error) {
	v := r.Header.Get(adminapi.HeaderConfirmTimeout)
	if v == "" {
		v = r.URL.Query().Get("confirmTimeout")
	}
	if v == "" {
		return a.cfg.ConfirmTimeout, nil
	}
	return parseConfirmTimeout(v)
}

func parseConfirmTimeout(v string) (time.Duration, error) {
	d, err := time.ParseDuration(v)
	if err != nil {
		ms, merr := strconv.ParseInt(v, 10, 64)
		if merr != nil {
			return 0, newError(kindInvalid, "DEACT-BadConfirmTimeout", "confirm timeout %q is neither a duration (\"500ms\") nor milliseconds", v)
		}
		d = time.Duration(ms) * time.Millisecond
	}
	if d < 0 || d > MaxConfirmTimeout {
		return 0, newError(kindInvalid, "DEACT-BadConfirmTimeout", "confirm timeout %v is outside [0, %v]", d, MaxConfirmTimeout)
	}
	return d, nil
}

// storeContext bounds the etcd calls made under ctx by the write timeout, and makes them fail at once on a
// member that has no leader instead of waiting for one.
func (a *API) storeContext(ctx context.Context) (context.Context, context.CancelFunc) {
	base := requestContext(ctx)
	return context.WithTimeout(clientv3.WithRequireLeader(context.WithValue(base, requestCtxKey, base)), a.cfg.WriteTimeout)
}

// requestContext is the request's own context, without the write timeout that serve puts on it: for the
// confirmation wait and the import, which have bounds of their own.
func requestContext(ctx context.Context) context.Context {
	if base, ok := ctx.Value(requestCtxKey).(context.Context); ok {
		return base
	}
	return ctx
}

// confirm waits until every live gateway node applied rev, or the timeout passes. A timeout is not an error:
// the write is committed either way; the confirmation says how many nodes had it. The wait is bounded by
// timeout alone, not by the write timeout of the request.
func (a *API) confirm(ctx context.Context, rev int64, timeout time.Duration) state.Confirmation {
	ctx = requestContext(ctx)
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	c, err := a.fanout.WaitApplied(wctx, rev)
	a.metrics.observeConfirm(c, err == nil)
	if err != nil && ctx.Err() == nil {
		a.log.Info("write not confirmed by every node in time", "revision", rev, "confirmed", c.Confirmed,
			"total", c.Total, "pending", c.Pending, "timeout", timeout)
	}
	return c
}

// setConfirmHeaders reports a confirmation on the compatible APIs, whose bodies stay as the products define.
func setConfirmHeaders(h http.Header, c state.Confirmation) {
	if c.NotNeeded {
		h.Set(adminapi.HeaderConfirmed, adminapi.ConfirmNotNeeded)
		h.Set(adminapi.HeaderConfirmWaitMs, "0")
		return
	}
	h.Set(adminapi.HeaderConfirmed, fmt.Sprintf("%d/%d", c.Confirmed, c.Total))
	h.Set(adminapi.HeaderConfirmWaitMs, strconv.FormatFloat(c.WaitedMs, 'f', -1, 64))
}

// logFailure logs a failed request: client mistakes at debug level, our own failures at error level.
func (a *API) logFailure(api, op string, e *apiError) {
	if e.clientFault() {
		a.log.Debug("admin request refused", "api", api, "op", op, "code", e.name(), "msg", e.msg)
		return
	}
	a.log.Error("admin request failed", "api", api, "op", op, "code", e.name(), "err", e.err)
}

// logWrite logs a committed write, with how many gateways confirmed it.
func (a *API) logWrite(api, op string, p *principal, subject string, res state.Result, c state.Confirmation) {
	a.log.Info("admin write", "api", api, "op", op, "subject", subject, "actor", p.actor, "revision", res.Revision,
		"confirmed", c.Confirmed, "total", c.Total, "waited_ms", c.WaitedMs)
}

// bufferedBody replaces r's body with the bytes already read.
func bufferedBody(r *http.Request, b []byte) {
	r.Body = io.NopCloser(bytes.NewReader(b))
	r.ContentLength = int64(len(b))
}
