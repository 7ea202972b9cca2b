package zitadel

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/deact/deact/source"
	"github.com/deact/deact/state"
)

// SourceName names ZITADEL's records in the mirrored layer.
const SourceName = "zitadel"

// ReconcilerConfig configures a Reconciler. Zero values take the defaults in brackets.
type ReconcilerConfig struct {
	Client *Client
	Store  *state.Store
	// Orgs limits the sync to these org IDs, read one by one through the management API (a service account with
	// ORG_OWNER_VIEWER on each suffices); empty lists every org through the admin API (IAM_OWNER_VIEWER).
	Orgs               []string
	Interval           time.Duration // between reconciles [5m]
	Concurrency        int           // listings in flight at once [16]
	BatchSize          int           // records per ApplyMirror call [100]
	WriteConcurrency   int           // ApplyMirror calls in flight at once [4]
	MaxRemovedFraction float64       // see source.CheckRemovals [source.DefaultMaxRemoveFraction]
	// RemoveGrace spares records written (by an event) less than this before a listing began: ZITADEL's
	// projections lag its events, so a new app may be mirrored before it is listed [2m].
	RemoveGrace time.Duration
	Logger      *slog.Logger
	// Report, when set, is called after every reconcile with its outcome (status API, metrics).
	Report func(SyncStats, error)
	Now    func() time.Time
}

// Reconciler lists ZITADEL's orgs, projects, apps and org domains and writes the differences to the mirrored
// layer. A failed listing writes nothing: the last mirrored state stays in force.
type Reconciler struct {
	cfg ReconcilerConfig
	log *slog.Logger
}

// SyncStats describes one reconcile.
type SyncStats struct {
	Orgs, Projects, Apps int           // listed in ZITADEL
	Written              int           // records written (changed, new or tombstoned)
	Unchanged            int           // listed and already mirrored as they are
	Stale                int           // listed older than the mirror (an event was newer): left as they are
	Removed              int           // tombstones written for objects that vanished
	Requests             int64         // API requests made
	Duration             time.Duration // whole reconcile
	ListDuration         time.Duration // of which listing
	Revision             int64         // etcd revision of the last write, 0 if none
	Records, Tombstones  int           // mirrored records held after the reconcile, and how many of them are tombstones
}

// NewReconciler validates cfg.
func NewReconciler(cfg ReconcilerConfig) (*Reconciler, error) {
	if cfg.Client == nil || cfg.Store == nil {
		return nil, errors.New("zitadel reconciler needs a client and a store")
	}
	for _, id := range cfg.Orgs {
		if err := state.ValidateID("org", id); err != nil {
			return nil, fmt.Errorf("--zitadel-orgs: %w", err)
		}
	}
	if cfg.Interval <= 0 {
		cfg.Interval = 5 * time.Minute
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = 16
	}
	if cfg.BatchSize <= 0 {
		cfg.BatchSize = 100
	}
	if cfg.WriteConcurrency <= 0 {
		cfg.WriteConcurrency = 4
	}
	if cfg.RemoveGrace == 0 {
		cfg.RemoveGrace = 2 * time.Minute
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = func() time.Time { return time.Now().UTC() }
	}
	return &Reconciler{cfg: cfg, log: cfg.Logger.With("source", SourceName)}, nil
}

