package state_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/deact/deact/internal/wait"
	"github.com/deact/deact/state"
	"github.com/deact/deact/state/etcdtest"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// startNode runs a replica and its node reporter until stop is called (or the test ends).
func startNode(t *testing.T, cli *clientv3.Client, id string) (stop func()) {
	t.Helper()
	r := startReplica(t, cli, state.ReplicaConfig{})
	rep, err := state.NewNodeReporter(state.NodeReporterConfig{Client: cli, Replica: r, NodeID: id, Version: "test", Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = rep.Run(ctx) }()
	stop = func() { cancel(); <-done }
	t.Cleanup(stop)
	return stop
}

func startFanout(t *testing.T, cli *clientv3.Client) *state.Fanout {
	t.Helper()
	f := state.NewFanout(cli, quietLogger())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = f.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return f
}

func TestFanoutConfirmsEveryNode(t *testing.T) {
	srv := etcdtest.Start(t)
	cli := etcdtest.Client(t, srv.Endpoints())
	store := state.NewStore(cli)
	f := startFanout(t, cli)
	stops := map[string]func(){}
	for _, id := range []string{"n1", "n2", "n3"} {
		stops[id] = startNode(t, etcdtest.Client(t, srv.Endpoints()), id)
	}
	wait.Eventually(t, "3 nodes registered", func() bool { return len(f.Nodes()) == 3 })

	ctx := context.Background()
	res, err := store.DeactivateOrg(ctx, "o1", state.OpsAll, false, who)
	if err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	c, err := f.WaitApplied(wctx, res.Revision)
	cancel()
	if err != nil || c.Confirmed != 3 || c.Total != 3 {
		t.Fatalf("confirmation %+v, %v", c, err)
	}

	// A revision no node has reached: the wait ends with the context and says who is missing.
	wctx, cancel = context.WithTimeout(ctx, 100*time.Millisecond)
	c, err = f.WaitApplied(wctx, res.Revision+1000)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) || c.Confirmed != 0 || len(c.Pending) != 3 {
		t.Fatalf("confirmation %+v, %v", c, err)
	}

	// A node that stops leaves the registry at once (its lease is revoked) and no longer counts.
	stops["n2"]()
	wait.Eventually(t, "n2 gone", func() bool { return len(f.Nodes()) == 2 })
	res, err = store.ReactivateOrg(ctx, "o1", who)
	if err != nil {
		t.Fatal(err)
	}
	wctx, cancel = context.WithTimeout(ctx, 5*time.Second)
	c, err = f.WaitApplied(wctx, res.Revision)
	cancel()
	if err != nil || c.Confirmed != 2 || c.Total != 2 {
		t.Fatalf("confirmation after a node left %+v, %v", c, err)
	}
	if nodes := f.Nodes(); len(nodes) != 2 || nodes[0].AppliedRevision < res.Revision {
		t.Fatalf("nodes %+v", nodes)
	}
}
