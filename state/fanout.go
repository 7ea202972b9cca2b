package state

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"log/slog"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Fanout follows the node registry (list then watch) so that writers can wait until every live gateway node
// has applied their write. One Fanout serves any number of concurrent waiters.
//
// A wait for revision W also waits until the Fanout's view of the registry is itself at W or later, so every
// node that had registered before the write is counted: a node that was ready (registered) when the write was
// made cannot be missed because its registration was still on its way to this Fanout.
//
// The registry is the denominator: every live record counts. A node's applied revision is the higher of its
// record's and of what the node reported directly to this admin node (a ReportServer feeding this Fanout),
// on a stream authenticated for the record's current session; both are the node's own word.
type Fanout struct {
	cli *clientv3.Client
	log *slog.Logger

	mu      sync.Mutex
	nodes   map[string]Node
	reports map[string]directReport // by node key: what the node's current session reported on a stream
	synced  bool
	rev     int64           // the registry as known here is complete up to this revision
	wctx    context.Context // the current watch's context, for progress requests on its stream
	changed chan struct{}

	lastProgress atomic.Int64 // unix nanos of the last progress request, to send at most one per millisecond
}

// directReport is the latest report of one node session, received on a stream.
type directReport struct {
	hash        string // the session's ReportKeyHash: the report counts only while the record holds it
	applied     int64
	stalenessMs int64
	at          time.Time
}

// errSessionOver ends a report stream whose session's record is gone or replaced.
var errSessionOver = errors.New("the node's registry record is gone or belongs to another session")

