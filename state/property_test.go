package state_test

import (
	"context"
	"errors"
	"flag"
	"sync/atomic"
	"testing"
	"time"

	"github.com/deact/deact/state"
	"github.com/deact/deact/state/etcdtest"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"pgregory.net/rapid"
)

// TestReplicaMatchesEtcd: for random sequences of writes, deletes, disconnections and compactions, the replica
// ends holding exactly what etcd holds, and neither its applied revision nor its snapshot revision ever goes back.
func TestReplicaMatchesEtcd(t *testing.T) {
	if f := flag.Lookup("rapid.checks"); f != nil && f.Value.String() == "100" {
		_ = f.Value.Set("15") // each check runs against real etcd; -rapid.checks=N raises it
	}
	srv := etcdtest.Start(t)
	admin := etcdtest.Client(t, srv.Endpoints())
	store := state.NewStore(admin)
	ctx := context.Background()

	rapid.Check(t, func(rt *rapid.T) {
		proxy := newCutProxy(t, srv.Endpoints()[0])
		r := startReplica(t, proxiedClient(t, proxy.endpoint()), state.ReplicaConfig{RetryInterval: 10 * time.Millisecond})

		// Watch the revisions from the side for the whole run.
		var wentBack atomic.Bool
		stop := make(chan struct{})
		done := make(chan struct{})
		go func() {
			defer close(done)
			var lastApplied, lastSnap int64
			for {
				a, s := r.AppliedRevision(), r.Snapshot().Revision()
				if a < lastApplied || s < lastSnap {
					wentBack.Store(true)
				}
				lastApplied, lastSnap = a, s
				select {
				case <-stop:
					return
				case <-time.After(time.Millisecond):
				}
			}
		}()

		ids := []string{"a", "b", "c", "d"}
		cut := false
		cuts := 0
		steps := rapid.IntRange(1, 25).Draw(rt, "steps")
		for i := range steps {
			switch rapid.IntRange(0, 9).Draw(rt, "action") {
			case 0, 1, 2:
				id := rapid.SampledFrom(ids).Draw(rt, "deactivate")
				_, _ = store.DeactivateOrg(ctx, id, state.Ops(rapid.IntRange(1, 15).Draw(rt, "ops")), true, who)
			case 3, 4:
				_, _ = store.ReactivateOrg(ctx, rapid.SampledFrom(ids).Draw(rt, "reactivate"), who)
			case 5:
				if _, err := admin.Delete(ctx, state.OrgKey(rapid.SampledFrom(ids).Draw(rt, "delete"))); err != nil {
					rt.Fatal(err)
				}
			case 6:
				app := rapid.SampledFrom(ids).Draw(rt, "app")
				_, _ = store.SetAppState(ctx, "p", app, "o", rapid.Bool().Draw(rt, "appState"), who)
			case 7:
				resp, err := admin.Get(ctx, "compact-probe")
				if err != nil {
					rt.Fatal(err)
				}
				// Compacting at a revision compacted before is an error etcd may give; it changes nothing.
				if _, err := admin.Compact(ctx, resp.Header.Revision); err != nil && !errors.Is(err, rpctypes.ErrCompacted) {
					rt.Fatal(err)
				}
			case 8, 9:
				if cut {
					proxy.restore(t)
				} else if cuts < 2 {
					proxy.cut()
					cuts++
				} else {
					continue
				}
				cut = !cut
			}
			_ = i
		}
		if cut {
			proxy.restore(t)
		}

		want := map[string]int64{}
		resp, err := admin.Get(ctx, state.StatePrefix, clientv3.WithPrefix())
		if err != nil {
			rt.Fatal(err)
		}
		for _, kv := range resp.Kvs {
			want[string(kv.Key)] = kv.ModRevision
		}
		deadline := time.Now().Add(15 * time.Second)
		for r.AppliedRevision() < resp.Header.Revision {
			if time.Now().After(deadline) {
				rt.Fatalf("replica stuck at %d, etcd at %d", r.AppliedRevision(), resp.Header.Revision)
			}
			time.Sleep(2 * time.Millisecond)
		}
		close(stop)
		<-done
		if wentBack.Load() {
			rt.Fatal("a revision went back")
		}
		got := state.SnapshotKeys(r.Snapshot())
		if len(got) != len(want) {
			rt.Fatalf("replica has %d records, etcd %d\nreplica %v\netcd %v", len(got), len(want), got, want)
		}
		for k, rev := range want {
			if got[k] != rev {
				rt.Fatalf("%s: replica at revision %d, etcd at %d", k, got[k], rev)
			}
		}
	})
}
