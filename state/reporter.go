package state

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// NodeReporterConfig configures a NodeReporter.
type NodeReporterConfig struct {
	Client  *clientv3.Client
	Replica *Replica
	NodeID  string
	Version string
	Logger  *slog.Logger
	// TTL of the node's lease [10s, at least 5s]: a node that stops without revoking disappears after it, and a
	// node that cannot renew it stops deciding a margin before it expires (see Fenced).
	TTL time.Duration
	// Heartbeat rewrites the record (or, while every admin node takes this node's direct reports, sends a
	// report) this often even without changes, so its staleness stays current [10s].
	Heartbeat time.Duration

	// ReportTLS is the client TLS of the direct report streams to admin nodes; nil dials them in plaintext.
	ReportTLS *tls.Config
	// ReportAckTimeout is how long an admin node may take to acknowledge a report before its stream counts as
	// down, and this node writes its record again [2s].
	ReportAckTimeout time.Duration
	// RecordOnly turns direct reports off: every report is a write of the record (for comparison, and for a
	// gateway that cannot reach the admin nodes).
	RecordOnly bool
}

// ErrNodeIDInUse is returned by Run when another running instance holds this node ID's record past one lease
// TTL: two gateways sharing an ID would share one record, and a write could be confirmed for both by either.
var ErrNodeIDInUse = errors.New("node ID in use by another running instance")

// NodeReporter keeps this gateway node's record under NodesPrefix, on a lease, and tells admin nodes the
// replica's applied revision. It reports directly, on one stream to each admin node in the registry under
// AdminsPrefix (see ReportServer), authenticated by a random secret of the session whose SHA-256 the record
// holds; while every registered admin node acknowledges these reports, the record is written only at
// registration. Otherwise (no admin node registered, one unreachable, slow to acknowledge, or RecordOnly) the
// record carries the applied revision, rewritten after each snapshot change and every heartbeat, so a writer
// waiting on any admin node always has the node's word. Record writes are coalesced: at most one is in
// flight, and the next one carries the latest revision. A revision that moves without a change of the state
// (a write elsewhere in etcd, a node record among them) causes no record write, so records never make
// records.
//
// The record is this instance's alone: it carries a random instance ID, it is created only if absent, and it is
// rewritten only while it is still the one this instance created, so a second process with the same node ID
// can neither share nor remove it (it waits one lease TTL for a crashed predecessor's record to expire, then
// Run returns ErrNodeIDInUse).
//
// The reporter also fences the node: Fenced turns true once the node can no longer prove, on its own monotonic
// clock, that its record is alive in the registry. Writers count a node while its record lives, and stop
// counting it when the lease expires; a fenced node refuses to decide, so a node that drops out of the count
// (frozen, cut from etcd) has already stopped answering.
type NodeReporter struct {
	cfg            NodeReporterConfig
	log            *slog.Logger
	instance       string
	registered     chan struct{}
	registeredOnce sync.Once

	counters reporterCounters

	epoch time.Time
	// fence is the monotonic time (nanoseconds since epoch) until which the node may decide; 0 = fenced.
	fence atomic.Int64
}

