package source

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/deact/deact/state"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// DefaultTombstoneRetention is how long a removed org, project or app keeps denying: ZITADEL's longest default
// token lifetime, its refresh token's absolute expiration (OIDC.DefaultRefreshTokenExpiration, 2160h = 90 days, in
// zitadel cmd/defaults.yaml; the idle expiration is 720h), plus its default access token lifetime (12h), because
// a refresh just before the refresh token expires yields an access token that verifies 12h longer.
const DefaultTombstoneRetention = 2160*time.Hour + 12*time.Hour

// Env is what a source gets from the daemon.
type Env struct {
	Store  *state.Store
	NodeID string
	Logger *slog.Logger // already labelled with the source's name
	Status *Status      // the source's counters and status record
}

// Source is one upstream followed by deact's admin nodes. Connectors (ZITADEL, Commvault) implement it.
type Source interface {
	// Name is the source's name, a state ID: its election, its mirror subtree and its status key.
	Name() string
	// Kind is the connector type for status output, e.g. "zitadel".
	Kind() string
	// Upstream is the upstream's base URL for status output; never with credentials.
	Upstream() string
	// Handler serves the source's HTTP endpoints (a webhook) on the admin listener of every admin node, under
	// "/v1/sources/{name}/" (the prefix is not stripped); nil when it has none. It is called once, before any
	// Sync, and serves whether or not this node leads: ApplyMirror is safe from any node.
	Handler(env Env) http.Handler
	// Sync runs while this node leads the source's election: reconcile at start and on an interval, poll, and
	// so on. Its context ends when leadership is lost or the daemon stops; it returns nil then. An error makes the
	// node step down and campaign again after a backoff, keeping the mirrored state as it is.
	Sync(ctx context.Context, env Env) error
}

// RunnerConfig configures a Runner. Zero values take the defaults in brackets.
type RunnerConfig struct {
	Client  *clientv3.Client
	Store   *state.Store
	NodeID  string
	Logger  *slog.Logger
	Metrics *Metrics // nil: none
	// TombstoneRetention is how long tombstones deny before the leader prunes them [DefaultTombstoneRetention];
	// negative keeps them forever.
	TombstoneRetention time.Duration
	PruneInterval      time.Duration // [1h]
	LeaderTTL          time.Duration // [5s], see LeaderConfig.TTL
	StatusInterval     time.Duration // [5s]
}

// Runner runs one source on an admin node: its handler always, its Sync, status writes and tombstone pruning
// while the node leads the source's election.
type Runner struct {
	cfg    RunnerConfig
	src    Source
	env    Env
	leader *Leader
}

// NewRunner prepares src for this node.
func NewRunner(cfg RunnerConfig, src Source) (*Runner, error) {
	if cfg.Store == nil || cfg.Client == nil {
		return nil, errors.New("source runner: no store or etcd client")
	}
	name := src.Name()
	if err := state.ValidateID("source", name); err != nil {
		return nil, fmt.Errorf("source runner: %w", err)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.TombstoneRetention == 0 {
		cfg.TombstoneRetention = DefaultTombstoneRetention
	}
	if cfg.PruneInterval <= 0 {
		cfg.PruneInterval = time.Hour
	}
	log := cfg.Logger.With("source", name, "kind", src.Kind())
	leader, err := NewLeader(LeaderConfig{Client: cfg.Client, Name: name, NodeID: cfg.NodeID, TTL: cfg.LeaderTTL, Logger: cfg.Logger})
	if err != nil {
		return nil, err
	}
	st := NewStatus(StatusConfig{Store: cfg.Store, Source: name, Kind: src.Kind(), Upstream: src.Upstream(),
		NodeID: cfg.NodeID, Metrics: cfg.Metrics, Logger: cfg.Logger, Interval: cfg.StatusInterval})
	return &Runner{cfg: cfg, src: src, leader: leader,
		env: Env{Store: cfg.Store, NodeID: cfg.NodeID, Logger: log, Status: st}}, nil
}

// Handler is the source's HTTP handler (nil when it has none), to mount under "/v1/sources/{name}/".
func (r *Runner) Handler() http.Handler { return r.src.Handler(r.env) }

// Leader is the runner's candidate in the source's election.
func (r *Runner) Leader() *Leader { return r.leader }

// Status is the source's reporter.
func (r *Runner) Status() *Status { return r.env.Status }

// Run campaigns and, while leading, runs the source's Sync, writes its status and prunes its tombstones, until
// ctx ends; it returns nil then.
func (r *Runner) Run(ctx context.Context) error {
	return r.leader.Run(ctx, r.lead)
}

func (r *Runner) lead(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	wg.Go(func() { _ = r.env.Status.Run(ctx, r.leader.Since()) })
	if r.cfg.TombstoneRetention > 0 {
		wg.Go(func() { r.prune(ctx) })
	}
	err := r.src.Sync(ctx, r.env)
	cancel()
	wg.Wait()
	if ctx.Err() != nil && err != nil && errors.Is(err, context.Canceled) {
		err = nil
	}
	return err
}

// prune deletes tombstones older than the retention, at once and then every PruneInterval.
func (r *Runner) prune(ctx context.Context) {
	t := time.NewTicker(r.cfg.PruneInterval)
	defer t.Stop()
	for {
		n, err := r.cfg.Store.PruneMirrorTombstones(ctx, r.src.Name(), time.Now().Add(-r.cfg.TombstoneRetention))
		switch {
		case err != nil && ctx.Err() == nil:
			r.env.Logger.Warn("pruning tombstones failed", "err", err)
		case n > 0:
			r.env.Logger.Info("pruned tombstones", "records", n, "retention", r.cfg.TombstoneRetention)
			r.env.Status.Pruned(n)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
