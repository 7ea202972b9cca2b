package state_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/deact/deact/internal/wait"
	"github.com/deact/deact/state"
	"github.com/deact/deact/state/etcdtest"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// runReporter runs a reporter with a 5 s lease (the shortest allowed) and returns it with a channel that
// receives Run's result.
func runReporter(t *testing.T, cli *clientv3.Client, r *state.Replica, id string) (*state.NodeReporter, <-chan error, context.CancelFunc) {
	t.Helper()
	rep, err := state.NewNodeReporter(state.NodeReporterConfig{Client: cli, Replica: r, NodeID: id, Version: "test", Logger: quietLogger(), TTL: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done, stopped := make(chan error, 1), make(chan struct{})
	go func() { defer close(stopped); done <- rep.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-stopped })
	return rep, done, cancel
}

func nodeRecord(t *testing.T, cli *clientv3.Client, id string) (state.Node, bool) {
	t.Helper()
	resp, err := cli.Get(context.Background(), state.NodeKey(id))
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Kvs) == 0 {
		return state.Node{}, false
	}
	var n state.Node
	if err := json.Unmarshal(resp.Kvs[0].Value, &n); err != nil {
		t.Fatal(err)
	}
	return n, true
}

// TestDuplicateNodeIDRefused (issue 14, B9): a second reporter with a node ID a live instance holds waits one
// lease TTL, then refuses with ErrNodeIDInUse naming the ID; it never shares, rewrites or removes the first
// one's record, and the first keeps deciding.
func TestDuplicateNodeIDRefused(t *testing.T) {
	t.Parallel()
	srv := etcdtest.Start(t)
	cli := etcdtest.Client(t, srv.Endpoints())
	r := startReplica(t, cli, state.ReplicaConfig{})
	first, _, _ := runReporter(t, cli, r, "dup")
	<-first.Registered()
	if first.Fenced() {
		t.Fatal("a registered node is fenced")
	}

	second, done, _ := runReporter(t, etcdtest.Client(t, srv.Endpoints()), r, "dup")
	start := time.Now()
	select {
	case err := <-done:
		if !errors.Is(err, state.ErrNodeIDInUse) || !strings.Contains(err.Error(), `"dup"`) {
			t.Fatalf("second instance: %v, want ErrNodeIDInUse naming the node", err)
		}
		if waited := time.Since(start); waited < 5*time.Second {
			t.Fatalf("refused after %v, before a crashed predecessor's lease could have expired", waited)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the second instance with the same node ID did not refuse")
	}
	select {
	case <-second.Registered():
		t.Fatal("the second instance registered")
	default:
	}
	if !second.Fenced() {
		t.Fatal("the refused instance is not fenced")
	}
	if n, ok := nodeRecord(t, cli, "dup"); !ok || n.Instance != first.Instance() {
		t.Fatalf("record after the refusal: %+v (present %v), want the first instance's", n, ok)
	}
	if first.Fenced() {
		t.Fatal("the first instance was fenced by the second")
	}
}

// TestCrashedPredecessorRecordExpires: a record left by an instance that died without revoking (its lease no
// longer renewed) is waited out, then the new instance registers.
func TestCrashedPredecessorRecordExpires(t *testing.T) {
	t.Parallel()
	srv := etcdtest.Start(t)
	cli := etcdtest.Client(t, srv.Endpoints())
	ctx := context.Background()
	lease, err := cli.Grant(ctx, 5)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Put(ctx, state.NodeKey("n1"), `{"id":"n1","instance":"dead","appliedRevision":1}`, clientv3.WithLease(lease.ID)); err != nil {
		t.Fatal(err)
	}
	r := startReplica(t, cli, state.ReplicaConfig{})
	rep, done, _ := runReporter(t, cli, r, "n1")
	select {
	case <-rep.Registered():
	case err := <-done:
		t.Fatalf("reporter stopped: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("not registered after the predecessor's lease expired")
	}
	if n, ok := nodeRecord(t, cli, "n1"); !ok || n.Instance != rep.Instance() {
		t.Fatalf("record %+v (present %v)", n, ok)
	}
}

// TestFenceBeforeLeaseExpiry (issue 14, B9): a node cut from etcd fences itself (refuses to decide) while its
// record is still in the registry, so writers stop counting it only after it stopped deciding; once etcd is
// reachable again it registers anew and opens the fence only after its replica caught up with the
// registration.
func TestFenceBeforeLeaseExpiry(t *testing.T) {
	t.Parallel()
	srv := etcdtest.Start(t)
	direct := etcdtest.Client(t, srv.Endpoints())
	link := newCutProxy(t, srv.Endpoints()[0])
	cli := proxiedClient(t, link.endpoint())
	r := startReplica(t, cli, state.ReplicaConfig{})
	rep, _, _ := runReporter(t, cli, r, "n1")
	<-rep.Registered()
	if rep.Fenced() {
		t.Fatal("registered node fenced")
	}
	before, _ := nodeRecord(t, direct, "n1")

	link.cut()
	wait.Eventually(t, "the node to fence itself", rep.Fenced)
	if _, ok := nodeRecord(t, direct, "n1"); !ok {
		t.Fatal("the node fenced itself only after its record had expired: writers stopped counting a deciding node")
	}
	store := state.NewStore(direct)
	res, err := store.DeactivateOrg(context.Background(), "o1", state.OpsAll, false, who)
	if err != nil {
		t.Fatal(err)
	}
	wait.Eventually(t, "the record to expire", func() bool { _, ok := nodeRecord(t, direct, "n1"); return !ok })
	if !rep.Fenced() {
		t.Fatal("the fence opened without etcd")
	}

	link.restore(t)
	wait.Eventually(t, "the node to register again and open its fence", func() bool { return !rep.Fenced() })
	if r.AppliedRevision() < res.Revision || r.Snapshot().Org("o1") == nil {
		t.Fatalf("fence open at applied revision %d without the write at %d made while the node was away", r.AppliedRevision(), res.Revision)
	}
	if after, ok := nodeRecord(t, direct, "n1"); !ok || after.Instance != before.Instance {
		t.Fatalf("record after the return %+v (present %v)", after, ok)
	}
}

// BenchmarkNodeFenced measures the fence check every decision makes: one monotonic clock read, one atomic load.
func BenchmarkNodeFenced(b *testing.B) {
	rep, err := state.NewNodeReporter(state.NodeReporterConfig{Replica: state.NewReplica(state.ReplicaConfig{}), NodeID: "n1"})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if !rep.Fenced() {
				b.Fatal("a reporter that never ran is not fenced")
			}
		}
	})
}

