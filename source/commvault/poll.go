package commvault

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/deact/deact/source"
	"github.com/deact/deact/state"
)

// SourceName names Commvault's records in the mirrored layer, its election and its status.
const SourceName = "commvault"

// PollerConfig configures a Poller. Zero values take the defaults in brackets.
type PollerConfig struct {
	Client *Client
	Store  *state.Store
	// Interval is the time between the starts of two rounds [1m]; each wait is shortened by a random part of
	// up to Jitter·Interval [0.1], so several deployments polling one Commvault spread out.
	Interval time.Duration
	Jitter   float64
	// Concurrency bounds the detail requests (GET /Organization/{id}) in flight at once [8].
	Concurrency        int
	BatchSize          int     // records per ApplyMirror call [100]
	WriteConcurrency   int     // ApplyMirror calls in flight at once [4]
	MaxRemovedFraction float64 // see source.CheckRemovals [source.DefaultMaxRemoveFraction]
	Logger             *slog.Logger
	// Report, when set, is called after every round with its outcome (status API, metrics).
	Report func(RoundStats, error)
	Now    func() time.Time
}

// Poller mirrors Commvault's organizations: each round lists them, reads every one's details, and writes what
// changed. A round whose listing fails writes nothing; an organization whose details cannot be read or mapped
// keeps its last mirrored state while the others are written.
type Poller struct {
	cfg PollerConfig
	log *slog.Logger
}

// RoundStats describes one round.
type RoundStats struct {
	Sequence            uint64        // the round's sequence, given to every record it wrote
	Listed              int           // organizations listed
	Failed              int           // organizations whose details could not be read or mapped: kept as they were
	Written             int           // records written (changed, new or tombstoned)
	Unchanged           int           // listed and already mirrored as they are
	Stale               int           // not written because a newer round had written them
	Removed             int           // tombstones written for organizations that vanished
	Requests            int64         // API requests made (login excluded)
	Duration            time.Duration // whole round
	ListDuration        time.Duration // of which reading Commvault
	Records, Tombstones int           // mirrored records held after the round, and how many are tombstones
}

// NewPoller validates cfg.
func NewPoller(cfg PollerConfig) (*Poller, error) {
	if cfg.Client == nil || cfg.Store == nil {
		return nil, errors.New("commvault poller needs a client and a store")
	}
	if cfg.Interval <= 0 {
		cfg.Interval = time.Minute
	}
	if cfg.Jitter <= 0 || cfg.Jitter >= 1 {
		cfg.Jitter = 0.1
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = 8
	}
	if cfg.BatchSize <= 0 {
		cfg.BatchSize = 100
	}
	if cfg.WriteConcurrency <= 0 {
		cfg.WriteConcurrency = 4
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = func() time.Time { return time.Now().UTC() }
	}
	return &Poller{cfg: cfg, log: cfg.Logger}, nil
}

// Run polls at once and then every Interval (less jitter) until ctx ends; it returns nil then. A failed round
// keeps the mirrored state and is retried after a backoff (1 s doubling up to Interval).
func (p *Poller) Run(ctx context.Context) error {
	backoff := source.Backoff{Min: time.Second, Max: p.cfg.Interval}
	failures := 0
	for {
		started := time.Now()
		st, err := p.Round(ctx)
		if ctx.Err() != nil {
			return nil
		}
		wait := p.cfg.Interval - time.Duration(rand.Float64()*p.cfg.Jitter*float64(p.cfg.Interval)) - time.Since(started)
		var partial *PartialError
		switch {
		case err == nil:
			failures = 0
		case errors.As(err, &partial):
			failures = 0 // the round ran; the organizations it could not read are retried next round
			p.log.Warn("commvault round done, but some organizations kept their last mirrored state", "err", err)
		default:
			failures++
			wait = min(wait, backoff.Delay(failures))
			var ae *APIError
			switch {
			case errors.As(err, &ae) && ae.Unauthorized():
				p.log.Error("commvault refused the credentials; keeping the last mirrored state", "err", err, "retry_in", wait)
			case errors.Is(err, errUnreachable):
				p.log.Error("commvault is unreachable; keeping the last mirrored state", "err", err, "retry_in", wait)
			default:
				p.log.Error("commvault round failed; keeping the last mirrored state", "err", err, "retry_in", wait)
			}
		}
		if st.Duration > p.cfg.Interval {
			p.log.Warn("a commvault round took longer than the interval; raise the concurrency or the interval",
				"took", st.Duration.Round(time.Millisecond), "interval", p.cfg.Interval, "organizations", st.Listed, "concurrency", p.cfg.Concurrency)
		}
		if p.cfg.Report != nil {
			p.cfg.Report(st, err)
		}
		if wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return nil
			case <-t.C:
			}
		} else if ctx.Err() != nil {
			return nil
		}
	}
}

