package admin

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/deact/deact/state"
	"golang.org/x/time/rate"
)

// MinTokenLen is the shortest secret Bootstrap accepts.
const MinTokenLen = 16

// NewToken returns a fresh random token secret (256 bits, URL-safe base64 with a "deact_" prefix).
func NewToken() (string, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	return "deact_" + base64.RawURLEncoding.EncodeToString(b[:]), nil
}

// BootstrapResult says what Bootstrap did with the secret it was given.
type BootstrapResult int

// What Bootstrap did.
const (
	BootstrapExists    BootstrapResult = iota // the secret is a token already (a restart): nothing to do
	BootstrapCreated                          // the store held no all-orgs admin token: the secret is one now
	BootstrapRevoked                          // the secret was revoked: it stays revoked, nothing is created
	BootstrapNotNeeded                        // another all-orgs admin token exists: the secret is not made one
)

// Bootstrap makes the token secret an admin token for all orgs, but only while the store holds no active
// all-orgs admin token (the first start, or a recovery after every such token was revoked): a bootstrap secret
// left in a file or an environment variable gains no power once an administrator exists. A revoked secret is
// never re-created (state keeps a revocation record per hash). The secret itself is not stored, only its
// SHA-256. Two admin nodes bootstrapping different secrets at the same moment may both create theirs.
func Bootstrap(ctx context.Context, store *state.Store, token string) (BootstrapResult, error) {
	if err := checkSecret(token); err != nil {
		return 0, err
	}
	hash := state.HashToken(token)
	if _, err := store.GetToken(ctx, hash); err == nil {
		return BootstrapExists, nil
	} else if !errors.Is(err, state.ErrNotFound) {
		return 0, err
	}
	if revoked, err := store.TokenRevoked(ctx, hash); err != nil {
		return 0, err
	} else if revoked {
		return BootstrapRevoked, nil
	}
	if exists, err := allOrgsAdminExists(ctx, store); err != nil {
		return 0, err
	} else if exists {
		return BootstrapNotNeeded, nil
	}
	_, err := store.CreateToken(ctx, state.Token{Hash: hash, Name: "bootstrap", AllOrgs: true, Role: state.RoleAdmin},
		state.Change{Actor: "deactd", Reason: "bootstrap admin token"})
	switch {
	case errors.Is(err, state.ErrRevoked): // revoked meanwhile
		return BootstrapRevoked, nil
	case errors.Is(err, state.ErrConflict): // created concurrently by another instance
		return BootstrapExists, nil
	case err != nil:
		return 0, err
	}
	return BootstrapCreated, nil
}

// allOrgsAdminExists reports whether any token may write for every org.
func allOrgsAdminExists(ctx context.Context, store *state.Store) (bool, error) {
	after := ""
	for {
		pg, err := store.ListTokens(ctx, after, 500)
		if err != nil {
			return false, err
		}
		for _, v := range pg.Items {
			if v.Record.AllOrgs && v.Record.Role == state.RoleAdmin {
				return true, nil
			}
		}
		if pg.Next == "" {
			return false, nil
		}
		after = pg.Next
	}
}

func checkSecret(token string) error {
	if len(token) < MinTokenLen {
		return fmt.Errorf("admin token must be at least %d characters", MinTokenLen)
	}
	for i := 0; i < len(token); i++ {
		if token[i] <= ' ' || token[i] >= 0x7f {
			return errors.New("admin token must be printable ASCII without spaces")
		}
	}
	return nil
}

// principal is an authenticated caller.
type principal struct {
	tok   state.Token
	actor string // what audit records and logs name the caller by: never the secret
}

// canWrite reports whether the caller may change state.
func (p *principal) canWrite() bool { return p.tok.Role == state.RoleAdmin }

// authorize checks that the caller may act on org; write asks for the admin role too.
func (p *principal) authorize(org string, write bool) error {
	if write && !p.canWrite() {
		return errReadOnly
	}
	if !p.tok.Allows(org) {
		return newError(kindForbidden, "DEACT-OrgNotAllowed", "the token may not act on org %s", org)
	}
	return nil
}

