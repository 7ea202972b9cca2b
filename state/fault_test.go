package state_test

import (
	"context"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/Shopify/toxiproxy/v2"
	"github.com/deact/deact/internal/wait"
	"github.com/deact/deact/state"
	"github.com/deact/deact/state/etcdtest"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// The fault tests run as parallel subtests of one test that is not itself parallel: members stopped, restarted
// and cut, with 3-member clusters among them, starve the timing-bound parallel tests (fencing before lease
// expiry, the lagging watch) on a small machine, so they must not overlap those; among themselves they mostly
// wait (for etcd's request timeout, an election), and overlap well.
func TestReplicaUnderFaults(t *testing.T) {
	for _, tc := range []struct {
		name string
		run  func(*testing.T)
	}{
		{"ReplicaRelistsAfterCompactionWhileDisconnected", testReplicaRelistsAfterCompactionWhileDisconnected},
		{"ReplicaSurvivesMemberRestart", testReplicaSurvivesMemberRestart},
		{"ReplicaClusterMemberDown", testReplicaClusterMemberDown},
		{"ReplicaWatchCanceledOnLeaderLoss", testReplicaWatchCanceledOnLeaderLoss},
		{"FanoutSeesNodesRegisteredBeforeTheWrite", testFanoutSeesNodesRegisteredBeforeTheWrite},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.run(t)
		})
	}
}

// cutProxy puts a real TCP proxy between a client and an etcd member, so a test can cut and restore the network.
type cutProxy struct {
	p *toxiproxy.Proxy
}

func newCutProxy(t *testing.T, endpoint string) *cutProxy {
	t.Helper()
	u, err := url.Parse(endpoint)
	if err != nil {
		t.Fatal(err)
	}
	srv := toxiproxy.NewServer(toxiproxy.NewMetricsContainer(prometheus.NewRegistry()), zerolog.Nop())
	p := toxiproxy.NewProxy(srv, "etcd", "127.0.0.1:0", u.Host)
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Stop)
	return &cutProxy{p: p}
}

func (c *cutProxy) endpoint() string { return "http://" + c.p.Listen }

// cut closes the listener and every connection through it.
func (c *cutProxy) cut() { c.p.Stop() }

// restore listens again on the same address.
func (c *cutProxy) restore(t *testing.T) {
	t.Helper()
	if err := c.p.Start(); err != nil {
		t.Fatal(err)
	}
}