// Run reconciles at once and then every Interval until ctx ends. A failure is logged and reported, the mirrored
// state is kept, and the next attempt comes after a backoff (1 s doubling up to Interval).
func (r *Reconciler) Run(ctx context.Context) error {
	backoff := source.Backoff{Min: time.Second, Max: r.cfg.Interval}
	failures := 0
	for {
		st, err := r.Reconcile(ctx)
		if ctx.Err() != nil {
			return nil
		}
		wait := r.cfg.Interval
		if err != nil {
			failures++
			wait = backoff.Delay(failures)
			var ae *APIError
			switch {
			case errors.As(err, &ae) && ae.Unauthorized():
				r.log.Error("zitadel refused the sync's credentials; keeping the last mirrored state", "err", err, "retry_in", wait)
			case errors.Is(err, errUnreachable):
				r.log.Error("zitadel is unreachable; keeping the last mirrored state", "err", err, "retry_in", wait)
			default:
				r.log.Error("zitadel sync failed; keeping the last mirrored state", "err", err, "retry_in", wait)
			}
		} else {
			failures = 0
		}
		if r.cfg.Report != nil {
			r.cfg.Report(st, err)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}

// listing is what one reconcile read from ZITADEL.
type listing struct {
	mu   sync.Mutex
	orgs map[string]state.MirrorRecord
	proj map[string]state.MirrorRecord
	apps map[string]state.MirrorRecord // by project/app

	nProjects, nApps atomic.Int64
}

func appKey(projectID, appID string) string { return projectID + "/" + appID }

// Reconcile lists everything once and writes the differences.
func (r *Reconciler) Reconcile(ctx context.Context) (SyncStats, error) {
	start := r.cfg.Now()
	t0 := time.Now()
	var st SyncStats
	l, err := r.list(ctx)
	st.ListDuration = time.Since(t0)
	if err != nil {
		st.Duration = time.Since(t0)
		return st, err
	}
	st.Orgs, st.Projects, st.Apps = len(l.orgs), len(l.proj), len(l.apps)
	changes, err := r.diff(ctx, l, start, &st)
	if err != nil {
		st.Duration = time.Since(t0)
		return st, err
	}
	if err := r.write(ctx, changes, &st); err != nil {
		st.Duration = time.Since(t0)
		return st, err
	}
	st.Duration = time.Since(t0)
	level := slog.LevelDebug
	if st.Written > 0 || st.Duration > 5*time.Second {
		level = slog.LevelInfo
	}
	r.log.Log(ctx, level, "zitadel sync done", "orgs", st.Orgs, "projects", st.Projects, "apps", st.Apps,
		"written", st.Written, "unchanged", st.Unchanged, "stale", st.Stale, "removed", st.Removed,
		"list_ms", st.ListDuration.Milliseconds(), "total_ms", st.Duration.Milliseconds())
	return st, nil
}

// list reads every org (or the configured ones), their domains and projects, and every project's apps, with
// bounded concurrency. Any failed request fails the whole listing: an incomplete listing must not look like
// removals.
func (r *Reconciler) list(ctx context.Context) (*listing, error) {
	c := r.cfg.Client
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var orgs []Org
	if len(r.cfg.Orgs) > 0 {
		var mu sync.Mutex
		err := source.Parallel(ctx, r.cfg.Concurrency, r.cfg.Orgs, func(ctx context.Context, id string) error {
			o, err := c.GetOrg(ctx, id)
			var ae *APIError
			if errors.As(err, &ae) && ae.Status == 404 {
				return nil // removed: it vanishes, and becomes a tombstone
			}
			if err != nil {
				return err
			}
			mu.Lock()
			orgs = append(orgs, o)
			mu.Unlock()
			return nil
		})
		if err != nil {
			return nil, err
		}
	} else {
		var err error
		if orgs, err = c.ListOrgs(ctx); err != nil {
			return nil, err
		}
		if len(orgs) == 0 {
			// An instance always has its default org: an empty answer means lost permissions, not no orgs.
			return nil, errors.New("zitadel listed no org at all (lost permissions?); refusing to treat every org as removed")
		}
	}
	l := &listing{orgs: map[string]state.MirrorRecord{}, proj: map[string]state.MirrorRecord{}, apps: map[string]state.MirrorRecord{}}
	var live []Org
	for _, o := range orgs {
		if err := state.ValidateID("org", o.ID); err != nil {
			return nil, fmt.Errorf("zitadel listed an org: %w", err)
		}
		if o.State == StateRemoved {
			continue // vanishes like a removed org that is not listed
		}
		live = append(live, o)
	}

	if len(live) >= 1000 {
		r.log.Info("zitadel sync: orgs listed; listing their domains, projects and apps", "orgs", len(live))
	}
	var done atomic.Int64
	stopProgress := r.progress(func() []any {
		return []any{"orgs_done", done.Load(), "orgs", len(live), "projects", l.nProjects.Load(), "apps", l.nApps.Load()}
	})
	defer stopProgress()

	// Projects of every org first, then the apps of every project: one pool, no nested waits.
	type projectJob struct{ orgID, projectID string }
	var projects []projectJob
	var pmu sync.Mutex
	err := source.Parallel(ctx, r.cfg.Concurrency, live, func(ctx context.Context, o Org) error {
		domains, err := c.ListDomains(ctx, o.ID)
		if err != nil {
			return err
		}
		norm := make([]string, 0, len(domains))
		for _, d := range domains {
			d = state.NormalizeDomain(d)
			if state.ValidateID("domain", d) == nil && !slices.Contains(norm, d) {
				norm = append(norm, d)
			}
		}
		slices.Sort(norm)
		ps, err := c.ListProjects(ctx, o.ID)
		if err != nil {
			return err
		}
		if len(norm) > source.MaxListed {
			r.log.Warn("zitadel org has more domains than deact mirrors; the rest are not followed", "org", o.ID, "domains", len(norm), "kept", source.MaxListed)
			norm = norm[:source.MaxListed]
		}
		rec := state.MirrorRecord{Source: SourceName, Kind: state.MirrorOrg, ID: o.ID, Name: source.ClipName(o.Name),
			Domains: norm, Sequence: o.Sequence, ChangedAt: o.Changed.UTC()}
		if o.State == StateInactive {
			rec.Disabled = state.OpLogin | state.OpToken
		}
		l.mu.Lock()
		l.orgs[o.ID] = rec
		for _, p := range ps {
			if state.ValidateID("project", p.ID) != nil {
				l.mu.Unlock()
				return fmt.Errorf("zitadel listed project %q of org %s: invalid id", p.ID, o.ID)
			}
			if p.State == StateRemoved {
				continue
			}
			l.proj[p.ID] = state.MirrorRecord{Source: SourceName, Kind: state.MirrorProject, ID: p.ID, OrgID: o.ID,
				Name: source.ClipName(p.Name), Deactivated: p.State == StateInactive, Sequence: p.Sequence, ChangedAt: p.Changed.UTC()}
		}
		l.mu.Unlock()
		l.nProjects.Add(int64(len(ps)))
		pmu.Lock()
		for _, p := range ps {
			if p.State != StateRemoved {
				projects = append(projects, projectJob{o.ID, p.ID})
			}
		}
		pmu.Unlock()
		done.Add(1)
		return nil
	})
	if err != nil {
		return nil, err
	}
	err = source.Parallel(ctx, r.cfg.Concurrency, projects, func(ctx context.Context, j projectJob) error {
		apps, err := c.ListApps(ctx, j.orgID, j.projectID)
		if err != nil {
			return err
		}
		l.mu.Lock()
		defer l.mu.Unlock()
		for _, a := range apps {
			if state.ValidateID("app", a.ID) != nil {
				return fmt.Errorf("zitadel listed app %q of project %s: invalid id", a.ID, j.projectID)
			}
			if a.State == StateRemoved {
				continue
			}
			rec := state.MirrorRecord{Source: SourceName, Kind: state.MirrorApp, ID: a.ID, ProjectID: j.projectID,
				OrgID: j.orgID, Name: source.ClipName(a.Name), Deactivated: a.State == StateInactive, Sequence: a.Sequence, ChangedAt: a.Changed.UTC()}
			if a.ClientID != "" {
				if state.ValidateID("client", a.ClientID) != nil {
					return fmt.Errorf("zitadel listed app %s with client id %q: invalid id", a.ID, a.ClientID)
				}
				rec.ClientIDs = []string{a.ClientID}
			}
			l.apps[appKey(j.projectID, a.ID)] = rec
		}
		l.nApps.Add(int64(len(apps)))
		return nil
	})
	if err != nil {
		return nil, err
	}
	return l, nil
}

// progress logs fields every 2 s until the returned stop is called: a large first sync shows it is moving.
func (r *Reconciler) progress(fields func() []any) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(2 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				r.log.Info("zitadel sync progress", fields()...)
			}
		}
	}()
	return func() { close(done); wg.Wait() }
}