// NewFanout returns a Fanout; Run starts following the registry.
func NewFanout(cli *clientv3.Client, log *slog.Logger) *Fanout {
	if log == nil {
		log = slog.Default()
	}
	return &Fanout{cli: cli, log: log.With("component", "fanout"), nodes: map[string]Node{},
		reports: map[string]directReport{}, changed: make(chan struct{})}
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
	f.update(func() {
		f.nodes, f.synced, f.wctx = nodes, true, wctx
		f.rev = max(f.rev, resp.Header.Revision)
		for key, r := range f.reports {
			if n, ok := nodes[key]; !ok || n.ReportKeyHash != r.hash {
				delete(f.reports, key)
			}
		}
	})
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
					delete(f.reports, key)
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

// progressRetry is how soon a wait asks again whether the registry view is current.
const progressRetry = 2 * time.Millisecond

// Confirmation says how many live gateway nodes had applied a revision when a wait ended.
type Confirmation struct {
	Revision  int64         `json:"revision"`
	Confirmed int           `json:"confirmed"`
	Total     int           `json:"total"`
	Waited    time.Duration `json:"-"`
	WaitedMs  float64       `json:"waitedMs"`
	Pending   []string      `json:"pending,omitempty"` // nodes that had not applied it
	// NotNeeded marks a write no gateway reads (outside StatePrefix, such as admin tokens): nothing was waited
	// for, and Confirmed and Total are 0.
	NotNeeded bool `json:"notNeeded,omitempty"`
}

// Complete reports whether every live node confirmed (trivially for a write no gateway reads).
func (c Confirmation) Complete() bool { return c.NotNeeded || c.Confirmed == c.Total }

// WaitApplied returns when every live gateway node has applied revision rev (nil error), or when ctx ends
// (ctx's error, with how many had). Nodes that leave the registry while it waits stop counting.
func (f *Fanout) WaitApplied(ctx context.Context, rev int64) (Confirmation, error) {
	start := time.Now()
	for {
		// Pending is listed only for the answer: with gateways on streams every report wakes every waiter, and
		// a count is then one pass over the registry without allocating.
		f.mu.Lock()
		c, current, changed, wctx := f.count(rev, false), f.synced && f.rev >= rev, f.changed, f.wctx
		f.mu.Unlock()
		if current && c.Complete() {
			c.Waited = time.Since(start)
			c.WaitedMs = float64(c.Waited.Microseconds()) / 1000
			return c, nil
		}
		// A lost progress answer must not stall the wait. While the view is behind, ask again soon: the request
		// may have been dropped by the rate limit, or answered with a revision from before the write (with
		// gateways reporting on streams, nothing else moves the registry's revision).
		poll := 50 * time.Millisecond
		if !current {
			f.requestProgress(wctx)
			poll = progressRetry
		}
		select {
		case <-ctx.Done():
			f.mu.Lock()
			c = f.count(rev, true)
			f.mu.Unlock()
			c.Waited = time.Since(start)
			c.WaitedMs = float64(c.Waited.Microseconds()) / 1000
			return c, ctx.Err()
		case <-changed:
		case <-time.After(poll):
		}
	}
}

// Nodes returns the live nodes sorted by ID, each with the latest of what its record and its direct reports
// to this admin node say (applied revision, time and staleness of the report).
func (f *Fanout) Nodes() []Node {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]Node, 0, len(f.nodes))
	for key, n := range f.nodes {
		if r, ok := f.direct(key, n); ok && r.applied >= n.AppliedRevision {
			n.AppliedRevision, n.StalenessMs = r.applied, r.stalenessMs
			n.SyncedAt = r.at.UTC()
		}
		out = append(out, n)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// count counts the nodes that applied rev, and lists the others if pending. Called with mu held.
func (f *Fanout) count(rev int64, pending bool) Confirmation {
	c := Confirmation{Revision: rev, Total: len(f.nodes)}
	for key, n := range f.nodes {
		applied := n.AppliedRevision
		if r, ok := f.direct(key, n); ok {
			applied = max(applied, r.applied)
		}
		if applied >= rev {
			c.Confirmed++
		} else if pending {
			c.Pending = append(c.Pending, n.ID)
		}
	}
	sort.Strings(c.Pending)
	return c
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

// direct returns the direct report of node n (at key) if its current session made one. Called with mu held.
func (f *Fanout) direct(key string, n Node) (directReport, bool) {
	r, ok := f.reports[key]
	return r, ok && n.ReportKeyHash != "" && r.hash == n.ReportKeyHash
}

// verify checks a report stream's hello: once this Fanout's view of the registry holds the revision that
// created the node's record, the record must be there, of the same instance, with the SHA-256 of the hello's
// secret. It returns the node's key and the session's hash, for accept.
func (f *Fanout) verify(ctx context.Context, hello reportMsg) (key, hash string, err error) {
	if ValidateID("node", hello.Node) != nil || hello.Registered <= 0 || hello.Secret == "" {
		return "", "", errors.New("malformed hello")
	}
	key, hash = NodeKey(hello.Node), reportKeyHash(hello.Secret)
	for {
		f.mu.Lock()
		current, changed, wctx := f.synced && f.rev >= hello.Registered, f.changed, f.wctx
		n, ok := f.nodes[key]
		f.mu.Unlock()
		if current {
			if !ok || n.Instance != hello.Instance || n.ReportKeyHash == "" ||
				subtle.ConstantTimeCompare([]byte(n.ReportKeyHash), []byte(hash)) != 1 {
				return "", "", errors.New("no registry record of this node session has that secret")
			}
			return key, hash, nil
		}
		f.requestProgress(wctx)
		select {
		case <-ctx.Done():
			return "", "", ctx.Err()
		case <-changed:
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// accept takes a node session's report of its applied revision and wakes the waiters it may complete. It
// fails once the session's record is gone or replaced: the stream is then of no use.
func (f *Fanout) accept(key, hash string, applied, stalenessMs int64) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if n, ok := f.nodes[key]; !ok || n.ReportKeyHash != hash {
		return errSessionOver
	}
	r := f.reports[key]
	if r.hash != hash {
		r = directReport{hash: hash}
	}
	advanced := applied > r.applied
	r.applied, r.stalenessMs, r.at = max(r.applied, applied), stalenessMs, time.Now()
	f.reports[key] = r
	if advanced { // a heartbeat completes no wait: only an advance wakes the waiters
		close(f.changed)
		f.changed = make(chan struct{})
	}
	return nil
}
