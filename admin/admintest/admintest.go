// Package admintest runs the real admin API for tests of its clients: admin.New on loopback in front of a real
// embedded etcd, with one gateway node (replica and node reporter) on the same etcd, so that a write is
// confirmed "1/1" as in a deployment.
package admintest

import (
	"context"
	"log/slog"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/deact/deact/admin"
	"github.com/deact/deact/state"
	"github.com/deact/deact/state/etcdtest"
)

// Start starts etcd, the gateway node and the admin API with rootToken as its bootstrap token, waits until the
// node is registered, and returns the API's base URL and a store writing to its etcd. Everything stops when
// the test ends. log receives the servers' logs (nil: discarded).
func Start(t testing.TB, rootToken string, log *slog.Logger) (string, *state.Store) {
	t.Helper()
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	srv := etcdtest.Start(t)
	cli := etcdtest.Client(t, srv.Endpoints())
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	fanout := state.NewFanout(cli, log)
	replica := state.NewReplica(state.ReplicaConfig{Client: cli, Logger: log, ProgressInterval: 50 * time.Millisecond})
	reporter, err := state.NewNodeReporter(state.NodeReporterConfig{Client: cli, Replica: replica, NodeID: "node-0", Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []func(context.Context) error{fanout.Run, replica.Run, reporter.Run} {
		wg.Add(1)
		go func() { defer wg.Done(); _ = f(ctx) }()
	}
	for deadline := time.Now().Add(10 * time.Second); len(fanout.Nodes()) != 1; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the gateway node did not register")
		}
	}
	store := state.NewStore(cli)
	api, err := admin.New(admin.Config{Store: store, Fanout: fanout, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := admin.Bootstrap(ctx, store, rootToken); err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(api.Handler())
	t.Cleanup(ts.Close)
	return ts.URL, store
}