// PartialError reports a round that wrote what it could, while some organizations kept their last mirrored
// state because their details could not be read or mapped.
type PartialError struct {
	Failed, Listed int
	First          error // the first failure, by organization ID
}

func (e *PartialError) Error() string {
	return fmt.Sprintf("%d of %d commvault organizations kept their last mirrored state (their details could not be read or mapped); first: %v",
		e.Failed, e.Listed, e.First)
}
func (e *PartialError) Unwrap() error { return e.First }

// Round polls once: it reads what deact holds, lists Commvault's organizations, reads their details with
// bounded concurrency and writes the differences.
//
// Ordering: Commvault gives no per-object sequence, so every record a round writes carries the round's
// sequence: the round's start in Unix microseconds, or one more than the highest sequence held when that is
// larger (a leader whose clock lags the previous one's). Rounds of one leader follow each other, so their
// sequences grow; a slow round of an old leader that overlaps a new one's (see source.LeaderConfig.TTL) started
// earlier and carries a smaller sequence, and ApplyMirror refuses it wherever the newer round wrote. Where the
// newer round found nothing to write, the older one's write goes through and the next round repairs it; an old
// leader's round normally cannot write at all, since its context ends when leadership is lost.
func (p *Poller) Round(ctx context.Context) (RoundStats, error) {
	t0 := time.Now()
	var st RoundStats
	done := func(err error) (RoundStats, error) {
		st.Duration = time.Since(t0)
		return st, err
	}
	held := map[string]state.MirrorRecord{}
	var maxSeq uint64
	tombstones := 0
	err := p.cfg.Store.ListMirror(ctx, SourceName, state.MirrorOrg, func(r state.MirrorRecord, _ int64) error {
		held[r.ID] = r
		maxSeq = max(maxSeq, r.Sequence)
		if r.Removed {
			tombstones++
		}
		return nil
	})
	if err != nil {
		return done(fmt.Errorf("read mirrored organizations: %w", err))
	}
	now := p.cfg.Now()
	st.Sequence = max(uint64(now.UnixMicro()), maxSeq+1)

	listed, details, failures, requests, err := p.read(ctx)
	st.Requests, st.ListDuration = requests, time.Since(t0)
	if err != nil {
		return done(err)
	}
	st.Listed, st.Failed = len(listed), len(failures)

	var changes []state.MirrorRecord
	seen := make(map[string]bool, len(listed))
	for _, l := range listed {
		seen[l.ID] = true
		o, ok := details[l.ID]
		if !ok {
			continue // failed: its held record (if any) stays as it is
		}
		want := p.record(l, o, st.Sequence, now)
		if have, ok := held[l.ID]; ok && sameOrg(have, want) {
			st.Unchanged++
			continue
		}
		changes = append(changes, want)
	}
	live := 0
	var tombs []state.MirrorRecord
	for id, have := range held {
		if have.Removed {
			continue
		}
		live++
		if !seen[id] {
			t := have
			t.Removed, t.RemovedAt, t.ChangedAt, t.Sequence, t.Partial = true, now, now, st.Sequence, false
			tombs = append(tombs, t)
		}
	}
	if err := source.CheckRemovals("organization", live, len(tombs), p.cfg.MaxRemovedFraction); err != nil {
		return done(err)
	}
	sort.Slice(tombs, func(i, j int) bool { return tombs[i].ID < tombs[j].ID })
	changes = append(changes, tombs...)
	st.Removed = len(tombs)
	if err := p.write(ctx, changes, &st); err != nil {
		return done(err)
	}
	// Held after the round: what was held, plus new organizations; tombstones as before plus the new ones.
	st.Tombstones = tombstones + len(tombs)
	st.Records = len(held)
	for _, l := range listed {
		if _, ok := held[l.ID]; !ok {
			if _, ok := details[l.ID]; ok {
				st.Records++
			}
		}
	}
	st.Duration = time.Since(t0)
	level := slog.LevelDebug
	if st.Written > 0 || st.Duration > 5*time.Second {
		level = slog.LevelInfo
	}
	p.log.Log(ctx, level, "commvault round done", "organizations", st.Listed, "written", st.Written,
		"unchanged", st.Unchanged, "removed", st.Removed, "failed", st.Failed, "stale", st.Stale,
		"read_ms", st.ListDuration.Milliseconds(), "total_ms", st.Duration.Milliseconds())
	if len(failures) > 0 {
		ids := make([]string, 0, len(failures))
		for id := range failures {
			ids = append(ids, id)
		}
		slices.Sort(ids)
		return st, &PartialError{Failed: len(failures), Listed: len(listed), First: failures[ids[0]]}
	}
	return st, nil
}

