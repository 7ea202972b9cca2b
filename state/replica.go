package state

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync"
	"sync/atomic"
	"time"

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
	// ProgressInterval is how often the replica learns etcd's committed revision and asks to be confirmed
	// current up to it [500ms]; staleness stays below about this value plus one round trip while etcd is
	// reachable and the replica keeps up.
	ProgressInterval time.Duration
	// ResyncInterval is the period of the anti-entropy relist [10m]; negative disables it.
	ResyncInterval time.Duration
	// RetryInterval is the pause before relisting after an error [200ms].
	RetryInterval time.Duration
	// Seed, when set, has the first list taken from an admin node's replica rather than from etcd (seed.go); the
	// replica is ready once it has caught up with etcd from there. Nil lists etcd.
	Seed *SeedConfig
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

	applied atomic.Int64 // highest revision etcd confirmed we hold everything up to
	// currentAt is the latest moment (monotonic nanoseconds since epoch) as of which the replica is known to
	// hold everything etcd had committed: the time a linearizable read was sent whose revision the replica has
	// since applied. 0 = never.
	currentAt   atomic.Int64
	relists     atomic.Int64
	resumes     atomic.Int64
	corrections atomic.Int64
	badRecords  atomic.Int64
	seeded      atomic.Int64 // 1 once the first snapshot came from an admin node
	seedTried   bool         // the seed was tried (only the first list tries it); read and written by Run only

	ready     chan struct{}
	readyOnce sync.Once
	probeNow  chan struct{} // a probe is wanted before the next tick (WaitApplied)
	freeing   sync.WaitGroup

	mu       sync.Mutex
	changed  chan struct{}  // closed and replaced whenever the snapshot changes
	advanced chan struct{}  // closed and replaced whenever the applied revision moves
	targets  []currencyMark // revisions learned from etcd that the replica has not applied yet, oldest first
}

// currencyMark is a committed revision of etcd and the moment it was asked for: once the replica has applied
// rev, it holds everything etcd had committed at time at.
type currencyMark struct {
	rev int64
	at  int64 // monotonic nanoseconds since the replica's epoch
}

// maxCurrencyMarks bounds the marks kept while the replica lags; dropping the oldest only overstates staleness.
const maxCurrencyMarks = 1024

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
		ready: make(chan struct{}), changed: make(chan struct{}), advanced: make(chan struct{}), probeNow: make(chan struct{}, 1),
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

// readyChan is closed once the replica is ready.
func (r *Replica) readyChan() <-chan struct{} { return r.ready }

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

// Staleness bounds how far behind etcd's committed state the snapshot may be: the replica holds every write
// etcd had committed Staleness ago. It is measured from the moment the replica asked etcd for its committed
// revision (a linearizable read, every ProgressInterval) to now, once the replica has applied that revision;
// so a replica that receives events but lags behind a burst of writes shows its real lag, and a replica
// frozen between the question and the answer cannot make itself look fresher. Before the first list is
// applied it is the time since the replica was created. Safe on the hot path: one atomic load, one clock read.
func (r *Replica) Staleness() time.Duration {
	return time.Since(r.epoch) - time.Duration(r.currentAt.Load())
}

// StalenessAt is Staleness as of now, a reading of this process's clock that carries a monotonic reading
// (time.Now, or a time derived from one with Add; only the monotonic part is used), so that a caller that needs
// the time anyway (the fence, NodeReporter.FencedAt) reads the clock once.
func (r *Replica) StalenessAt(now time.Time) time.Duration {
	return now.Sub(r.epoch) - time.Duration(r.currentAt.Load())
}

// WaitApplied blocks until the replica has applied rev (AppliedRevision ≥ rev) or ctx ends. Revisions of writes
// outside StatePrefix are reached through progress notifications: a wait asks the watch for a probe at once
// (a node's registration waits so before it decides), rather than at its next ProgressInterval.
func (r *Replica) WaitApplied(ctx context.Context, rev int64) error {
	for {
		r.mu.Lock()
		advanced := r.advanced
		r.mu.Unlock()
		if r.applied.Load() >= rev {
			return nil
		}
		select {
		case r.probeNow <- struct{}{}:
		default: // one is asked for already
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-advanced:
		}
	}
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
	Resumes     int64 // watches resumed from the applied revision after one broke, without a list
	Corrections int64 // records a relist found different from what the watch had delivered
	BadRecords  int64 // records that could not be decoded (held deactivated or dropped)
	Seeded      bool  // the first snapshot came from an admin node (seed.go), not from a list of etcd
}

