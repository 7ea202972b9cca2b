package state

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// ReplicaConfig configures a Replica. Zero values take the defaults in brackets.
type ReplicaConfig struct {
	Client   *clientv3.Client
	Logger   *slog.Logger
	PageSize int64 // records per list page when the server cannot stream a range (etcd < 3.7) [5000]
	// ProgressInterval is how often the replica asks etcd to confirm it is current [500ms]; staleness stays
	// below about this value while etcd is reachable.
	ProgressInterval time.Duration
	// ResyncInterval is the period of the anti-entropy relist [10m]; negative disables it.
	ResyncInterval time.Duration
	// RetryInterval is the pause before relisting after an error [200ms].
	RetryInterval time.Duration
}

// Replica keeps an in-memory copy of everything under StatePrefix: it lists at a revision R, then watches from
// R+1, and publishes each watch response as one new Snapshot. It is not ready, and Snapshot returns nil, until the
// first list is applied. Its applied revision never goes back. All methods are safe for concurrent use; Snapshot
// is lock-free.
type Replica struct {
	cfg   ReplicaConfig
	log   *slog.Logger
	snap  atomic.Pointer[Snapshot]
	epoch time.Time

	applied     atomic.Int64 // highest revision etcd confirmed we hold everything up to
	lastContact atomic.Int64 // nanoseconds since epoch (monotonic) of the last confirmation; 0 = never
	relists     atomic.Int64
	corrections atomic.Int64
	badRecords  atomic.Int64

	ready     chan struct{}
	readyOnce sync.Once

	mu      sync.Mutex
	changed chan struct{} // closed and replaced whenever the snapshot changes
}

