// Package source follows upstream products (ZITADEL, Commvault) into deact's mirrored state layer. Connectors
// live in subpackages and write through state.Store; this package holds what they share: the etcd election that
// lets one admin node sync a source at a time, the runner that starts a source under it, the status reporter
// and its metrics, and the backoff for retries. It never imports authz or admin.
package source

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/deact/deact/state"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
)

// ElectionPrefix is where the elections live, one per source, outside the state prefix (replicas do not watch it).
const ElectionPrefix = state.Prefix + "elections/"

// LeaderConfig configures a Leader. Zero values take the defaults in brackets.
type LeaderConfig struct {
	Client *clientv3.Client
	Name   string // the election's name, one per source; a valid state ID
	NodeID string // this candidate's name, stored as the election's value
	// TTL is the lease of the candidate's session [5s]. A leader that stops cleanly hands over at once; one
	// that dies hands over when its lease expires, after about TTL; one cut off from etcd stops its work at least
	// TTL/4 before its lease can expire, so two nodes never run at once while clocks run at the same rate. A
	// lease revoked by hand (etcdctl lease revoke) is the exception: the old leader notices it on a watch, a
	// few milliseconds after the next candidate may have started. Work must be safe to overlap that briefly;
	// everything written through state.Store.ApplyMirror is.
	TTL     time.Duration
	Backoff Backoff // pause before campaigning again after a failure [200ms..30s]
	Logger  *slog.Logger
}

// Leader runs work on one candidate at a time among all that share an election name. Safe for concurrent use.
type Leader struct {
	cfg     LeaderConfig
	log     *slog.Logger
	key     string
	leading atomic.Bool
	since   atomic.Int64 // unix nanoseconds of the current term's start; 0 when not leading
}

// NewLeader checks the configuration and returns a candidate; Run campaigns.
func NewLeader(cfg LeaderConfig) (*Leader, error) {
	if cfg.Client == nil {
		return nil, errors.New("leader: no etcd client")
	}
	if err := errors.Join(state.ValidateID("election", cfg.Name), state.ValidateID("node", cfg.NodeID)); err != nil {
		return nil, fmt.Errorf("leader: %w", err)
	}
	if cfg.TTL == 0 {
		cfg.TTL = 5 * time.Second
	}
	if cfg.TTL < 2*time.Second {
		return nil, fmt.Errorf("leader: TTL %s is below etcd's minimum lease of 2s", cfg.TTL)
	}
	if cfg.Backoff == (Backoff{}) {
		cfg.Backoff = Backoff{Min: 200 * time.Millisecond, Max: 30 * time.Second}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Leader{cfg: cfg, key: ElectionPrefix + cfg.Name + "/",
		log: cfg.Logger.With("component", "election", "election", cfg.Name, "node", cfg.NodeID)}, nil
}

// IsLeader reports whether work is running on this candidate now.
func (l *Leader) IsLeader() bool { return l.leading.Load() }

// Since is when the current term began, zero when not leading.
func (l *Leader) Since() time.Time {
	if ns := l.since.Load(); ns != 0 {
		return time.Unix(0, ns)
	}
	return time.Time{}
}

// Current returns the node ID of the election's leader as etcd holds it, "" when there is none.
func (l *Leader) Current(ctx context.Context) (string, error) {
	resp, err := l.cfg.Client.Get(ctx, l.key, clientv3.WithFirstCreate()...)
	if err != nil {
		return "", err
	}
	if len(resp.Kvs) == 0 {
		return "", nil
	}
	return string(resp.Kvs[0].Value), nil
}

// errLost is wrapped by every reason a term ended that is not the work's own return.
var errLost = errors.New("leadership lost")

// Run campaigns, runs work while leading, and campaigns again when a term ends, until ctx ends; it returns nil
// then. work's context ends when leadership is lost: the session's lease is lost, the leader key is deleted, or
// etcd has not confirmed the lease for so long that it could expire. work must return soon after its context
// ends. When work returns an error the candidate steps down and campaigns again after a backoff; when it returns
// nil before its context ended, it steps down and campaigns again at once.
func (l *Leader) Run(ctx context.Context, work func(context.Context) error) error {
	failures := 0
	for {
		err := l.term(ctx, work)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			failures++
			l.log.Warn("not leading; campaigning again", "err", err, "retry_in_at_most", l.cfg.Backoff.Max)
		} else {
			failures = 0
		}
		if !l.cfg.Backoff.Sleep(ctx, failures) {
			return nil
		}
	}
}