// read lists the organizations and reads their details with at most Concurrency requests at once. A failure
// that says Commvault as a whole is not answering (credentials refused; more than 2·Concurrency detail requests
// in a row without an answer) fails the round; any other failure is that organization's alone.
func (p *Poller) read(ctx context.Context) ([]Listed, map[string]Org, map[string]error, int64, error) {
	c := p.cfg.Client
	listed, err := c.ListOrgs(ctx)
	requests := int64(1)
	if err != nil {
		return nil, nil, nil, requests, err
	}
	var mu sync.Mutex
	details := make(map[string]Org, len(listed))
	failures := map[string]error{}
	var n atomic.Int64
	// Consecutive detail requests that got no answer: one slow organization is its own failure, but every worker
	// failing in a row means Commvault went away, and the round stops rather than wait for each timeout.
	var unreachable atomic.Int64
	err = source.Parallel(ctx, p.cfg.Concurrency, listed, func(ctx context.Context, l Listed) error {
		n.Add(1)
		o, err := c.GetOrg(ctx, l.ID)
		var ae *APIError
		switch {
		case err == nil:
			unreachable.Store(0)
			mu.Lock()
			details[l.ID] = o
			mu.Unlock()
		case errors.As(err, &ae) && ae.Unauthorized(),
			errors.Is(err, errUnreachable) && unreachable.Add(1) > int64(2*p.cfg.Concurrency):
			return err
		default:
			mu.Lock()
			failures[l.ID] = err
			mu.Unlock()
		}
		return nil
	})
	requests += n.Load()
	if err != nil {
		return nil, nil, nil, requests, err
	}
	return listed, details, failures, requests, nil
}

// record is the mirrored form of one organization: domains from the listing and the details, normalized,
// without those deact cannot index.
func (p *Poller) record(l Listed, o Org, seq uint64, now time.Time) state.MirrorRecord {
	var domains []string
	for _, d := range append(slices.Clone(l.Domains), o.Domains...) {
		d = state.NormalizeDomain(d)
		if state.ValidateID("domain", d) == nil && !slices.Contains(domains, d) {
			domains = append(domains, d)
		}
	}
	slices.Sort(domains)
	if len(domains) > source.MaxListed {
		p.log.Warn("commvault organization has more domains than deact mirrors; the rest are not followed", "org", l.ID, "domains", len(domains), "kept", source.MaxListed)
		domains = domains[:source.MaxListed]
	}
	name := o.Name
	if name == "" {
		name = l.Name
	}
	return state.MirrorRecord{Source: SourceName, Kind: state.MirrorOrg, ID: l.ID, Name: source.ClipName(name),
		Domains: domains, Disabled: o.Disabled, Sequence: seq, ChangedAt: now}
}

// sameOrg compares what a round can say about an organization (not its sequence).
func sameOrg(a, b state.MirrorRecord) bool {
	return a.ID == b.ID && a.Disabled == b.Disabled && a.Removed == b.Removed && a.Name == b.Name && slices.Equal(a.Domains, b.Domains)
}

// write applies the changes in batches, a few at a time.
func (p *Poller) write(ctx context.Context, changes []state.MirrorRecord, st *RoundStats) error {
	if len(changes) == 0 {
		return nil
	}
	var w source.MirrorWrites
	err := source.WriteMirror(ctx, p.cfg.Store, changes, p.cfg.BatchSize, p.cfg.WriteConcurrency,
		state.Change{Actor: "source:" + SourceName, Reason: "commvault poll"}, &w)
	st.Written += int(w.Written.Load())
	st.Unchanged += int(w.Unchanged.Load())
	st.Stale += int(w.Stale.Load())
	return err
}
