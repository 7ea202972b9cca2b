package state_test

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/deact/deact/internal/wait"
	"github.com/deact/deact/state"
	"github.com/deact/deact/state/etcdtest"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// seedAdmin is an admin node that seeds from its replica: the replica (its Run stops with freeze) and the report
// server, on a loopback port.
type seedAdmin struct {
	replica *state.Replica
	server  *state.ReportServer
	freeze  func() // stops the replica: its snapshot stays as it is, ready, growing stale
}

func startSeedAdmin(t *testing.T, endpoints []string, maxStaleness time.Duration) seedAdmin {
	t.Helper()
	cli := etcdtest.Client(t, endpoints)
	r := state.NewReplica(state.ReplicaConfig{Client: cli, Logger: quietLogger(), ProgressInterval: 50 * time.Millisecond})
	rctx, rcancel := context.WithCancel(context.Background())
	rdone := make(chan struct{})
	go func() { defer close(rdone); _ = r.Run(rctx) }()
	freeze := func() { rcancel(); <-rdone }
	t.Cleanup(freeze)
	wctx, wcancel := context.WithTimeout(rctx, 10*time.Second)
	defer wcancel()
	if err := r.WaitReady(wctx); err != nil {
		t.Fatal(err)
	}
	f := state.NewFanout(cli, quietLogger())
	fctx, fcancel := context.WithCancel(context.Background())
	fdone := make(chan struct{})
	go func() { defer close(fdone); _ = f.Run(fctx) }()
	t.Cleanup(func() { fcancel(); <-fdone })
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s, err := state.NewReportServer(state.ReportServerConfig{Client: cli, Fanout: f, Replica: r, Logger: quietLogger(), TTL: 5 * time.Second,
		SeedMaxStaleness: maxStaleness})
	if err != nil {
		t.Fatal(err)
	}
	sctx, scancel := context.WithCancel(context.Background())
	sdone := make(chan struct{})
	go func() { defer close(sdone); _ = s.Serve(sctx, lis) }()
	t.Cleanup(func() { scancel(); <-sdone })
	// Gateways find it in the registry.
	wait.Until(t, "the admin node is registered", 5*time.Second, func() bool {
		resp, err := cli.Get(context.Background(), state.AdminsPrefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
		return err == nil && resp.Count == 1
	})
	return seedAdmin{replica: r, server: s, freeze: freeze}
}

// importOrgs writes n orgs (every third deactivated), each with an app and its client ID and a domain.
func importOrgs(t *testing.T, store *state.Store, from, n int) {
	t.Helper()
	var sb strings.Builder
	for i := from; i < from+n; i++ {
		dis := i%3 == 0
		fmt.Fprintf(&sb, `{"org":{"id":"o%d","disableLogin":%t,"domains":["d%d.example"]}}`+"\n", i, dis, i)
		fmt.Fprintf(&sb, `{"app":{"id":"a%d","projectId":"p%d","orgId":"o%d","clientIds":["c%d@p"],"state":"%s"}}`+"\n",
			i, i%7, i, i, map[bool]string{true: "deactivated", false: "active"}[i%5 == 0])
	}
	if _, err := store.Import(context.Background(), strings.NewReader(sb.String()), state.Change{Actor: "test"}); err != nil {
		t.Fatal(err)
	}
}

// etcdKeys is every state record's key and mod revision in etcd.
func etcdKeys(t *testing.T, cli *clientv3.Client) map[string]int64 {
	t.Helper()
	resp, err := cli.Get(context.Background(), state.StatePrefix, clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int64{}
	for _, kv := range resp.Kvs {
		out[string(kv.Key)] = kv.ModRevision
	}
	return out
}

func sameKeys(t *testing.T, got, want map[string]int64) {
	t.Helper()
	for k, rev := range want {
		if got[k] != rev {
			t.Errorf("%s: replica holds revision %d, etcd %d", k, got[k], rev)
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("%s: replica holds it, etcd does not", k)
		}
	}
}

// A gateway seeded by an admin node whose replica stopped before the latest writes (a deactivation among them)
// is ready only once it has caught up with etcd: at ready it holds exactly what etcd holds, the deactivation
// included, and it was seeded (not listed).
func TestSeedCatchesUpWithEtcd(t *testing.T) {
	t.Parallel()
	srv := etcdtest.Start(t)
	cli := etcdtest.Client(t, srv.Endpoints())
	store := state.NewStore(cli)
	importOrgs(t, store, 0, 300)
	// Mirrored records, some layered over local ones: the seed carries the layers.
	if _, err := store.ApplyMirror(context.Background(), []state.MirrorRecord{mirrorOrg("o4", 1, state.OpToken), mirrorOrg("m1", 1, 0),
		mirrorApp("p4", "a4", "o4", 1, false, "c4@p", "m4@p"), mirrorApp("mp", "ma", "m1", 1, true, "mc@p")}, upstream); err != nil {
		t.Fatal(err)
	}
	admin := startSeedAdmin(t, srv.Endpoints(), 0)
	admin.freeze()
	// After the admin node's snapshot: a deactivation, a new org, a deleted one.
	if _, err := store.DeactivateOrg(context.Background(), "o1", state.OpsAll, false, state.Change{Actor: "test"}); err != nil {
		t.Fatal(err)
	}
	importOrgs(t, store, 1000, 5)
	if _, err := cli.Delete(context.Background(), state.OrgKey("o2")); err != nil {
		t.Fatal(err)
	}
	if _, err := store.ApplyMirror(context.Background(), []state.MirrorRecord{mirrorOrg("m1", 2, state.OpsAll)}, upstream); err != nil {
		t.Fatal(err)
	}

	gw := startReplica(t, etcdtest.Client(t, srv.Endpoints()), state.ReplicaConfig{Seed: &state.SeedConfig{NodeID: "gw-1"}})
	if !gw.Stats().Seeded {
		t.Fatal("the gateway listed etcd: it was not seeded")
	}
	if got := admin.server.Stats().Seeds; got != 1 {
		t.Fatalf("admin node sent %d seeds, want 1", got)
	}
	s := gw.Snapshot()
	if o := s.Org("o1"); o == nil || o.Disabled != state.OpsAll {
		t.Fatalf("org o1 at ready: %+v, want deactivated (written after the admin node's snapshot)", o)
	}
	if s.Org("o2") != nil || s.Org("o1000") == nil {
		t.Fatal("the writes after the admin node's snapshot are not all applied at ready")
	}
	if o := s.Org("m1"); o == nil || o.Disabled != state.OpsAll {
		t.Fatalf("mirrored org m1 at ready: %+v, want deactivated", o)
	}
	if o := s.Org("o4"); o == nil || o.Disabled&state.OpToken == 0 {
		t.Fatalf("org o4, local and mirrored: %+v, want its mirror's token op disabled", o)
	}
	if c := s.Client("mc@p"); c == nil || c.AppID != "ma" {
		t.Fatalf("a mirrored app's client ID: %+v", c)
	}
	listed := startReplica(t, etcdtest.Client(t, srv.Endpoints()), state.ReplicaConfig{})
	if d := state.SnapshotsDiffer(s, listed.Snapshot()); d != "" {
		t.Fatalf("the seeded snapshot differs from a list of etcd: %s", d)
	}
	if n := gw.Stats().BadRecords; n != 0 {
		t.Fatalf("%d bad records", n)
	}
	// The ticket's lease is revoked once the seed is taken.
	wait.Until(t, "the seed ticket is gone", 5*time.Second, func() bool {
		resp, err := cli.Get(context.Background(), state.SeedTicketsPrefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
		return err == nil && resp.Count == 0
	})
}

// A seeded replica's watch starts behind etcd (at the admin node's revision, before the gateway's own ticket),
// and etcd ignores a progress request until such a watch has caught up: the readiness probe asks again until it
// is answered, rather than waiting for the next ProgressInterval (here an hour, which would outlast the test).
func TestSeededReplicaIsReadyWithoutWaitingForATick(t *testing.T) {
	t.Parallel()
	srv := etcdtest.Start(t)
	store := state.NewStore(etcdtest.Client(t, srv.Endpoints()))
	importOrgs(t, store, 0, 50)
	admin := startSeedAdmin(t, srv.Endpoints(), 0)
	admin.freeze()
	importOrgs(t, store, 100, 5) // behind the admin node's snapshot: the watch replays them
	gw := startReplica(t, etcdtest.Client(t, srv.Endpoints()), state.ReplicaConfig{Seed: &state.SeedConfig{NodeID: "gw-1"},
		ProgressInterval: time.Hour})
	if !gw.Stats().Seeded {
		t.Fatal("the gateway listed etcd: it was not seeded")
	}
	if gw.Snapshot().Org("o104") == nil {
		t.Fatal("ready before it applied the writes after the admin node's snapshot")
	}
}

// A gateway that cannot be seeded (no admin node serves seeds, or the only one is too stale) lists etcd.
func TestSeedFallsBackToEtcd(t *testing.T) {
	t.Parallel()
	srv := etcdtest.Start(t)
	cli := etcdtest.Client(t, srv.Endpoints())
	store := state.NewStore(cli)
	importOrgs(t, store, 0, 50)

	t.Run("no admin node", func(t *testing.T) {
		gw := startReplica(t, etcdtest.Client(t, srv.Endpoints()), state.ReplicaConfig{Seed: &state.SeedConfig{NodeID: "gw-1"}})
		if gw.Stats().Seeded {
			t.Fatal("seeded by no one")
		}
		sameKeys(t, state.SnapshotKeys(gw.Snapshot()), etcdKeys(t, cli))
	})
	t.Run("stale admin node", func(t *testing.T) {
		admin := startSeedAdmin(t, srv.Endpoints(), time.Second)
		admin.freeze()
		wait.Until(t, "the admin node's replica is stale", 10*time.Second, func() bool { return admin.replica.Staleness() > time.Second })
		gw := startReplica(t, etcdtest.Client(t, srv.Endpoints()), state.ReplicaConfig{Seed: &state.SeedConfig{NodeID: "gw-2"}})
		if gw.Stats().Seeded || admin.server.Stats().Seeds != 0 {
			t.Fatal("seeded by a stale admin node")
		}
		sameKeys(t, state.SnapshotKeys(gw.Snapshot()), etcdKeys(t, cli))
	})
}