// inScope reports whether a mirrored record belongs to the orgs this reconciler follows.
func (r *Reconciler) inScope(orgID string) bool {
	return len(r.cfg.Orgs) == 0 || slices.Contains(r.cfg.Orgs, orgID)
}

// diff compares the listing with the mirror and returns the records to write: new and changed ones, and
// tombstones for live records that vanished. It refuses a listing that would remove too much.
func (r *Reconciler) diff(ctx context.Context, l *listing, start time.Time, st *SyncStats) ([]state.MirrorRecord, error) {
	var changes []state.MirrorRecord
	// gone holds the orgs and projects that are tombstones (before or by this reconcile): what vanished with
	// them is their cascade (ZITADEL removes an org's projects and apps with it), already vetted by the guard
	// of its parent's kind, so it does not count towards the guard of its own kind.
	gone := map[string]bool{}
	for _, k := range []struct {
		kind state.MirrorKind
		name string
		want map[string]state.MirrorRecord
	}{{state.MirrorOrg, "orgs", l.orgs}, {state.MirrorProject, "projects", l.proj}, {state.MirrorApp, "apps", l.apps}} {
		seen := make(map[string]bool, len(k.want))
		var tombs []state.MirrorRecord
		live, removing, tombstones := 0, 0, 0
		err := r.cfg.Store.ListMirror(ctx, SourceName, k.kind, func(have state.MirrorRecord, _ int64) error {
			key := have.ID
			if k.kind == state.MirrorApp {
				key = appKey(have.ProjectID, have.ID)
			}
			want, listed := k.want[key]
			owner := have.OrgID
			if k.kind == state.MirrorOrg {
				owner = have.ID
			}
			if !r.inScope(owner) {
				return nil
			}
			if have.Removed {
				gone[have.ID] = true
				if !listed {
					tombstones++
				}
			}
			if !listed {
				if have.Removed {
					return nil
				}
				cascade := k.kind != state.MirrorOrg && (gone[have.OrgID] || gone[have.ProjectID])
				if !cascade {
					live++
				}
				if have.ChangedAt.After(start.Add(-r.cfg.RemoveGrace)) {
					return nil // written by an event just now; the projection may not list it yet
				}
				t := have
				t.Removed, t.RemovedAt, t.ChangedAt = true, start, start
				tombs = append(tombs, t)
				if !cascade {
					removing++
				}
				return nil
			}
			seen[key] = true
			if !have.Removed {
				live++
			}
			switch {
			case sameMirror(have, want):
				st.Unchanged++
			case have.Sequence > want.Sequence:
				// An event newer than the projection's answer is in force. (A tombstone this reconciler wrote at
				// the held sequence, for an object a listing missed, is undone by a listing at that sequence;
				// ZITADEL's own removal events carry a higher sequence than any listing of the live object.)
				st.Stale++
			default:
				changes = append(changes, want)
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("read mirrored %s: %w", k.name, err)
		}
		if err := source.CheckRemovals(k.kind.String(), live, removing, r.cfg.MaxRemovedFraction); err != nil {
			return nil, err
		}
		for _, t := range tombs {
			gone[t.ID] = true
		}
		st.Removed += len(tombs)
		st.Tombstones += tombstones + len(tombs)
		st.Records += len(k.want) + tombstones + len(tombs)
		changes = append(changes, tombs...)
		for key, want := range k.want {
			if !seen[key] {
				changes = append(changes, want)
			}
		}
	}
	return changes, nil
}

// sameMirror compares what a listing can say about a record.
func sameMirror(a, b state.MirrorRecord) bool {
	return a.Kind == b.Kind && a.ID == b.ID && a.ProjectID == b.ProjectID && a.OrgID == b.OrgID &&
		a.Disabled == b.Disabled && a.Deactivated == b.Deactivated && a.Removed == b.Removed &&
		a.Sequence == b.Sequence && a.Name == b.Name && slices.Equal(a.ClientIDs, b.ClientIDs) && slices.Equal(a.Domains, b.Domains)
}

// write applies the changes in batches, a few at a time, logging progress on large syncs.
func (r *Reconciler) write(ctx context.Context, changes []state.MirrorRecord, st *SyncStats) error {
	if len(changes) == 0 {
		return nil
	}
	var w source.MirrorWrites
	stop := r.progress(func() []any {
		return []any{"written", w.Written.Load(), "of", len(changes)}
	})
	defer stop()
	err := source.WriteMirror(ctx, r.cfg.Store, changes, r.cfg.BatchSize, r.cfg.WriteConcurrency,
		state.Change{Actor: "source:" + SourceName, Reason: "zitadel reconcile"}, &w)
	st.Written += int(w.Written.Load())
	st.Unchanged += int(w.Unchanged.Load())
	st.Stale += int(w.Stale.Load())
	st.Revision = w.Revision.Load()
	return err
}