func proxiedClient(t *testing.T, endpoint string) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{
		Endpoints: []string{endpoint}, DialTimeout: 2 * time.Second,
		DialKeepAliveTime: time.Second, DialKeepAliveTimeout: time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

// testReplicaRelistsAfterCompactionWhileDisconnected: changes made and compacted away while a replica is cut off
// reach it through a full relist, deletes included, and its revision never goes back.
func testReplicaRelistsAfterCompactionWhileDisconnected(t *testing.T) {
	srv := etcdtest.Start(t)
	admin := etcdtest.Client(t, srv.Endpoints())
	store := state.NewStore(admin)
	ctx := context.Background()
	for _, id := range []string{"keep", "gone"} {
		if _, err := store.DeactivateOrg(ctx, id, state.OpsAll, false, who); err != nil {
			t.Fatal(err)
		}
	}
	proxy := newCutProxy(t, srv.Endpoints()[0])
	r := startReplica(t, proxiedClient(t, proxy.endpoint()), state.ReplicaConfig{})
	before := r.AppliedRevision()

	proxy.cut()
	if _, err := admin.Delete(ctx, state.OrgKey("gone")); err != nil {
		t.Fatal(err)
	}
	res, err := store.DeactivateOrg(ctx, "new", state.OpLogin, false, who)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := admin.Compact(ctx, res.Revision, clientv3.WithCompactPhysical()); err != nil {
		t.Fatal(err)
	}
	// While cut off the replica keeps serving what it had, and its staleness grows.
	wait.Eventually(t, "staleness to grow", func() bool { return r.Staleness() > 300*time.Millisecond })
	if r.Snapshot().Org("gone") == nil {
		t.Fatal("last-known state lost while disconnected")
	}

	proxy.restore(t)
	wait.Eventually(t, "replica to catch up", func() bool { return r.AppliedRevision() >= res.Revision })
	snap := r.Snapshot()
	if snap.Org("gone") != nil || snap.Org("new") == nil || snap.Org("keep") == nil {
		t.Fatalf("after relist: gone=%v new=%v keep=%v", snap.Org("gone"), snap.Org("new"), snap.Org("keep"))
	}
	if r.AppliedRevision() < before {
		t.Fatal("applied revision went back")
	}
	if r.Stats().Relists < 2 {
		t.Fatalf("expected a relist, stats %+v", r.Stats())
	}
	wait.Eventually(t, "staleness to recover", func() bool { return r.Staleness() < 300*time.Millisecond })
}

// testReplicaSurvivesMemberRestart: a single member stopped and started again with its data; the replica
// resumes its watch and sees what was written after.
func testReplicaSurvivesMemberRestart(t *testing.T) {
	srv := etcdtest.Start(t)
	cli := etcdtest.Client(t, srv.Endpoints())
	r := startReplica(t, cli, state.ReplicaConfig{})
	ctx := context.Background()
	if _, err := state.NewStore(cli).DeactivateOrg(ctx, "before", state.OpsAll, false, who); err != nil {
		t.Fatal(err)
	}
	wait.Eventually(t, "first write", func() bool { return r.Snapshot().Org("before") != nil })

	cfg := srv.Config()
	srv.Close() // etcd waits up to its request timeout (7 s) for the replica's watch stream to end
	wait.Eventually(t, "staleness to grow", func() bool { return r.Staleness() > 300*time.Millisecond })
	restarted := etcdtest.Restart(t, cfg)
	cli2 := etcdtest.Client(t, restarted.Endpoints())
	res, err := state.NewStore(cli2).DeactivateOrg(ctx, "after", state.OpsAll, false, who)
	if err != nil {
		t.Fatal(err)
	}
	wait.Eventually(t, "write after restart", func() bool { return r.AppliedRevision() >= res.Revision })
	if r.Snapshot().Org("before") == nil || r.Snapshot().Org("after") == nil {
		t.Fatal("replica lost a record across the restart")
	}
}

// testReplicaClusterMemberDown: with 3 members, stopping the one the replica talks to does not stop it.
func testReplicaClusterMemberDown(t *testing.T) {
	c := etcdtest.StartCluster(t, 3)
	cli := etcdtest.Client(t, c.Endpoints())
	r := startReplica(t, cli, state.ReplicaConfig{})
	ctx := context.Background()
	for i := range c.Members {
		c.Stop(i)
		wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		res, err := state.NewStore(cli).DeactivateOrg(wctx, "org"+itoa(i), state.OpsAll, false, who)
		cancel()
		if err != nil {
			t.Fatalf("write with member %d down: %v", i, err)
		}
		wait.Eventually(t, "write with a member down", func() bool { return r.AppliedRevision() >= res.Revision })
		if r.Snapshot().Org("org"+itoa(i)) == nil {
			t.Fatalf("write %d not applied", i)
		}
		if err := c.Restart(i); err != nil {
			t.Fatal(err)
		}
	}
}

// testReplicaWatchCanceledOnLeaderLoss: when the member a replica watches loses its leader, etcd cancels the
// watch (WithRequireLeader); the replica keeps its last snapshot, its staleness grows, and once a leader is back
// it resumes its watch from the revision it had applied and applies what was written meanwhile, without listing
// etcd again (a fleet that lost its leader together must not list etcd together).
func testReplicaWatchCanceledOnLeaderLoss(t *testing.T) {
	c := etcdtest.StartCluster(t, 3)
	eps := c.Endpoints()
	r := startReplica(t, etcdtest.Client(t, eps[:1]), state.ReplicaConfig{})
	store := state.NewStore(etcdtest.Client(t, eps))
	ctx := context.Background()
	if _, err := store.DeactivateOrg(ctx, "before", state.OpsAll, false, who); err != nil {
		t.Fatal(err)
	}
	wait.Eventually(t, "first write", func() bool { return r.Snapshot().Org("before") != nil })
	relists := r.Stats().Relists

	c.Stop(1)
	c.Stop(2) // member 0 alone has no quorum and, after an election timeout, no leader
	// Staleness grows from the first failed linearizable read; the member cancels require-leader watches only
	// after about four election timeouts (1 s each) without a leader, so wait past that.
	wait.Eventually(t, "staleness to grow without a leader", func() bool { return r.Staleness() > 6*time.Second })
	if r.Snapshot().Org("before") == nil {
		t.Fatal("last-known state lost without a leader")
	}
	if err := c.Restart(1); err != nil {
		t.Fatal(err)
	}
	if err := c.Restart(2); err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	res, err := store.DeactivateOrg(wctx, "after", state.OpsAll, false, who)
	if err != nil {
		t.Fatal(err)
	}
	wait.Eventually(t, "write after the leader is back", func() bool { return r.AppliedRevision() >= res.Revision })
	if r.Snapshot().Org("after") == nil || r.Snapshot().Org("before") == nil {
		t.Fatal("replica did not converge after the leader came back")
	}
	if st := r.Stats(); st.Relists != relists || st.Resumes == 0 {
		t.Fatalf("the canceled watch was not resumed, or etcd was listed again: %+v (%d lists before)", st, relists)
	}
}

// testFanoutSeesNodesRegisteredBeforeTheWrite: the Fanout hears of the registry through a slow link (200 ms);
// a node that registered before a write must still be waited for, not skipped as unknown.
func testFanoutSeesNodesRegisteredBeforeTheWrite(t *testing.T) {
	srv := etcdtest.Start(t)
	direct := etcdtest.Client(t, srv.Endpoints())
	proxy := newCutProxy(t, srv.Endpoints()[0])
	if _, err := proxy.p.Toxics.AddToxicJson(strings.NewReader(`{"name":"slow","type":"latency","stream":"downstream","toxicity":1,"attributes":{"latency":200}}`)); err != nil {
		t.Fatal(err)
	}
	f := startFanout(t, proxiedClient(t, proxy.endpoint()))
	ctx := context.Background()
	// A node that has applied everything, seen by the Fanout: from here on its view lags 200 ms behind etcd.
	if _, err := direct.Put(ctx, state.NodeKey("fast"), `{"id":"fast","appliedRevision":1000000000}`); err != nil {
		t.Fatal(err)
	}
	wait.Eventually(t, "fanout to see the first node", func() bool { return len(f.Nodes()) == 1 })
	// A node that registered but will never apply anything.
	if _, err := direct.Put(ctx, state.NodeKey("laggard"), `{"id":"laggard","appliedRevision":1}`); err != nil {
		t.Fatal(err)
	}
	res, err := state.NewStore(direct).DeactivateOrg(ctx, "o1", state.OpsAll, false, who)
	if err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, 1500*time.Millisecond)
	defer cancel()
	c, err := f.WaitApplied(wctx, res.Revision)
	if err == nil || c.Total != 2 || c.Confirmed != 1 || len(c.Pending) != 1 || c.Pending[0] != "laggard" {
		t.Fatalf("confirmation %+v, %v: the registered node was not waited for", c, err)
	}
}