// Stats returns the counters.
func (r *Replica) Stats() ReplicaStats {
	return ReplicaStats{Relists: r.relists.Load(), Resumes: r.resumes.Load(), Corrections: r.corrections.Load(), BadRecords: r.badRecords.Load(),
		Seeded: r.seeded.Load() == 1}
}

var (
	errResync = errors.New("anti-entropy resync")
	errNoSeed = errors.New("no seed")
	// errWentBack is etcd answering with a revision older than one the replica applied (see probe).
	errWentBack = errors.New("etcd's revision went back")
)

// bigList is the snapshot size from which a relist returns its garbage to the OS at once.
const bigList = 100_000

// A list may allocate listGarbage, or a tenth of the heap its last collection left live if more, between two
// collections it starts; while collections find that the list keeps most of what it allocates, the budget
// doubles at each. A list that decodes records the fast way (jsonfast.go) from a stream parsed in place
// (liststream.go) keeps nearly all it allocates: at 10⁶ records a handful of collections, as the runtime's own
// pace would make. One that makes garbage (records encoding/json decodes, a relist beside the old snapshot)
// keeps the budget small, and the peak within about a tenth of the live heap above it.
const (
	listGarbage      = 16 << 20
	listGarbageShare = 10
)

// listGC collects a large list's garbage as it goes. At the GC's default pace the heap can reach twice the live
// heap before each collection: collecting as the budget above is spent keeps the peak near the live heap (a
// sidecar's memory limit is set by the peak). Collections run beside the list, one at a time, so that on a node
// with a core to spare the list goes on meanwhile. A small list never collects. done waits for the last one.
type listGC struct {
	records int
	sample  [1]metrics.Sample // bytes allocated so far
	last    atomic.Uint64     // bytes allocated when the last collection started
	budget  atomic.Uint64
	running sync.WaitGroup
	busy    atomic.Bool
	// Read and written by the collection running (one at a time): the counters after the last one.
	prevAllocs, prevLive uint64
}

// record is called for each record listed; it reads the allocation counter every 1024 records.
func (g *listGC) record() {
	if g.records++; g.records%1024 != 0 {
		return
	}
	if g.sample[0].Name == "" {
		g.sample[0].Name = "/gc/heap/allocs:bytes"
		g.prevAllocs, g.prevLive = heapCounters()
		g.last.Store(g.prevAllocs)
		g.budget.Store(listGarbage)
		return
	}
	metrics.Read(g.sample[:])
	allocs := g.sample[0].Value.Uint64()
	if allocs-g.last.Load() < g.budget.Load() || !g.busy.CompareAndSwap(false, true) {
		return
	}
	g.last.Store(allocs)
	g.running.Add(1)
	go func() {
		defer g.running.Done()
		defer g.busy.Store(false)
		runtime.GC()
		g.next()
	}()
}

// next sets the budget after a collection from what it found: the budget doubles while the list keeps more
// than three quarters of what it allocated since the one before.
func (g *listGC) next() {
	allocs, live := heapCounters()
	allocated := allocs - g.prevAllocs
	kept := uint64(0)
	if live > g.prevLive {
		kept = live - g.prevLive
	}
	budget := max(listGarbage, live/listGarbageShare)
	if kept*4 > allocated*3 {
		budget = max(budget, 2*g.budget.Load())
	}
	g.budget.Store(budget)
	g.last.Store(allocs)
	g.prevAllocs, g.prevLive = allocs, live
}

// done waits for a collection still running.
func (g *listGC) done() { g.running.Wait() }

