package state_test

import (
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/deact/deact/internal/wait"
	"github.com/deact/deact/state"
	"github.com/deact/deact/state/etcdserver"
	"github.com/deact/deact/state/etcdtest"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// TestStalenessUnderLaggingWatch (issue 14, B10): a bulk import written faster than the replica's watch
// delivers it (here its link to etcd carries 256 KiB/s, so the lag does not depend on how fast this machine
// applies) makes the replica lag while its watch keeps delivering events. Staleness must still say how far behind etcd's committed state the
// snapshot may be: whenever the replica has not applied a write that returned at time T, a staleness read at
// t ≥ T must be at least t − T. It checks that on every sample, and that the burst really made it lag.
func TestStalenessUnderLaggingWatch(t *testing.T) {
	t.Parallel()
	// No fsync, as in the sync benchmark: the writes must outrun the replica, as a bulk import does.
	srv, err := etcdserver.Start(etcdserver.Config{Dir: t.TempDir(), UnsafeNoFsync: true, LogLevel: "fatal"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	cli := etcdtest.Client(t, srv.Endpoints())
	link := newCutProxy(t, srv.Endpoints()[0])
	if _, err := link.p.Toxics.AddToxicJson(strings.NewReader(`{"name":"narrow","type":"bandwidth","stream":"downstream","toxicity":1,"attributes":{"rate":256}}`)); err != nil {
		t.Fatal(err)
	}
	r := startReplica(t, proxiedClient(t, link.endpoint()), state.ReplicaConfig{})
	ctx := context.Background()
	wait.Eventually(t, "a fresh replica", func() bool { return r.Staleness() < time.Second })

	type write struct {
		rev  int64
		done time.Time
	}
	var mu sync.Mutex
	var writes []write // in the order they returned
	const writers, txns, perTxn = 4, 40, 128
	batches := make([][]clientv3.Op, writers*txns) // made beforehand, so that the writes come as fast as etcd takes them
	for i := range batches {
		batches[i] = make([]clientv3.Op, perTxn)
		for j := range batches[i] {
			id := strconv.Itoa((i*perTxn+j)*7919 + 100000000)
			b, _ := json.Marshal(state.Org{ID: id, Disabled: state.OpLogin})
			batches[i][j] = clientv3.OpPut(state.OrgKey(id), string(b))
		}
	}
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := range writers {
		wg.Go(func() {
			for i := range txns {
				resp, err := cli.Txn(ctx).Then(batches[w*txns+i]...).Commit()
				if err != nil {
					errs <- err
					return
				}
				mu.Lock()
				writes = append(writes, write{resp.Header.Revision, time.Now()})
				mu.Unlock()
			}
		})
	}
	finished := make(chan struct{})
	go func() { wg.Wait(); close(finished) }()

	var maxLag, stalenessAtMaxLag time.Duration
	samples := 0
	sample := func() (caughtUp bool) {
		at := time.Now() // before Staleness reads its clock
		s := r.Staleness()
		applied := r.AppliedRevision() // after: the replica held no more than this when s was read
		mu.Lock()
		defer mu.Unlock()
		for _, w := range writes { // the oldest write it lacks bounds it best
			if w.rev > applied {
				lag := at.Sub(w.done)
				if s < lag {
					t.Fatalf("staleness %v, but a write that returned %v ago (revision %d) is not applied (applied %d)", s, lag, w.rev, applied)
				}
				if lag > maxLag {
					maxLag, stalenessAtMaxLag = lag, s
				}
				return false
			}
		}
		return true
	}
	deadline := time.After(2 * time.Minute)
	for done := false; ; {
		samples++
		caughtUp := sample()
		if done && caughtUp {
			break
		}
		select {
		case <-finished:
			done, finished = true, nil
		case <-deadline:
			t.Fatal("the replica did not catch up with the burst")
		case err := <-errs:
			t.Fatal(err)
		case <-time.After(time.Millisecond):
		}
	}
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	t.Logf("%d records, %d samples; largest lag behind a returned write %v (staleness then %v)", writers*txns*perTxn, samples, maxLag, stalenessAtMaxLag)
	if maxLag < time.Second {
		t.Fatalf("the burst did not make the replica lag (largest lag %v): the test shows nothing", maxLag)
	}
	wait.Eventually(t, "staleness back to normal once caught up", func() bool { return r.Staleness() < time.Second })
}
