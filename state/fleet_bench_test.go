package state_test

import (
	"context"
	"fmt"
	"net"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/deact/deact/state"
	"github.com/deact/deact/state/etcdtest"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// fleet is N gateway nodes (replica and reporter each) and one admin side (a Fanout) in this process, on one
// embedded etcd. Replicas share a client per group of nodesPerClient, as gateways on one host would not, but
// the requests and writes etcd sees per node are the same.
type fleet struct {
	cli    *clientv3.Client
	store  *state.Store
	fanout *state.Fanout
	nodes  int
	puts   atomic.Int64 // node-record writes seen by a watch on the registry
}

const nodesPerClient = 25

func startFleet(b *testing.B, n int, direct bool) *fleet {
	b.Helper()
	srv := etcdtest.Start(b)
	f := &fleet{cli: etcdtest.Client(b, srv.Endpoints()), nodes: n}
	f.store = state.NewStore(f.cli)
	ctx, cancel := context.WithCancel(context.Background())
	b.Cleanup(cancel)
	f.fanout = state.NewFanout(f.cli, quietLogger())
	runUntilCleanup(b, ctx, f.fanout.Run)

	wch := f.cli.Watch(ctx, state.NodesPrefix, clientv3.WithPrefix())
	go func() {
		for wr := range wch {
			for _, ev := range wr.Events {
				if ev.Type == clientv3.EventTypePut {
					f.puts.Add(1)
				}
			}
		}
	}()

	if direct {
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		rs, err := state.NewReportServer(state.ReportServerConfig{Client: f.cli, Fanout: f.fanout, Logger: quietLogger()})
		if err != nil {
			b.Fatal(err)
		}
		runUntilCleanup(b, ctx, func(ctx context.Context) error { return rs.Serve(ctx, lis) })
	}
	var cli *clientv3.Client
	reps := make([]*state.NodeReporter, 0, n)
	for i := range n {
		if i%nodesPerClient == 0 {
			cli = etcdtest.Client(b, srv.Endpoints())
		}
		r := state.NewReplica(state.ReplicaConfig{Client: cli, Logger: quietLogger()})
		runUntilCleanup(b, ctx, r.Run)
		rep, err := state.NewNodeReporter(state.NodeReporterConfig{Client: cli, Replica: r, NodeID: fmt.Sprintf("gw-%04d", i),
			Logger: quietLogger(), RecordOnly: !direct})
		if err != nil {
			b.Fatal(err)
		}
		runUntilCleanup(b, ctx, rep.Run)
		reps = append(reps, rep)
	}
	deadline := time.Now().Add(time.Minute)
	for len(f.fanout.Nodes()) < n {
		if time.Now().After(deadline) {
			b.Fatalf("%d of %d nodes registered", len(f.fanout.Nodes()), n)
		}
		time.Sleep(10 * time.Millisecond)
	}
	for _, rep := range reps {
		for direct && rep.Stats().Streams != 1 {
			if time.Now().After(deadline) {
				b.Fatalf("node %s not streaming: %+v", rep.Instance(), rep.Stats())
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	return f
}

func runUntilCleanup(b *testing.B, ctx context.Context, run func(context.Context) error) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); _ = run(ctx) }()
	b.Cleanup(func() { cancel(); <-done })
}

func (f *fleet) revision(b *testing.B) int64 {
	resp, err := f.cli.Get(context.Background(), "/deact/fleet-bench-probe")
	if err != nil {
		b.Fatal(err)
	}
	return resp.Header.Revision
}

// BenchmarkFleetEtcdCost is the etcd cost of a fleet of N gateways on one etcd: the node-record writes and
// all etcd writes (revisions) per confirmed change, the same counts per second while nothing changes, and the
// confirmation latency of a change (store write → every node confirmed), with gateways reporting through
// their records only (reports=record) and on streams to the admin node (reports=direct). Run with a fixed
// count, e.g. -benchtime=50x: every iteration is one change.
func BenchmarkFleetEtcdCost(b *testing.B) {
	for _, mode := range []string{"record", "direct"} {
		for _, n := range []int{3, 10, 100, 300} {
			b.Run(fmt.Sprintf("reports=%s/nodes=%d", mode, n), func(b *testing.B) { benchmarkFleet(b, n, mode == "direct") })
		}
	}
}

func benchmarkFleet(b *testing.B, n int, direct bool) {
	f := startFleet(b, n, direct)
	ctx := context.Background()
	time.Sleep(2 * time.Second) // registration's own writes settle

	const idle = 12 * time.Second // more than one heartbeat (10 s) and a few keep-alive periods
	p0, r0 := f.puts.Load(), f.revision(b)
	time.Sleep(idle)
	p1, r1 := f.puts.Load(), f.revision(b)
	idleNode, idleAll := float64(p1-p0)/idle.Seconds(), float64(r1-r0)/idle.Seconds()

	lat := make([]time.Duration, 0, b.N)
	p0, r0 = f.puts.Load(), f.revision(b)
	start := time.Now()
	i := 0
	for b.Loop() {
		t0 := time.Now()
		var res state.Result
		var err error
		if i%2 == 0 {
			res, err = f.store.DeactivateOrg(ctx, "fleet-org", state.OpsAll, false, who)
		} else {
			res, err = f.store.ReactivateOrg(ctx, "fleet-org", who)
		}
		if err != nil {
			b.Fatal(err)
		}
		wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		c, err := f.fanout.WaitApplied(wctx, res.Revision)
		cancel()
		if err != nil {
			b.Fatalf("change %d: %d/%d confirmed: %v", i, c.Confirmed, c.Total, err)
		}
		lat = append(lat, time.Since(t0))
		i++
	}
	b.StopTimer()
	time.Sleep(500 * time.Millisecond) // reports of the last change land
	window := time.Since(start)
	p1, r1 = f.puts.Load(), f.revision(b)
	// The figures per change include what the fleet writes anyway in the window (the idle rate × window-s).
	b.ReportMetric(float64(p1-p0)/float64(i), "node-writes/change")
	b.ReportMetric(float64(r1-r0)/float64(i), "etcd-writes/change")
	b.ReportMetric(window.Seconds(), "window-s")
	b.ReportMetric(idleNode, "idle-node-writes/s")
	b.ReportMetric(idleAll, "idle-etcd-writes/s")
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "confirm-p50-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "confirm-p99-ms")
}