// heapCounters are the bytes allocated so far and the heap the last collection left live.
func heapCounters() (allocs, live uint64) {
	s := []metrics.Sample{{Name: "/gc/heap/allocs:bytes"}, {Name: "/gc/heap/live:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64(), s[1].Value.Uint64()
}

// Run syncs until ctx ends; it returns nil then. Errors from etcd are logged and retried: the replica keeps
// serving its last snapshot while etcd is unreachable, and Staleness grows.
//
// A watch that breaks (its member lost its leader, the stream was cut) is resumed from the applied revision, as
// a Kubernetes reflector re-watches from its last resource version: the snapshot holds everything up to that
// revision, so the events after it are all that is missing. Only a compacted revision, the anti-entropy resync
// and a failed list list etcd again: a fleet whose watches all broke at once (an election) must not all list
// etcd at once when it is back. Retries back off, with jitter, from RetryInterval to maxRetryInterval.
func (r *Replica) Run(ctx context.Context) error {
	defer r.freeing.Wait()
	var rev int64 // the revision to watch after; 0 until a list succeeds, and after a watch that needs one
	retry := Backoff{Min: r.cfg.RetryInterval, Max: maxRetryInterval}
	failures := 0
	for {
		before := r.applied.Load()
		var err error
		if rev == 0 {
			rev, err = r.relist(ctx)
		} else {
			r.resumes.Add(1)
		}
		if err == nil {
			err = r.watch(ctx, rev)
		}
		if ctx.Err() != nil {
			return nil
		}
		rev = 0
		if errors.Is(err, errResync) {
			continue
		}
		applied := r.applied.Load()
		if applied > 0 && !errors.Is(err, rpctypes.ErrCompacted) && !errors.Is(err, errWentBack) {
			rev = applied
		}
		if applied > before {
			failures = 0 // it made progress: this is a new failure, not the same one again
		}
		failures++
		r.log.Warn("replica: etcd list or watch failed", "err", err, "applied_revision", applied, "relist", rev == 0, "failures", failures)
		if !retry.Sleep(ctx, failures) {
			return nil
		}
	}
}

// maxRetryInterval bounds the backoff between a replica's attempts to list or watch etcd again.
const maxRetryInterval = 5 * time.Second

// relist reads the whole state at one linearizable revision and swaps it in. It streams the range where the
// server supports it (etcd ≥ 3.7), and otherwise reads it in pages, all at the revision of the first page.
func (r *Replica) relist(ctx context.Context) (int64, error) {
	asked := r.now() // the list is a linearizable read: everything committed before now is in it
	old := r.snap.Load()
	var b *builder
	// start begins a builder, with room for hint records of each kind: a list counts etcd's first, a seed
	// takes the admin node's counts.
	start := func(hint [nKinds]int) {
		b = newBuilder(nil)
		b.prev, b.hint = old, hint
	}
	var gc listGC
	put := func(key, value []byte, modRev int64) {
		gc.record()
		if err := b.putListed(key, value, modRev); err != nil {
			r.badRecords.Add(1)
			r.log.Error("unreadable state record", "err", err)
		}
	}
	var rev int64
	err := errNoSeed
	if r.cfg.Seed != nil && !r.seedTried {
		r.seedTried = true
		start([nKinds]int{})
		if rev, err = r.seed(ctx, func(n [nKinds]int) { b.hint = n }, put); err != nil {
			r.log.Warn("no seed from an admin node: listing etcd", "err", err)
		}
	}
	seeded := err == nil
	if !seeded {
		start(r.countKinds(ctx))
		rev, err = r.listStream(ctx, put)
	}
	if status.Code(err) == codes.Unimplemented {
		start(b.hint)
		rev, err = r.listPages(ctx, put)
	}
	gc.done()
	if err != nil {
		return 0, fmt.Errorf("list %s: %w", StatePrefix, err)
	}
	if applied := r.applied.Load(); rev < applied {
		// A linearizable read cannot be older than what a watch delivered; refuse rather than go back.
		return 0, fmt.Errorf("%w: list revision %d is older than applied revision %d", errWentBack, rev, applied)
	}
	// The list holds every change up to rev, deletes included, so rev is the snapshot's revision.
	next := b.snapshot()
	next.revision = rev
	if old != nil {
		if n := diff(old, next); n > 0 {
			r.corrections.Add(int64(n))
			r.log.Info("relist corrected records", "records", n, "revision", rev)
		}
	}
	r.relists.Add(1)
	r.publish(next, rev)
	if seeded {
		// The admin node's snapshot says nothing of how current it is: the replica is current, and ready, once
		// it has applied a revision a linearizable read of etcd returned (the watch's first probe).
		r.seeded.Store(1)
		r.log.Info("replica seeded from an admin node", "records", next.Len(), "revision", rev)
	} else {
		r.markCurrent(asked)
	}
	if old != nil || gc.records >= bigList {
		// What the list left (the old snapshot, the last budget's garbage) goes back to the OS now, rather than
		// the heap carrying it until the GC would next run; beside the watch, which need not wait for it (nor
		// a seeded replica's first probe, nor a node's registration).
		old, b = nil, nil
		r.freeing.Add(1)
		go func() {
			defer r.freeing.Done()
			debug.FreeOSMemory()
		}()
	}
	return rev, nil
}

// countKinds counts the records of each kind (count-only ranges, which etcd answers from its index, in one
// transaction: one round trip), so that a list can size its tables at once; counts that fail are 0, unknown.
func (r *Replica) countKinds(ctx context.Context) [nKinds]int {
	var n [nKinds]int
	var ops []clientv3.Op
	for k := kindOrg; k <= kindAccount; k++ {
		ops = append(ops, clientv3.OpGet(keyOf(k, ""), clientv3.WithPrefix(), clientv3.WithCountOnly()))
	}
	resp, err := r.cfg.Client.Txn(ctx).Then(ops...).Commit()
	if err != nil {
		return n
	}
	for i, op := range resp.Responses {
		if rr := op.GetResponseRange(); rr != nil && i < len(ops) {
			n[kindOrg+kind(i)] = int(rr.Count)
		}
	}
	return n
}

func (r *Replica) listPages(ctx context.Context, put func(key, value []byte, modRev int64)) (int64, error) {
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
		for _, kv := range resp.Kvs {
			put(kv.Key, kv.Value, kv.ModRevision)
		}
		if !resp.More || len(resp.Kvs) == 0 {
			return rev, nil
		}
		key = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
}

// watch applies changes after rev until the watch breaks, is compacted, or the resync interval passes.
func (r *Replica) watch(ctx context.Context, rev int64) error {
	var probes sync.WaitGroup
	defer probes.Wait() // runs after cancel below: a probe ends with wctx
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	cli := r.cfg.Client
	wch := cli.Watch(wctx, StatePrefix, clientv3.WithPrefix(), clientv3.WithRev(rev+1), clientv3.WithProgressNotify())

	// One probe at a time, off this loop, so that a slow etcd neither blocks applying events nor piles up
	// requests. A failed probe shows up as growing staleness.
	var probing atomic.Bool
	wentBack := make(chan error, 1)
	startProbe := func() {
		if probing.CompareAndSwap(false, true) {
			probes.Add(1)
			go func() {
				defer probes.Done()
				defer probing.Store(false)
				if err := r.probe(wctx); err != nil {
					select {
					case wentBack <- err:
					default:
					}
				}
			}()
		}
	}
	if !r.Ready() {
		startProbe() // a seeded replica is ready once current: do not wait a tick to learn it
	}

	progress := time.NewTicker(r.cfg.ProgressInterval)
	defer progress.Stop()
	var resync <-chan time.Time
	if r.cfg.ResyncInterval > 0 {
		t := time.NewTimer(jitter(r.cfg.ResyncInterval))
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
			startProbe()
		case <-r.probeNow:
			startProbe()
		case err := <-wentBack:
			return err
		case resp, ok := <-wch:
			for {
				if err := watchFailed(resp, ok, rev); err != nil {
					return err
				}
				if resp.IsProgressNotify() {
					r.confirm(resp.Header.Revision)
					break
				}
				var ahead bool
				if resp, ok, ahead = r.apply(resp, wch); !ahead {
					break
				}
				// A response read ahead: handled like any other.
			}
		}
	}
}

// watchFailed is the error that ends a watch at a response (ok false: the channel closed), or nil.
func watchFailed(resp clientv3.WatchResponse, ok bool, rev int64) error {
	switch {
	case !ok:
		return errors.New("watch channel closed")
	case resp.CompactRevision != 0:
		return fmt.Errorf("watch from %d: %w (compacted at %d)", rev+1, rpctypes.ErrCompacted, resp.CompactRevision)
	case resp.Err() != nil:
		return fmt.Errorf("watch: %w", resp.Err())
	case resp.Canceled:
		return errors.New("watch canceled by server")
	}
	return nil
}

// maxApplyBatch bounds the watch responses one snapshot takes in.
const maxApplyBatch = 256

// apply publishes a watch response of events, with the event responses already waiting behind it on wch, as one
// snapshot: a shard several of them touch is copied once for the lot. With a large state that copy is most of
// an apply's cost (a shard of 10⁶ records holds about 4,000), so a replica that falls behind a burst spends
// less per change the further behind it is (BenchmarkApply). Waiting responses are only taken, never waited
// for: a lone change is published as soon as it is applied. Each response is applied whole, in order; the
// snapshot holds everything up to the last one's top revision. The first response behind them that is not
// events (a progress notification, an error, the channel's end) is returned with ahead true, for the caller to
// handle after this publish (with ok false for the channel's end).
func (r *Replica) apply(resp clientv3.WatchResponse, wch clientv3.WatchChan) (next clientv3.WatchResponse, ok, ahead bool) {
	b := newBuilder(r.snap.Load())
	top := r.applyEvents(b, resp.Events, 0)
	defer func() { r.publish(b.snapshot(), top) }()
	for range maxApplyBatch - 1 {
		select {
		case next, ok = <-wch:
		default:
			return clientv3.WatchResponse{}, false, false
		}
		if watchFailed(next, ok, 0) != nil || next.IsProgressNotify() {
			return next, ok, true
		}
		top = r.applyEvents(b, next.Events, top)
	}
	return clientv3.WatchResponse{}, false, false
}

// applyEvents applies one response's events to b and returns the highest revision seen, at least top.
func (r *Replica) applyEvents(b *builder, evs []*clientv3.Event, top int64) int64 {
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
	return top
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

// probe learns etcd's committed revision with a linearizable read and asks, on the watch stream wctx, to be
// confirmed current up to it (the answer is a progress notification, which also covers writes outside
// StatePrefix). The time is taken before the read is sent: once the replica has applied the revision, it
// holds everything committed before that time.
//
// A revision below the applied one means etcd went back (restored without --bump-revision): a watch after the
// applied revision would wait for revisions etcd reuses, and the probes would call the replica current. That is
// errWentBack, which ends the watch; the replica then lists etcd, refuses the older list and grows stale.
func (r *Replica) probe(wctx context.Context) error {
	asked := r.now()
	// What was applied before the read is sent was committed before it: a linearizable read returns at least
	// that revision (the watch may apply later writes, of higher revisions, while the read is on its way).
	applied := r.applied.Load()
	gctx, cancel := context.WithTimeout(wctx, probeTimeout)
	defer cancel()
	resp, err := r.cfg.Client.Get(gctx, StatePrefix) // one key no record uses: the answer is just the header
	if err != nil {
		return nil
	}
	rev := resp.Header.Revision
	if rev < applied {
		return fmt.Errorf("%w: its revision is %d, this replica applied %d", errWentBack, rev, applied)
	}
	r.expect(rev, asked)
	// etcd answers a progress request only while every watcher on the stream is synced (progressIfSync): a watch
	// just started from an older revision, a seeded replica's, is not until etcd's next move of unsynced
	// watchers (every 100 ms), and the request goes unanswered. Ask again, sooner than the next tick, until the
	// revision is applied.
	for wait := probeRetry; r.applied.Load() < rev; wait = min(2*wait, r.cfg.ProgressInterval) {
		_ = r.cfg.Client.RequestProgress(gctx)
		select {
		case <-gctx.Done():
			return nil
		case <-time.After(wait):
		}
	}
	return nil
}

// probeTimeout bounds one probe; until it ends no other is sent. probeRetry is the first wait before a
// probe's progress request is sent again.
const (
	probeTimeout = 5 * time.Second
	probeRetry   = 10 * time.Millisecond
)

func (r *Replica) now() int64 { return int64(time.Since(r.epoch)) }

// expect records that etcd had committed rev at time at (monotonic, since epoch).
func (r *Replica) expect(rev, at int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.applied.Load() >= rev {
		r.markCurrent(at)
		return
	}
	if len(r.targets) >= maxCurrencyMarks {
		r.targets = r.targets[1:]
	}
	r.targets = append(r.targets, currencyMark{rev: rev, at: at})
}

// markCurrent moves currentAt forward to at; it never goes back. The first time, the replica is ready: it holds
// a snapshot, and everything etcd had committed at some moment.
func (r *Replica) markCurrent(at int64) {
	for cur := r.currentAt.Load(); at > cur && !r.currentAt.CompareAndSwap(cur, at); cur = r.currentAt.Load() {
	}
	r.readyOnce.Do(func() {
		s := r.snap.Load()
		close(r.ready)
		r.log.Info("replica ready", "records", s.Len(), "revision", s.Revision(), "seeded", r.seeded.Load() == 1)
	})
}

// confirm records that etcd has told us we hold everything up to rev: it settles the currency marks rev
// reaches and wakes WaitApplied.
func (r *Replica) confirm(rev int64) {
	for {
		cur := r.applied.Load()
		if rev <= cur {
			return
		}
		if r.applied.CompareAndSwap(cur, rev) {
			break
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for n < len(r.targets) && r.targets[n].rev <= rev {
		n++
	}
	if n > 0 {
		r.markCurrent(r.targets[n-1].at)
		r.targets = append(r.targets[:0], r.targets[n:]...)
	}
	close(r.advanced)
	r.advanced = make(chan struct{})
}
