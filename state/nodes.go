package state

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// NodeReporterConfig configures a NodeReporter.
type NodeReporterConfig struct {
	Client  *clientv3.Client
	Replica *Replica
	NodeID  string
	Version string
	Logger  *slog.Logger
	// TTL of the node's lease [10s]: a node that stops without revoking disappears after it.
	TTL time.Duration
	// Heartbeat rewrites the record this often even without changes, so its staleness stays current [10s].
	Heartbeat time.Duration
}

// NodeReporter keeps this gateway node's record under NodesPrefix, on a lease, with the replica's applied
// revision. Writes are coalesced: at most one is in flight, and the next one carries the latest revision.
type NodeReporter struct {
	cfg            NodeReporterConfig
	log            *slog.Logger
	registered     chan struct{}
	registeredOnce sync.Once
}

// NewNodeReporter validates the node ID and returns a reporter; Run starts it.
func NewNodeReporter(cfg NodeReporterConfig) (*NodeReporter, error) {
	if err := ValidateID("node", cfg.NodeID); err != nil {
		return nil, err
	}
	if cfg.TTL < 5*time.Second {
		cfg.TTL = 10 * time.Second
	}
	if cfg.Heartbeat <= 0 {
		cfg.Heartbeat = 10 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &NodeReporter{cfg: cfg, log: cfg.Logger.With("component", "node-reporter"), registered: make(chan struct{})}, nil
}

// Registered is closed once the node's record is first written. A gateway should not take traffic before:
// writers only wait for nodes in the registry, so a node serving before it registers could miss the
// confirmation of a write it has not applied yet.
func (n *NodeReporter) Registered() <-chan struct{} { return n.registered }

// Run reports until ctx ends, then revokes the lease so the node leaves the registry at once.
func (n *NodeReporter) Run(ctx context.Context) error {
	if err := n.cfg.Replica.WaitReady(ctx); err != nil {
		return nil
	}
	untilDone(ctx, n.log, "node registration lost, registering again", 500*time.Millisecond, n.session)
	return nil
}

// untilDone runs f again and again, pausing after each failure, until ctx ends.
func untilDone(ctx context.Context, log *slog.Logger, msg string, pause time.Duration, f func(context.Context) error) {
	for ctx.Err() == nil {
		err := f(ctx)
		if ctx.Err() != nil {
			return
		}
		log.Warn(msg, "err", err)
		select {
		case <-ctx.Done():
		case <-time.After(pause):
		}
	}
}

// session holds one lease and writes the record until the lease is lost or ctx ends.
func (n *NodeReporter) session(ctx context.Context) error {
	cli := n.cfg.Client
	lease, err := cli.Grant(ctx, int64(n.cfg.TTL/time.Second))
	if err != nil {
		return fmt.Errorf("grant lease: %w", err)
	}
	defer func() {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
		_, _ = cli.Revoke(rctx, lease.ID)
		cancel()
	}()
	kctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ka, err := cli.KeepAlive(kctx, lease.ID)
	if err != nil {
		return fmt.Errorf("keep lease alive: %w", err)
	}
	heartbeat := time.NewTicker(n.cfg.Heartbeat)
	defer heartbeat.Stop()
	var written int64 = -1
	for {
		changed := n.cfg.Replica.Changed()
		if rev := n.cfg.Replica.AppliedRevision(); rev != written {
			if err := n.write(ctx, lease.ID, rev); err != nil {
				return err
			}
			written = rev
			continue // the replica may have moved on while we wrote
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case _, ok := <-ka:
			if !ok {
				return errors.New("lease keep-alive ended")
			}
		case <-changed:
		case <-heartbeat.C:
			written = -1
		}
	}
}

func (n *NodeReporter) write(ctx context.Context, lease clientv3.LeaseID, rev int64) error {
	b, err := json.Marshal(Node{
		ID: n.cfg.NodeID, AppliedRevision: rev, SyncedAt: time.Now().UTC(),
		StalenessMs: n.cfg.Replica.Staleness().Milliseconds(), Version: n.cfg.Version,
	})
	if err != nil {
		return err
	}
	if _, err := n.cfg.Client.Put(ctx, NodeKey(n.cfg.NodeID), string(b), clientv3.WithLease(lease)); err != nil {
		return fmt.Errorf("write node record: %w", err)
	}
	n.registeredOnce.Do(func() { close(n.registered) })
	return nil
}

// Fanout follows the node registry (list then watch) so that writers can wait until every live gateway node
// has applied their write. One Fanout serves any number of concurrent waiters.
//
// A wait for revision W also waits until the Fanout's view of the registry is itself at W or later, so every
// node that had registered before the write is counted: a node that was ready (registered) when the write was
// made cannot be missed because its registration was still on its way to this Fanout.
type Fanout struct {
	cli *clientv3.Client
	log *slog.Logger

	mu      sync.Mutex
	nodes   map[string]Node
	synced  bool
	rev     int64           // the registry as known here is complete up to this revision
	wctx    context.Context // the current watch's context, for progress requests on its stream
	changed chan struct{}

	lastProgress atomic.Int64 // unix nanos of the last progress request, to send at most one per millisecond
}

// NewFanout returns a Fanout; Run starts following the registry.
func NewFanout(cli *clientv3.Client, log *slog.Logger) *Fanout {
	if log == nil {
		log = slog.Default()
	}
	return &Fanout{cli: cli, log: log.With("component", "fanout"), nodes: map[string]Node{}, changed: make(chan struct{})}
}

// Run follows the registry until ctx ends.
func (f *Fanout) Run(ctx context.Context) error {
	untilDone(ctx, f.log, "node registry watch broken, relisting", 200*time.Millisecond, f.follow)
	return nil
}

func (f *Fanout) follow(ctx context.Context) error {
	resp, err := f.cli.Get(ctx, NodesPrefix, clientv3.WithPrefix())
	if err != nil {
		return err
	}
	nodes := map[string]Node{}
	for _, kv := range resp.Kvs {
		var n Node
		if json.Unmarshal(kv.Value, &n) == nil {
			nodes[string(kv.Key)] = n
		}
	}
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	f.update(func() { f.nodes, f.synced, f.wctx = nodes, true, wctx; f.rev = max(f.rev, resp.Header.Revision) })
	wch := f.cli.Watch(wctx, NodesPrefix, clientv3.WithPrefix(), clientv3.WithRev(resp.Header.Revision+1), clientv3.WithProgressNotify())
	for wr := range wch {
		if err := wr.Err(); err != nil {
			return err
		}
		f.update(func() {
			if wr.IsProgressNotify() {
				f.rev = max(f.rev, wr.Header.Revision)
				return
			}
			for _, ev := range wr.Events {
				f.rev = max(f.rev, ev.Kv.ModRevision)
				key := string(ev.Kv.Key)
				if ev.Type == clientv3.EventTypeDelete {
					delete(f.nodes, key)
					continue
				}
				var n Node
				if json.Unmarshal(ev.Kv.Value, &n) == nil {
					f.nodes[key] = n
				}
			}
		})
	}
	return errors.New("watch closed")
}

func (f *Fanout) update(change func()) {
	f.mu.Lock()
	change()
	close(f.changed)
	f.changed = make(chan struct{})
	f.mu.Unlock()
}

// requestProgress asks etcd to confirm, on the watch stream, how far the registry view is complete; the answer
// advances rev even when no node writes. At most one request a millisecond is sent, however many wait.
func (f *Fanout) requestProgress(wctx context.Context) {
	now := time.Now().UnixNano()
	last := f.lastProgress.Load()
	if wctx == nil || now-last < int64(time.Millisecond) || !f.lastProgress.CompareAndSwap(last, now) {
		return
	}
	go func() {
		ctx, cancel := context.WithTimeout(wctx, time.Second)
		defer cancel()
		_ = f.cli.RequestProgress(ctx)
	}()
}

// Confirmation says how many live gateway nodes had applied a revision when a wait ended.
type Confirmation struct {
	Revision  int64         `json:"revision"`
	Confirmed int           `json:"confirmed"`
	Total     int           `json:"total"`
	Waited    time.Duration `json:"-"`
	WaitedMs  float64       `json:"waitedMs"`
	Pending   []string      `json:"pending,omitempty"` // nodes that had not applied it
}

// Complete reports whether every live node confirmed.
func (c Confirmation) Complete() bool { return c.Confirmed == c.Total }

// WaitApplied returns when every live gateway node has applied revision rev (nil error), or when ctx ends
// (ctx's error, with how many had). Nodes that leave the registry while it waits stop counting.
func (f *Fanout) WaitApplied(ctx context.Context, rev int64) (Confirmation, error) {
	start := time.Now()
	for {
		f.mu.Lock()
		c, current, changed, wctx := f.count(rev), f.synced && f.rev >= rev, f.changed, f.wctx
		f.mu.Unlock()
		c.Waited = time.Since(start)
		c.WaitedMs = float64(c.Waited.Microseconds()) / 1000
		if current && c.Complete() {
			return c, nil
		}
		if !current {
			f.requestProgress(wctx)
		}
		select {
		case <-ctx.Done():
			return c, ctx.Err()
		case <-changed:
		case <-time.After(50 * time.Millisecond): // a lost progress answer must not stall the wait
		}
	}
}

// Nodes returns the live nodes sorted by ID.
func (f *Fanout) Nodes() []Node {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]Node, 0, len(f.nodes))
	for _, n := range f.nodes {
		out = append(out, n)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

func (f *Fanout) count(rev int64) Confirmation {
	c := Confirmation{Revision: rev, Total: len(f.nodes)}
	for _, n := range f.nodes {
		if n.AppliedRevision >= rev {
			c.Confirmed++
		} else {
			c.Pending = append(c.Pending, n.ID)
		}
	}
	sort.Strings(c.Pending)
	return c
}