// term is one session: campaign, lead, step down.
func (l *Leader) term(ctx context.Context, work func(context.Context) error) error {
	cli := l.cfg.Client
	ttl := int64((l.cfg.TTL + time.Second - 1) / time.Second)
	gctx, gcancel := context.WithTimeout(ctx, l.cfg.TTL)
	grant, err := cli.Grant(gctx, ttl)
	gcancel()
	if err != nil {
		return fmt.Errorf("grant a lease: %w", err)
	}
	// The session outlives ctx so that closing it can still revoke the lease (and so hand over at once).
	sess, err := concurrency.NewSession(cli, concurrency.WithLease(grant.ID), concurrency.WithTTL(int(ttl)),
		concurrency.WithContext(context.WithoutCancel(ctx)))
	if err != nil {
		return fmt.Errorf("session: %w", err)
	}
	defer func() {
		if err := sess.Close(); err != nil && ctx.Err() == nil {
			l.log.Debug("revoking the session's lease failed; it expires on its own", "err", err)
		}
	}()
	e := concurrency.NewElection(sess, l.key)
	if err := l.campaign(ctx, sess, e); err != nil {
		return err
	}
	until, err := l.confirm(ctx, sess, e, time.Now().Add(l.cfg.TTL/4))
	if err != nil {
		return err
	}

	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	deleted, watched := l.watchKey(wctx, e)
	held := make(chan error, 1)
	go func() {
		held <- l.hold(wctx, sess, e, until, deleted)
		cancel() // leadership lost: the work's context ends
	}()
	l.since.Store(time.Now().UnixNano())
	l.leading.Store(true)
	l.log.Info("leading", "lease", fmt.Sprintf("%x", sess.Lease()))
	workErr := work(wctx)
	cancel()
	why := <-held
	<-watched
	l.leading.Store(false)
	l.since.Store(0)
	// Resign so another candidate takes over now rather than when the lease expires.
	rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
	_ = e.Resign(rctx)
	rcancel()
	switch {
	case ctx.Err() != nil:
		l.log.Info("stopped leading: shutting down")
		return nil
	case why != nil:
		l.log.Warn("stopped leading", "reason", why)
		return why
	case workErr != nil:
		return fmt.Errorf("work failed: %w", workErr)
	}
	l.log.Info("stopped leading: the work returned")
	return nil
}

// campaign waits until this candidate leads, the session is lost or ctx ends. Campaign cleans up after a
// cancellation with a write that blocks while etcd is unreachable; this waits for it only briefly, so a node
// cut off from etcd can still shut down (the write ends when the client is closed).
func (l *Leader) campaign(ctx context.Context, sess *concurrency.Session, e *concurrency.Election) error {
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- e.Campaign(cctx, l.cfg.NodeID) }()
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("campaign: %w", err)
		}
		return nil
	case <-sess.Done():
		cancel()
		l.waitBriefly(done)
		return fmt.Errorf("%w: the session's lease expired while campaigning", errLost)
	case <-ctx.Done():
		cancel()
		l.waitBriefly(done)
		return ctx.Err()
	}
}

func (l *Leader) waitBriefly(done <-chan error) {
	select {
	case <-done:
	case <-time.After(time.Second):
	}
}

// watchKey closes deleted when the leader key is deleted (its lease revoked, or an operator's etcdctl del): a
// watch sees that at once, where the periodic confirmation takes up to TTL/4. It runs in its own goroutine
// because opening a watch blocks while etcd is unreachable; watched is closed when it has stopped (after ctx).
func (l *Leader) watchKey(ctx context.Context, e *concurrency.Election) (deleted, watched <-chan struct{}) {
	del, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		for wr := range l.cfg.Client.Watch(clientv3.WithRequireLeader(ctx), e.Key(), clientv3.WithRev(e.Rev()+1)) {
			for _, ev := range wr.Events {
				if ev.Type == clientv3.EventTypeDelete {
					close(del)
					<-ctx.Done()
					return
				}
			}
		}
	}()
	return del, done
}

// hold keeps confirming the leadership while ctx lasts and returns why it ended (nil: ctx ended).
func (l *Leader) hold(ctx context.Context, sess *concurrency.Session, e *concurrency.Election, until time.Time, deleted <-chan struct{}) error {
	every := l.cfg.TTL / 4
	tick := time.NewTicker(every)
	defer tick.Stop()
	stepDown := time.NewTimer(time.Until(until) - every)
	defer stepDown.Stop()
	var lastErr error
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-sess.Done():
			return fmt.Errorf("%w: the session's lease is gone", errLost)
		case <-deleted:
			return fmt.Errorf("%w: the leader key was deleted", errLost)
		case <-stepDown.C:
			return fmt.Errorf("%w: etcd has not confirmed the lease for too long, stepping down before it can expire: %v", errLost, lastErr)
		case <-tick.C:
			// The confirmation may not run past the step-down time: while it waits, nothing else here does.
			limit := until.Add(-every)
			if !time.Now().Before(limit) {
				return fmt.Errorf("%w: etcd has not confirmed the lease for too long, stepping down before it can expire: %v", errLost, lastErr)
			}
			u, err := l.confirm(ctx, sess, e, limit)
			switch {
			case errors.Is(err, errLost):
				return err
			case err != nil:
				lastErr = err
			default:
				until = u
				stepDown.Reset(time.Until(until) - every)
			}
		}
	}
}

// confirm renews the lease once and checks that the leader key is still this session's, giving up at the
// latest at deadline (and after TTL/4). It returns the time until which the lease is certainly held: a renewal
// sent at t with TTL d holds it at least until t+d.
func (l *Leader) confirm(ctx context.Context, sess *concurrency.Session, e *concurrency.Election, deadline time.Time) (time.Time, error) {
	if d := time.Now().Add(l.cfg.TTL / 4); d.Before(deadline) {
		deadline = d
	}
	cctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	sent := time.Now()
	ka, err := l.cfg.Client.KeepAliveOnce(cctx, sess.Lease())
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) || ctx.Err() != nil {
			return time.Time{}, fmt.Errorf("renew the lease: %w", err)
		}
		return time.Time{}, fmt.Errorf("%w: renew the lease: %v", errLost, err) // lease not found: expired
	}
	resp, err := l.cfg.Client.Get(cctx, e.Key())
	if err != nil {
		return time.Time{}, fmt.Errorf("read the leader key: %w", err)
	}
	if len(resp.Kvs) == 0 || resp.Kvs[0].CreateRevision != e.Rev() {
		return time.Time{}, fmt.Errorf("%w: the leader key is gone", errLost)
	}
	return sent.Add(time.Duration(ka.TTL) * time.Second), nil
}
