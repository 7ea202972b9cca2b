// Package authz enforces deactivation at the edge: it classifies each login, token, backup, restore and API
// request, decides it against the in-memory state replica, and answers Envoy's ext_authz (gRPC) and nginx
// auth_request / Envoy HTTP ext_authz (HTTP) with an allow or a deny shaped for the client's API.
//
// deact is a deny-list: a request is denied only when a subject it names or implies (an org, a project, an app,
// an OAuth client, an account, an org domain) is deactivated for the request's op. Unknown subjects, requests
// deact cannot classify and opaque tokens pass; the upstream still authenticates and authorizes everything. A
// replica that has not loaded the state yet never allows: the gRPC server answers UNAVAILABLE and the HTTP
// handler 503.
//
// Bearer JWTs (and assertion or subject tokens in OAuth requests) are read without verifying their signature
// when Envoy's jwt_authn has not verified them already. That is safe for a deny-list: the upstream verifies
// every token itself, so a forged token can at most make deact deny a request (by naming a deactivated
// subject), never get one past the upstream. Parsed claims are cached by token hash until the token's exp;
// deactivation state is never cached, it is read from the current snapshot on every decision.
//
// Decisions take no lock of deact's, make no etcd call, and allocate nothing, allow or deny, when the subjects
// come from route facts, headers, a query or form body whose values need no decoding, a cached token or
// jwt_authn's string claims (TestDecisionsDoNotAllocate holds this for each transport and surface). A client_id
// in HTTP Basic credentials costs one allocation (two when it is percent-encoded), a JWT parsed at first sight
// and JSON, XML or protobuf bodies more; shaping a deny's response allocates.
package authz

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/deact/deact/state"
)

// Config configures an Authorizer. Zero values take the defaults in brackets.
type Config struct {
	// Replica is the state the decisions read. Required.
	Replica *state.Replica
	// Presets are the built-in route sets to enable, in order: "zitadel", "commvault" [both]. An empty non-nil
	// slice enables none.
	Presets []string
	// RulesFile is an optional YAML or JSON file of custom route rules (see RulesFile), tried before presets.
	RulesFile string
	// Rules are custom rules given directly, tried after those of RulesFile.
	Rules []Rule
	// Claims maps JWT claims to subjects per issuer [ZITADELClaims for every issuer].
	Claims []ClaimMapping
	// Logger receives deny lines at Info [discard].
	Logger *slog.Logger
	// DenyLogsPerSecond bounds the deny lines logged a second; the rest are counted, not logged [100]; negative
	// logs every deny.
	DenyLogsPerSecond int
	// Registry receives the check metrics [not registered].
	Registry prometheus.Registerer
	// RevisionHeader adds x-deact-revision (the etcd revision of the snapshot decided on) to allows and denies.
	RevisionHeader bool
	// Staleness is the fail-closed policy per op [serve last known state for every op].
	Staleness StalenessPolicy
	// Fenced, when set, is asked on every decision whose op reads state (all but other), with the clock reading
	// the staleness policy uses too (taken once the decision is made; only its monotonic part is exact); while
	// it is true the decision is refused with ErrFenced (gRPC UNAVAILABLE, HTTP 503). A gateway passes its node
	// reporter's FencedAt: a node that cannot prove it is still counted by writers must not answer [never
	// fenced].
	Fenced func(now time.Time) bool
	// TokenCacheEntries bounds the parsed-claims cache [100000]; negative disables it.
	TokenCacheEntries int64
	// TokenCacheTTL bounds how long parsed claims are kept; never past the token's exp [10m].
	TokenCacheTTL time.Duration
	// MaxTokenBytes is the largest JWT deact reads; a larger one is denied (token_too_large) [32 KiB].
	MaxTokenBytes int
	// MaxBodyBytes is how much of a body the HTTP check endpoint reads; of a larger one it decides the prefix,
	// so a route whose decision depends on the body refuses it (413, body_incomplete) [1 MiB, what
	// deactctl envoy-config buffers at most].
	MaxBodyBytes int64
}

// ErrNotReady refuses a decision (gRPC UNAVAILABLE, HTTP 503) while the replica has not loaded the state.
var ErrNotReady = errors.New("authz: state replica not ready")

// ErrFenced refuses a decision (gRPC UNAVAILABLE, HTTP 503) while Config.Fenced says the node must not decide.
var ErrFenced = errors.New("authz: node fenced: not known to be current in the node registry")