// TestRecordReportsKeepUpWithEveryChange: gateways that report through their records (no admin node takes
// streams) confirm every one of a run of changes well before their heartbeat, even when a change lands while
// a reporter is busy with its lease's keep-alive (a lost wakeup there held the record until the heartbeat).
func TestRecordReportsKeepUpWithEveryChange(t *testing.T) {
	t.Parallel()
	const nodes, changes = 12, 400
	srv := etcdtest.Start(t)
	cli := etcdtest.Client(t, srv.Endpoints())
	f := startFanout(t, cli)
	for i := range nodes {
		ncli := etcdtest.Client(t, srv.Endpoints())
		r := startReplica(t, ncli, state.ReplicaConfig{})
		// 5 s lease: a keep-alive every 1.3 s; an hour's heartbeat never rescues a missed change.
		rep, err := state.NewNodeReporter(state.NodeReporterConfig{Client: ncli, Replica: r, NodeID: fmt.Sprintf("rec-%d", i),
			Logger: quietLogger(), TTL: 5 * time.Second, Heartbeat: time.Hour, RecordOnly: true})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); _ = rep.Run(ctx) }()
		t.Cleanup(func() { cancel(); <-done })
	}
	wait.Eventually(t, "every node registered", func() bool { return len(f.Nodes()) == nodes })
	store := state.NewStore(cli)
	for i := range changes {
		ctx := context.Background()
		res, err := store.DeactivateOrg(ctx, fmt.Sprintf("o-%d", i), state.OpsAll, false, who)
		if err != nil {
			t.Fatal(err)
		}
		wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		c, err := f.WaitApplied(wctx, res.Revision)
		cancel()
		if err != nil {
			t.Fatalf("change %d: %d/%d confirmed, pending %v: %v", i, c.Confirmed, c.Total, c.Pending, err)
		}
	}
}