// NewNodeReporter validates the node ID and returns a reporter; Run starts it.
func NewNodeReporter(cfg NodeReporterConfig) (*NodeReporter, error) {
	if err := ValidateID("node", cfg.NodeID); err != nil {
		return nil, err
	}
	if cfg.TTL == 0 {
		cfg.TTL = 10 * time.Second
	}
	if cfg.TTL < 5*time.Second || cfg.TTL%time.Second != 0 {
		return nil, fmt.Errorf("node lease TTL %v: want whole seconds, at least 5s", cfg.TTL)
	}
	if cfg.Heartbeat <= 0 {
		cfg.Heartbeat = 10 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.ReportAckTimeout <= 0 {
		cfg.ReportAckTimeout = 2 * time.Second
	}
	var id [8]byte
	if _, err := rand.Read(id[:]); err != nil {
		return nil, err
	}
	return &NodeReporter{
		cfg: cfg, log: cfg.Logger.With("component", "node-reporter"), instance: hex.EncodeToString(id[:]),
		registered: make(chan struct{}), epoch: time.Now(),
	}, nil
}

// Registered is closed once the node's record is first written and the replica has applied every write made
// before it. A gateway should not take traffic before: writers only wait for nodes in the registry.
func (n *NodeReporter) Registered() <-chan struct{} { return n.registered }

// Instance is this reporter's random instance ID, as written in its record.
func (n *NodeReporter) Instance() string { return n.instance }

// ReporterStats are counters for metrics.
type ReporterStats struct {
	RecordWrites int64 // rewrites of the record after registration (fallback and heartbeats without streams)
	Reports      int64 // direct reports acknowledged by an admin node
	Fallbacks    int64 // times the node went from direct reports to record writes
	Streams      int64 // report streams up now
}

// Stats returns the counters.
func (n *NodeReporter) Stats() ReporterStats {
	c := &n.counters
	return ReporterStats{RecordWrites: c.recordWrites.Load(), Reports: c.reports.Load(), Fallbacks: c.fallbacks.Load(), Streams: c.linksUp.Load()}
}

// Fenced reports whether the node must refuse to decide: it is true until the node is registered and its
// replica holds every write made before the registration, and again from FenceBound after the last moment the
// node knew its lease alive (when the keep-alive that proved it was sent, not when the answer came, so a
// freeze in between cannot extend it). FenceBound is shorter than the lease TTL, so by the time etcd expires
// the lease and writers stop counting the node, it has stopped deciding. Safe on the hot path: one monotonic
// clock read and one atomic load.
func (n *NodeReporter) Fenced() bool { return int64(time.Since(n.epoch)) >= n.fence.Load() }

// FencedAt is Fenced as of now, a reading of this process's clock that carries a monotonic reading (time.Now,
// or a time derived from one with Add; only the monotonic part is used), which the caller takes after the
// state it is about to answer from was loaded: a decision reads the clock once for the fence and the staleness
// policy.
func (n *NodeReporter) FencedAt(now time.Time) bool { return int64(now.Sub(n.epoch)) >= n.fence.Load() }

// FenceBound is how long after a keep-alive was sent the node keeps deciding without another: the granted TTL
// less a margin for clock-rate differences between this node and etcd's leader (a tenth, at least one second).
func FenceBound(ttl time.Duration) time.Duration { return ttl - max(ttl/10, time.Second) }

func (n *NodeReporter) now() int64 { return int64(time.Since(n.epoch)) }

// Run reports until ctx ends, then revokes the lease so the node leaves the registry at once. It returns
// ErrNodeIDInUse (wrapped, naming the node) if another live instance holds the node ID; other errors are
// retried.
func (n *NodeReporter) Run(ctx context.Context) error {
	if err := n.cfg.Replica.WaitReady(ctx); err != nil {
		return nil
	}
	for ctx.Err() == nil {
		err := n.session(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if errors.Is(err, ErrNodeIDInUse) {
			return err
		}
		n.log.Warn("node registration lost, registering again", "err", err)
		select {
		case <-ctx.Done():
		case <-time.After(jitter(500 * time.Millisecond)): // a fleet whose leases etcd lost does not register at once
		}
	}
	return nil
}

// session registers with a new lease and keeps the record and the fence up until the lease or the record is
// lost or ctx ends. The node is fenced whenever no session is open.
func (n *NodeReporter) session(ctx context.Context) error {
	cli := n.cfg.Client
	key := NodeKey(n.cfg.NodeID)
	if err := n.awaitFree(ctx); err != nil {
		return err
	}
	asked := n.now()
	lease, revoke, err := grantLease(ctx, cli, n.cfg.TTL)
	if err != nil {
		return err
	}
	defer revoke()
	defer n.fence.Store(0) // runs before the revoke: stop deciding before leaving the registry
	// The lease lives at least until asked + its TTL: etcd granted it after we asked.
	proof := asked + int64(FenceBound(time.Duration(lease.TTL)*time.Second))

	var secret string
	if !n.cfg.RecordOnly {
		var b [32]byte
		if _, err := rand.Read(b[:]); err != nil {
			return err
		}
		secret = hex.EncodeToString(b[:])
	}
	rec := Node{ID: n.cfg.NodeID, Instance: n.instance, Version: n.cfg.Version}
	if secret != "" {
		rec.ReportKeyHash = reportKeyHash(secret)
	}
	rev := n.cfg.Replica.AppliedRevision()
	b, err := n.record(rec, rev)
	if err != nil {
		return err
	}
	resp, err := cli.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
		Then(clientv3.OpPut(key, b, clientv3.WithLease(lease.ID))).Commit()
	if err != nil {
		return fmt.Errorf("register node: %w", err)
	}
	if !resp.Succeeded {
		return errors.New("another instance registered the node ID meanwhile")
	}
	created, written := resp.Header.Revision, rev

	// Until the replica has applied the registration's revision, a write made while the node was not yet (or no
	// longer) registered may be missing from it and was confirmed without it: stay fenced until then.
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	caughtUp := make(chan error, 1)
	go func() { caughtUp <- n.cfg.Replica.WaitApplied(sctx, created) }()
	defer func() { cancel(); <-caughtUp }()
	gate, open := caughtUp, false

	var lk *links
	if secret != "" {
		hello := reportMsg{Node: n.cfg.NodeID, Instance: n.instance, Registered: created, Secret: secret}
		lk = newLinks(cli, n.cfg.Replica, n.log, n.cfg.ReportTLS, hello, n.cfg.ReportAckTimeout, n.cfg.Heartbeat, &n.counters)
		linked := make(chan struct{})
		go func() { defer close(linked); lk.run(sctx) }()
		defer func() { cancel(); <-linked }()
	}

	bound := FenceBound(time.Duration(lease.TTL) * time.Second)
	keepalive := time.NewTicker(bound / 3)
	defer keepalive.Stop()
	heartbeat := time.NewTicker(n.cfg.Heartbeat)
	defer heartbeat.Stop()
	// direct: every registered admin node takes this session's reports; due: the record is to be brought up to
	// the applied revision (a snapshot change or a fall back from direct reports), force: even if it holds it.
	direct, due, force := false, false, false
	// Held across iterations and taken anew only once it fired: a snapshot published while this loop does
	// something else (a keep-alive's round trip, a write) then still wakes it.
	changed := n.cfg.Replica.Changed()
	for {
		if open {
			n.fence.Store(proof)
		}
		var linksChanged <-chan struct{}
		if lk != nil {
			linksChanged = lk.Changed()
			if up := lk.allUp(); up != direct {
				if direct = up; !up {
					n.counters.fallbacks.Add(1)
					due = true
				}
			}
		}
		if direct {
			due, force = false, false
		}
		if due {
			// A published snapshot holds everything up to its revision even before the applied revision has
			// been moved to it.
			if rev := max(n.cfg.Replica.AppliedRevision(), n.stateRevision()); rev != written || force {
				if err := n.write(ctx, lease.ID, created, rec, rev); err != nil {
					return err
				}
				written = rev
			}
			due, force = false, false
			continue
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-gate:
			gate = nil
			caughtUp <- err // for the deferred receive
			if err != nil {
				return err
			}
			open = true
			n.registeredOnce.Do(func() { close(n.registered) })
		case <-keepalive.C:
			asked := n.now()
			kctx, kcancel := context.WithTimeout(ctx, bound/3)
			ka, err := cli.KeepAliveOnce(kctx, lease.ID)
			kcancel()
			switch {
			case ctx.Err() != nil:
				return ctx.Err()
			case errors.Is(err, rpctypes.ErrLeaseNotFound):
				return fmt.Errorf("lease expired: %w", err)
			case err != nil:
				n.log.Warn("lease keep-alive failed", "err", err) // the fence runs out if this goes on
			case ka.TTL <= 0:
				return errors.New("lease expired")
			default:
				proof = max(proof, asked+int64(FenceBound(time.Duration(ka.TTL)*time.Second)))
			}
		case <-changed:
			changed = n.cfg.Replica.Changed() // before the revision is read
			due = true
		case <-linksChanged:
		case <-heartbeat.C:
			due, force = true, true
		}
	}
}

// stateRevision is the revision of the replica's newest state change (0 before its first list).
func (n *NodeReporter) stateRevision() int64 {
	if s := n.cfg.Replica.Snapshot(); s != nil {
		return s.Revision()
	}
	return 0
}

// awaitFree returns once no record holds the node ID, or the one there is this instance's (left by a session
// whose revoke failed; it is removed). A record of another instance is waited for up to its lease's TTL and two
// seconds: a crashed predecessor's expires by then, a live one is renewed and makes this ErrNodeIDInUse.
func (n *NodeReporter) awaitFree(ctx context.Context) error {
	cli := n.cfg.Client
	key := NodeKey(n.cfg.NodeID)
	var deadline time.Time
	for {
		resp, err := cli.Get(ctx, key)
		if err != nil {
			return fmt.Errorf("read node record: %w", err)
		}
		if len(resp.Kvs) == 0 {
			return nil
		}
		kv := resp.Kvs[0]
		var other Node
		_ = json.Unmarshal(kv.Value, &other)
		if other.Instance == n.instance {
			_, err := cli.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(key), "=", kv.ModRevision)).Then(clientv3.OpDelete(key)).Commit()
			if err != nil {
				return fmt.Errorf("remove own stale node record: %w", err)
			}
			continue
		}
		if deadline.IsZero() {
			wait := n.cfg.TTL
			if kv.Lease != 0 {
				if ttl, err := cli.TimeToLive(ctx, clientv3.LeaseID(kv.Lease)); err == nil && ttl.GrantedTTL > 0 {
					wait = time.Duration(ttl.GrantedTTL) * time.Second
				}
			}
			// etcd revokes expired leases in batches; the margin covers that delay.
			deadline = time.Now().Add(wait + 2*time.Second)
			n.log.Warn("node ID registered by another instance; waiting for its lease to expire",
				"node", n.cfg.NodeID, "other_instance", other.Instance, "wait", wait)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%w: node ID %q is registered by another running deactd (instance %s, version %s); give every gateway its own --node-id",
				ErrNodeIDInUse, n.cfg.NodeID, other.Instance, other.Version)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// record returns rec with the applied revision rev, as of now.
func (n *NodeReporter) record(rec Node, rev int64) (string, error) {
	rec.AppliedRevision, rec.SyncedAt, rec.StalenessMs = rev, time.Now().UTC(), n.cfg.Replica.Staleness().Milliseconds()
	b, err := json.Marshal(rec)
	return string(b), err
}

// write rewrites the record, only while it is still the one this session created.
func (n *NodeReporter) write(ctx context.Context, lease clientv3.LeaseID, created int64, rec Node, rev int64) error {
	b, err := n.record(rec, rev)
	if err != nil {
		return err
	}
	key := NodeKey(n.cfg.NodeID)
	resp, err := n.cfg.Client.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(key), "=", created)).
		Then(clientv3.OpPut(key, b, clientv3.WithLease(lease))).Commit()
	if err != nil {
		return fmt.Errorf("write node record: %w", err)
	}
	if !resp.Succeeded {
		return errors.New("node record lost (expired, or taken by another instance)")
	}
	n.counters.recordWrites.Add(1)
	return nil
}

// grantLease grants a lease of ttl (whole seconds) for a registry entry; revoke gives it back, bounded by a
// second and even after ctx ended, so that a clean stop leaves the registry at once instead of after the TTL.
func grantLease(ctx context.Context, cli *clientv3.Client, ttl time.Duration) (*clientv3.LeaseGrantResponse, func(), error) {
	lease, err := cli.Grant(ctx, int64(ttl/time.Second))
	if err != nil {
		return nil, nil, fmt.Errorf("grant lease: %w", err)
	}
	return lease, func() {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
		_, _ = cli.Revoke(rctx, lease.ID)
		cancel()
	}, nil
}
