package admin

import (
	"context"
	"crypto/subtle"
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

// authenticator checks token secrets against the hashed records in etcd.
//
// A valid token is always accepted, whatever other clients (on the same address or not) send: the secret is
// checked first, and the per-address limiter only shapes the answer to failures (401, then 429 once the address
// has spent its failure budget). What failures may cost is bounded elsewhere, so that a flood of bad tokens never
// becomes a flood of etcd reads: found records are cached for cacheTTL, hashes etcd did not know too (negative
// cache), and lookups of hashes in neither cache spend a global budget (tokenLookupRate). Past that budget the
// hash is checked against a listing of every token record, made at most once per cacheTTL however many requests
// ask for it. So a token created on another instance within the last cacheTTL may be refused during such a
// flood; every other valid token is accepted.
type authenticator struct {
	store    *state.Store
	cacheTTL time.Duration
	now      func() time.Time
	lookups  *rate.Limiter // global budget of single-token reads for hashes in neither cache

	mu       sync.Mutex
	cache    map[string]cachedToken // by hash: found records
	bad      map[string]time.Time   // by hash: hashes etcd did not know, until when that answer holds
	limiters map[string]*rate.Limiter
	limit    rate.Limit
	burst    int

	tableMu  sync.Mutex // held while the listing is read: one listing at a time
	table    map[string]state.Token
	tableAt  time.Time // when table (or tableErr) was read
	tableErr error
}

type cachedToken struct {
	tok     state.Token
	expires time.Time
}

const (
	// maxLimiters bounds the per-address table; when it is full, addresses whose budget is whole again are dropped.
	maxLimiters = 10000
	// maxBadHashes bounds the negative cache; when it is full, expired entries go, and if none had, all of them.
	maxBadHashes = 10000
	// tokenLookupRate is the global budget of etcd reads for token hashes in neither cache, per second (and burst).
	tokenLookupRate = 100
)

func newAuthenticator(store *state.Store, ttl time.Duration, limit rate.Limit, burst int) *authenticator {
	return &authenticator{store: store, cacheTTL: ttl, now: time.Now, cache: map[string]cachedToken{},
		bad: map[string]time.Time{}, limiters: map[string]*rate.Limiter{}, limit: limit, burst: burst,
		lookups: rate.NewLimiter(tokenLookupRate, tokenLookupRate)}
}

// authenticate finds the token for secret. A failure counts against clientIP: once that address has spent its
// budget, failures answer errRateLimited instead of errBadToken. A store failure is returned as it is (503).
func (a *authenticator) authenticate(ctx context.Context, secret, clientIP string) (*principal, error) {
	if secret == "" {
		return nil, a.failed(clientIP, errNoToken)
	}
	hash := state.HashToken(secret)
	tok, ok := a.cached(hash)
	if !ok {
		if a.knownBad(hash) {
			return nil, a.failed(clientIP, errBadToken)
		}
		var err error
		if tok, err = a.lookup(ctx, hash); errors.Is(err, state.ErrNotFound) {
			return nil, a.failed(clientIP, errBadToken)
		} else if err != nil {
			return nil, classify(fmt.Errorf("read token: %w", err))
		}
	}
	// The record is found by its hash; comparing the hashes again in constant time guards against a record
	// stored under the wrong key.
	if subtle.ConstantTimeCompare([]byte(tok.Hash), []byte(hash)) != 1 {
		return nil, a.failed(clientIP, errBadToken)
	}
	name := tok.Name
	if name == "" {
		name = "token"
	}
	return &principal{tok: tok, actor: fmt.Sprintf("%s:%.12s", name, hash)}, nil
}

// lookup reads the token record of hash from etcd, and caches the answer (found or not) for cacheTTL.
func (a *authenticator) lookup(ctx context.Context, hash string) (state.Token, error) {
	var tok state.Token
	var err error
	if a.lookups.Allow() {
		var v state.Versioned[state.Token]
		v, err = a.store.GetToken(ctx, hash)
		tok = v.Record
	} else {
		tok, err = a.fromTable(ctx, hash)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	switch {
	case errors.Is(err, state.ErrNotFound):
		if len(a.bad) >= maxBadHashes {
			now := a.now()
			for h, exp := range a.bad {
				if now.After(exp) {
					delete(a.bad, h)
				}
			}
			if len(a.bad) >= maxBadHashes {
				clear(a.bad)
			}
		}
		a.bad[hash] = a.now().Add(a.cacheTTL)
	case err == nil:
		a.cache[hash] = cachedToken{tok: tok, expires: a.now().Add(a.cacheTTL)}
	}
	return tok, err
}

// fromTable finds hash in a listing of every token record, read again when it is older than cacheTTL. Callers
// wait for one another, so however many ask, etcd is listed at most once per cacheTTL (a failed listing is not
// retried within that time either).
func (a *authenticator) fromTable(ctx context.Context, hash string) (state.Token, error) {
	a.tableMu.Lock()
	defer a.tableMu.Unlock()
	if a.tableAt.IsZero() || a.now().Sub(a.tableAt) > a.cacheTTL {
		a.table, a.tableErr = a.listTokens(ctx)
		a.tableAt = a.now()
	}
	if a.tableErr != nil {
		return state.Token{}, a.tableErr
	}
	tok, ok := a.table[hash]
	if !ok {
		return state.Token{}, state.ErrNotFound
	}
	return tok, nil
}

func (a *authenticator) listTokens(ctx context.Context) (map[string]state.Token, error) {
	table := map[string]state.Token{}
	after := ""
	for {
		pg, err := a.store.ListTokens(ctx, after, 1000)
		if err != nil {
			return nil, err
		}
		for _, v := range pg.Items {
			table[v.Record.Hash] = v.Record
		}
		if pg.Next == "" {
			return table, nil
		}
		after = pg.Next
	}
}

// failed counts a failed authentication against ip and returns the error to answer with.
func (a *authenticator) failed(ip string, err *apiError) error {
	if !a.limiter(ip).Allow() {
		return errRateLimited
	}
	return err
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

func (a *authenticator) knownBad(hash string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	exp, ok := a.bad[hash]
	if ok && a.now().After(exp) {
		delete(a.bad, hash)
		return false
	}
	return ok
}

// remember caches a token created through this API, so that it works here at once, even during a flood.
func (a *authenticator) remember(tok state.Token) {
	a.mu.Lock()
	delete(a.bad, tok.Hash)
	a.cache[tok.Hash] = cachedToken{tok: tok, expires: a.now().Add(a.cacheTTL)}
	a.mu.Unlock()
}

// forget drops a cached token (after it was deleted through this API).
func (a *authenticator) forget(hash string) {
	a.mu.Lock()
	delete(a.cache, hash)
	delete(a.bad, hash)
	a.mu.Unlock()
	a.tableMu.Lock()
	delete(a.table, hash)
	a.tableMu.Unlock()
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

const (
	clientIPKey   ctxKey = iota
	requestCtxKey        // the request's context before serve bounded it by the write timeout
)

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