// NewReplica returns a replica; call Run to start syncing.
func NewReplica(cfg ReplicaConfig) *Replica {
	if cfg.PageSize <= 0 {
		cfg.PageSize = 5000
	}
	if cfg.ProgressInterval <= 0 {
		cfg.ProgressInterval = 500 * time.Millisecond
	}
	if cfg.ResyncInterval == 0 {
		cfg.ResyncInterval = 10 * time.Minute
	}
	if cfg.RetryInterval <= 0 {
		cfg.RetryInterval = 200 * time.Millisecond
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Replica{
		cfg: cfg, log: cfg.Logger.With("component", "replica"), epoch: time.Now(),
		ready: make(chan struct{}), changed: make(chan struct{}),
	}
}

// Snapshot returns the current snapshot, or nil before the first list is applied. Never blocks.
func (r *Replica) Snapshot() *Snapshot { return r.snap.Load() }

// Ready reports whether the first list has been applied.
func (r *Replica) Ready() bool {
	select {
	case <-r.ready:
		return true
	default:
		return false
	}
}

// WaitReady blocks until the replica is ready or ctx ends.
func (r *Replica) WaitReady(ctx context.Context) error {
	select {
	case <-r.ready:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// AppliedRevision is the etcd revision up to which this replica holds every change.
func (r *Replica) AppliedRevision() int64 { return r.applied.Load() }

// Staleness is the time since etcd last confirmed this replica was current (a watch event or a progress
// notification). Before the first confirmation it is the time since the replica was created.
func (r *Replica) Staleness() time.Duration {
	last := r.lastContact.Load()
	return time.Since(r.epoch) - time.Duration(last)
}

// Changed returns a channel that is closed at the next snapshot change.
func (r *Replica) Changed() <-chan struct{} {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.changed
}

// ReplicaStats are counters for metrics and status pages.
type ReplicaStats struct {
	Relists     int64 // lists applied, the first included
	Corrections int64 // records a relist found different from what the watch had delivered
	BadRecords  int64 // records that could not be decoded (held deactivated or dropped)
}

// Stats returns the counters.
func (r *Replica) Stats() ReplicaStats {
	return ReplicaStats{Relists: r.relists.Load(), Corrections: r.corrections.Load(), BadRecords: r.badRecords.Load()}
}

var errResync = errors.New("anti-entropy resync")

// bigList is the snapshot size from which a relist returns its garbage to the OS at once.
const bigList = 100_000

// Run syncs until ctx ends; it returns nil then. Errors from etcd are logged and retried: the replica keeps
// serving its last snapshot while etcd is unreachable, and Staleness grows.
func (r *Replica) Run(ctx context.Context) error {
	for {
		rev, err := r.relist(ctx)
		if err == nil {
			err = r.watch(ctx, rev)
		}
		if ctx.Err() != nil {
			return nil
		}
		if !errors.Is(err, errResync) {
			r.log.Warn("replica resyncing", "err", err, "applied_revision", r.applied.Load())
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(r.cfg.RetryInterval):
			}
		}
	}
}

// relist reads the whole state at one linearizable revision and swaps it in. It streams the range where the
// server supports it (etcd ≥ 3.7), and otherwise reads it in pages, all at the revision of the first page.
func (r *Replica) relist(ctx context.Context) (int64, error) {
	b := newBuilder(nil)
	seen := 0
	add := func(kvs []*mvccpb.KeyValue) {
		// A large list makes as much garbage as it keeps; collecting it as we go keeps the peak near the live
		// heap instead of twice it (a sidecar's memory limit is set by the peak).
		if seen += len(kvs); seen >= bigList {
			seen = 0
			runtime.GC()
		}
		for _, kv := range kvs {
			if err := b.put(string(kv.Key), kv.Value, kv.ModRevision); err != nil {
				r.badRecords.Add(1)
				r.log.Error("unreadable state record", "err", err)
			}
		}
	}
	rev, err := r.listStream(ctx, add)
	if status.Code(err) == codes.Unimplemented {
		b = newBuilder(nil)
		rev, err = r.listPages(ctx, add)
	}
	if err != nil {
		return 0, fmt.Errorf("list %s: %w", StatePrefix, err)
	}
	if applied := r.applied.Load(); rev < applied {
		// A linearizable read cannot be older than what a watch delivered; refuse rather than go back.
		return 0, fmt.Errorf("list revision %d is older than applied revision %d", rev, applied)
	}
	// The list holds every change up to rev, deletes included, so rev is the snapshot's revision.
	b.s.revision = rev
	old := r.snap.Load()
	if old != nil {
		if n := diff(old, b.s); n > 0 {
			r.corrections.Add(int64(n))
			r.log.Info("relist corrected records", "records", n, "revision", rev)
		}
	}
	r.relists.Add(1)
	r.publish(b.s, rev)
	if n := b.s.Len(); n >= bigList {
		// A list of this size leaves as much garbage as it keeps (pages, decoded JSON, the old snapshot); give
		// it back now rather than carry twice the live heap until the GC would next run.
		debug.FreeOSMemory()
	}
	r.readyOnce.Do(func() {
		close(r.ready)
		r.log.Info("replica ready", "records", b.s.Len(), "revision", rev)
	})
	return rev, nil
}

func (r *Replica) listStream(ctx context.Context, add func([]*mvccpb.KeyValue)) (int64, error) {
	ch, err := r.cfg.Client.GetStream(ctx, StatePrefix, clientv3.WithPrefix())
	if err != nil {
		return 0, err
	}
	var rev int64
	for resp := range ch {
		if err := resp.Err(); err != nil {
			return 0, err
		}
		add(resp.Kvs)
		if resp.Header != nil {
			rev = resp.Header.Revision
		}
	}
	if rev == 0 {
		return 0, errors.New("range stream ended without its final chunk")
	}
	return rev, nil
}

func (r *Replica) listPages(ctx context.Context, add func([]*mvccpb.KeyValue)) (int64, error) {
	end := clientv3.GetPrefixRangeEnd(StatePrefix)
	key := StatePrefix
	var rev int64
	for {
		opts := []clientv3.OpOption{clientv3.WithRange(end), clientv3.WithLimit(r.cfg.PageSize)}
		if rev != 0 {
			opts = append(opts, clientv3.WithRev(rev))
		}
		resp, err := r.cfg.Client.Get(ctx, key, opts...)
		if err != nil {
			return 0, err
		}
		if rev == 0 {
			rev = resp.Header.Revision
		}
		add(resp.Kvs)
		if !resp.More || len(resp.Kvs) == 0 {
			return rev, nil
		}
		key = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
}

// watch applies changes after rev until the watch breaks, is compacted, or the resync interval passes.
func (r *Replica) watch(ctx context.Context, rev int64) error {
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	cli := r.cfg.Client
	wch := cli.Watch(wctx, StatePrefix, clientv3.WithPrefix(), clientv3.WithRev(rev+1), clientv3.WithProgressNotify())

	progress := time.NewTicker(r.cfg.ProgressInterval)
	defer progress.Stop()
	var resync <-chan time.Time
	if r.cfg.ResyncInterval > 0 {
		t := time.NewTimer(r.cfg.ResyncInterval)
		defer t.Stop()
		resync = t.C
	}
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-resync:
			return errResync
		case <-progress.C:
			// Asks the server to confirm, on this watch stream, that we have seen everything; the answer is a
			// progress notification handled below. A failure shows up as growing staleness.
			pctx, pcancel := context.WithTimeout(wctx, r.cfg.ProgressInterval)
			_ = cli.RequestProgress(pctx)
			pcancel()
		case resp, ok := <-wch:
			if !ok {
				return errors.New("watch channel closed")
			}
			if resp.CompactRevision != 0 {
				return fmt.Errorf("watch from %d: %w (compacted at %d)", rev+1, rpctypes.ErrCompacted, resp.CompactRevision)
			}
			if err := resp.Err(); err != nil {
				return fmt.Errorf("watch: %w", err)
			}
			if resp.Canceled {
				return errors.New("watch canceled by server")
			}
			if resp.IsProgressNotify() {
				r.confirm(resp.Header.Revision)
				continue
			}
			r.apply(resp.Events)
		}
	}
}

// apply publishes one watch response as one snapshot.
func (r *Replica) apply(evs []*clientv3.Event) {
	b := newBuilder(r.snap.Load())
	var top int64
	for _, ev := range evs {
		rev := ev.Kv.ModRevision
		if rev > top {
			top = rev
		}
		switch ev.Type {
		case clientv3.EventTypePut:
			if err := b.put(string(ev.Kv.Key), ev.Kv.Value, rev); err != nil {
				r.badRecords.Add(1)
				r.log.Error("unreadable state record", "err", err)
			}
		case clientv3.EventTypeDelete:
			b.del(string(ev.Kv.Key), rev)
		}
	}
	r.publish(b.s, top)
}

// publish swaps in a snapshot holding everything up to rev and wakes whoever waits for a change.
func (r *Replica) publish(s *Snapshot, rev int64) {
	r.snap.Store(s)
	r.confirm(rev)
	r.mu.Lock()
	close(r.changed)
	r.changed = make(chan struct{})
	r.mu.Unlock()
}

// confirm records that etcd has told us we hold everything up to rev, now.
func (r *Replica) confirm(rev int64) {
	for {
		cur := r.applied.Load()
		if rev <= cur || r.applied.CompareAndSwap(cur, rev) {
			break
		}
	}
	r.lastContact.Store(int64(time.Since(r.epoch)))
}
