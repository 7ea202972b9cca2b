package state_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/deact/deact/internal/wait"
	"github.com/deact/deact/state"
	clientv3 "go.etcd.io/etcd/client/v3"
)

func quietLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
}

// startReplica runs a replica until the test ends and waits until it is ready.
func startReplica(t *testing.T, cli *clientv3.Client, cfg state.ReplicaConfig) *state.Replica {
	t.Helper()
	cfg.Client = cli
	cfg.Logger = quietLogger()
	if cfg.ProgressInterval == 0 {
		cfg.ProgressInterval = 50 * time.Millisecond
	}
	if cfg.RetryInterval == 0 {
		cfg.RetryInterval = 20 * time.Millisecond
	}
	r := state.NewReplica(cfg)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = r.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
	defer wcancel()
	if err := r.WaitReady(wctx); err != nil {
		t.Fatalf("replica not ready: %v", err)
	}
	return r
}

func TestReplicaFollowsWrites(t *testing.T) {
	t.Parallel()
	store, cli := newStoreAndClient(t)
	ctx := context.Background()

	if _, err := store.DeactivateOrg(ctx, "100", state.OpLogin|state.OpToken, false, state.Change{Actor: "test"}); err != nil {
		t.Fatal(err)
	}
	r := startReplica(t, cli, state.ReplicaConfig{})
	if o := r.Snapshot().Org("100"); o == nil || o.Disabled != state.OpLogin|state.OpToken {
		t.Fatalf("listed org = %+v", o)
	}
	res, err := store.ReactivateOrg(ctx, "100", state.Change{Actor: "test"})
	if err != nil {
		t.Fatal(err)
	}
	wait.Eventually(t, "reactivation applied", func() bool { return r.AppliedRevision() >= res.Revision })
	if o := r.Snapshot().Org("100"); o == nil || o.Disabled != 0 {
		t.Fatalf("org after reactivate = %+v", o)
	}
	if _, err := cli.Delete(ctx, state.OrgKey("100")); err != nil {
		t.Fatal(err)
	}
	wait.Eventually(t, "delete applied", func() bool { return r.Snapshot().Org("100") == nil })
}

// Probes that run while the watch applies a burst of writes (every millisecond here) see revisions above the
// ones they were sent at, never below: none takes etcd for one that went back, so the watch is never ended and
// the state never listed again.
func TestProbesDuringABurstKeepTheWatch(t *testing.T) {
	t.Parallel()
	store, cli := newStoreAndClient(t)
	r := startReplica(t, cli, state.ReplicaConfig{ProgressInterval: time.Millisecond})
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 100 {
				if _, err := store.DeactivateOrg(context.Background(), fmt.Sprintf("b%d-%d", w, i), state.OpsAll, false, who); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	res, err := store.DeactivateOrg(context.Background(), "last", state.OpsAll, false, who)
	if err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := r.WaitApplied(wctx, res.Revision); err != nil {
		t.Fatal(err)
	}
	if st := r.Stats(); st.Relists != 1 || st.Resumes != 0 {
		t.Fatalf("the watch broke during the burst: %+v", st)
	}
}