// Authorizer decides requests against the replica's current snapshot. It implements Envoy's
// envoy.service.auth.v3.AuthorizationServer and serves the HTTP check endpoint. All methods are safe for
// concurrent use; a decision takes no lock of deact's (the parsed-claims cache, ristretto, takes sharded read
// locks), makes no etcd call, and sees one snapshot from start to end. Call Close when done.
type Authorizer struct {
	authv3.UnimplementedAuthorizationServer

	snapshot  func() *state.Snapshot // nil until ready
	epoch     time.Time              // a time with a monotonic reading, for monoNow
	staleness func(now time.Time) time.Duration
	stale     [numActions]time.Duration // deny-after bounds; 0 = serve last known
	fenced    func(now time.Time) bool  // nil = never

	routes   []*route
	claims   claimMapper
	cache    *tokenCache // nil when disabled
	maxToken int
	maxBody  int64

	revisionHeader bool
	log            *slog.Logger
	denyLogs       logBudget
	metrics        *metrics
	allowResp      atomic.Pointer[allowResponse] // the last allow CheckResponse, per revision
}

// New validates cfg and returns an Authorizer. Errors name the field (and for rules, the rule and field).
func New(cfg Config) (*Authorizer, error) {
	if cfg.Replica == nil {
		return nil, errors.New("authz: Config.Replica is required")
	}
	r := cfg.Replica
	return newAuthorizer(cfg, r.Snapshot, r.StalenessAt)
}

// newAuthorizer builds an Authorizer over any snapshot source; tests and benchmarks use fixed snapshots.
func newAuthorizer(cfg Config, snapshot func() *state.Snapshot, staleness func(now time.Time) time.Duration) (*Authorizer, error) {
	a := &Authorizer{
		snapshot: snapshot, staleness: staleness, epoch: time.Now(),
		maxToken: cfg.MaxTokenBytes, maxBody: cfg.MaxBodyBytes,
		revisionHeader: cfg.RevisionHeader, log: cfg.Logger, fenced: cfg.Fenced,
	}
	if a.maxToken <= 0 {
		a.maxToken = 32 << 10
	}
	if a.maxBody <= 0 {
		a.maxBody = 1 << 20
	}
	switch {
	case cfg.DenyLogsPerSecond == 0:
		a.denyLogs.perSec = 100
	case cfg.DenyLogsPerSecond > 0:
		a.denyLogs.perSec = int64(cfg.DenyLogsPerSecond)
	}
	if a.log == nil {
		a.log = slog.New(slog.DiscardHandler)
	}
	a.log = a.log.With("component", "authz")
	if err := cfg.Staleness.validate(); err != nil {
		return nil, fmt.Errorf("authz: %w", err)
	}
	for op, d := range cfg.Staleness {
		a.stale[op] = d
	}

	if cfg.RulesFile != "" {
		rules, err := LoadRules(cfg.RulesFile)
		if err != nil {
			return nil, fmt.Errorf("authz: %w", err)
		}
		cfg.Rules = append(rules, cfg.Rules...)
	}
	custom, err := compileRules(cfg.Rules)
	if err != nil {
		return nil, fmt.Errorf("authz: rules: %w", err)
	}
	a.routes = custom
	presets := cfg.Presets
	if presets == nil {
		presets = []string{PresetZITADEL, PresetCommvault}
	}
	seen := map[string]bool{}
	for _, p := range presets {
		name := strings.ToLower(strings.TrimSpace(p))
		if seen[name] {
			return nil, fmt.Errorf("authz: Presets: %q appears twice", p)
		}
		seen[name] = true
		switch name {
		case PresetZITADEL:
			a.routes = append(a.routes, zitadelRoutes()...)
		case PresetCommvault:
			a.routes = append(a.routes, commvaultRoutes()...)
		default:
			return nil, fmt.Errorf("authz: Presets: unknown preset %q (want %q or %q)", p, PresetZITADEL, PresetCommvault)
		}
	}

	if a.claims, err = newClaimMapper(cfg.Claims, jwtClaimNames(custom)); err != nil {
		return nil, fmt.Errorf("authz: Claims: %w", err)
	}
	if cfg.TokenCacheEntries >= 0 {
		entries := cfg.TokenCacheEntries
		if entries == 0 {
			entries = 100_000
		}
		ttl := cfg.TokenCacheTTL
		if ttl <= 0 {
			ttl = 10 * time.Minute
		}
		if a.cache, err = newTokenCache(entries, ttl); err != nil {
			return nil, fmt.Errorf("authz: token cache: %w", err)
		}
	}
	if a.metrics, err = newMetrics(cfg.Registry); err != nil {
		a.Close()
		return nil, fmt.Errorf("authz: metrics: %w", err)
	}
	return a, nil
}

// Close stops the parsed-claims cache's goroutines. The Authorizer must not be used afterwards.
func (a *Authorizer) Close() {
	if a.cache != nil {
		a.cache.close()
	}
}