// authenticator checks token secrets against the hashed records in etcd, caches found records for a short
// time, and limits failed attempts per client address.
type authenticator struct {
	store    *state.Store
	cacheTTL time.Duration
	now      func() time.Time

	mu       sync.Mutex
	cache    map[string]cachedToken // by hash
	limiters map[string]*rate.Limiter
	limit    rate.Limit
	burst    int
}

type cachedToken struct {
	tok     state.Token
	expires time.Time
}

// maxLimiters bounds the per-address table; when it is full, addresses whose budget is whole again are dropped.
const maxLimiters = 10000

func newAuthenticator(store *state.Store, ttl time.Duration, limit rate.Limit, burst int) *authenticator {
	return &authenticator{store: store, cacheTTL: ttl, now: time.Now, cache: map[string]cachedToken{},
		limiters: map[string]*rate.Limiter{}, limit: limit, burst: burst}
}

// authenticate finds the token for secret. Callers from an address that failed too often are refused before
// the secret is looked at.
func (a *authenticator) authenticate(ctx context.Context, secret, clientIP string) (*principal, error) {
	lim := a.limiter(clientIP)
	if lim.Tokens() < 1 {
		return nil, errRateLimited
	}
	if secret == "" {
		lim.Allow()
		return nil, errNoToken
	}
	hash := state.HashToken(secret)
	tok, ok := a.cached(hash)
	if !ok {
		v, err := a.store.GetToken(ctx, hash)
		switch {
		case errors.Is(err, state.ErrNotFound):
			lim.Allow()
			return nil, errBadToken
		case err != nil:
			return nil, classify(fmt.Errorf("read token: %w", err))
		}
		tok = v.Record
		a.mu.Lock()
		a.cache[hash] = cachedToken{tok: tok, expires: a.now().Add(a.cacheTTL)}
		a.mu.Unlock()
	}
	// The record is found by its hash; comparing the hashes again in constant time guards against a record
	// stored under the wrong key.
	if subtle.ConstantTimeCompare([]byte(tok.Hash), []byte(hash)) != 1 {
		lim.Allow()
		return nil, errBadToken
	}
	name := tok.Name
	if name == "" {
		name = "token"
	}
	return &principal{tok: tok, actor: fmt.Sprintf("%s:%.12s", name, hash)}, nil
}

func (a *authenticator) cached(hash string) (state.Token, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	c, ok := a.cache[hash]
	if !ok {
		return state.Token{}, false
	}
	if a.now().After(c.expires) {
		delete(a.cache, hash)
		return state.Token{}, false
	}
	return c.tok, true
}

// forget drops a cached token (after it was deleted through this API).
func (a *authenticator) forget(hash string) {
	a.mu.Lock()
	delete(a.cache, hash)
	a.mu.Unlock()
}

func (a *authenticator) limiter(ip string) *rate.Limiter {
	a.mu.Lock()
	defer a.mu.Unlock()
	if l, ok := a.limiters[ip]; ok {
		return l
	}
	if len(a.limiters) >= maxLimiters {
		for k, l := range a.limiters {
			if l.Tokens() >= float64(a.burst) {
				delete(a.limiters, k)
			}
		}
	}
	l := rate.NewLimiter(a.limit, a.burst)
	a.limiters[ip] = l
	return l
}

// bearer extracts the secret from "Authorization: Bearer T".
func bearer(h http.Header) string {
	v := strings.TrimSpace(h.Get("Authorization"))
	if len(v) > 7 && strings.EqualFold(v[:7], "bearer ") {
		return strings.TrimSpace(v[7:])
	}
	return ""
}

// commvaultToken extracts the secret from Commvault's "Authtoken: QSDK T" (or a bare token, or "Bearer T"),
// falling back to the Authorization header.
func commvaultToken(h http.Header) string {
	v := strings.TrimSpace(h.Get("Authtoken"))
	if v == "" {
		return bearer(h)
	}
	for _, p := range []string{"qsdk ", "bearer "} {
		if len(v) > len(p) && strings.EqualFold(v[:len(p)], p) {
			return strings.TrimSpace(v[len(p):])
		}
	}
	return v
}

type ctxKey int

const clientIPKey ctxKey = iota

// clientIP is the address failed authentications are counted against: the peer's, proxies are not trusted.
func clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

func ipFromContext(ctx context.Context) string {
	s, _ := ctx.Value(clientIPKey).(string)
	return s
}
