package state

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/deact/deact/state/etcdtest"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// TestListStreamMatchesGet: the list's in-place parse of etcd's range stream reads exactly what the client's
// own Get reads at the same revision (every key, value and mod revision, in key order, none twice), over enough
// records and large enough values that the stream comes in many chunks, with keys outside the state prefix on
// either side and a delete and an overwrite in the history.
func TestListStreamMatchesGet(t *testing.T) {
	t.Parallel()
	srv := etcdtest.Start(t)
	cli := etcdtest.Client(t, srv.Endpoints())
	ctx := context.Background()
	big := strings.Repeat("x", 200<<10) // 200 KiB: a few of these fill a chunk
	var ops []clientv3.Op
	flush := func() {
		if _, err := cli.Txn(ctx).Then(ops...).Commit(); err != nil {
			t.Fatal(err)
		}
		ops = ops[:0]
	}
	for i := range 3000 {
		v := fmt.Sprintf(`{"id":"%d","state":"deactivated"}`, i)
		if i%500 == 7 {
			v = big
		}
		ops = append(ops, clientv3.OpPut(OrgKey(fmt.Sprint(i)), v))
		if len(ops) == 100 {
			flush()
		}
	}
	flush()
	for _, op := range []clientv3.Op{
		clientv3.OpPut("/deact/v1/nodes/x", "outside"), clientv3.OpPut("/deact/v0", "before"),
		clientv3.OpDelete(OrgKey("5")), clientv3.OpPut(OrgKey("6"), "overwritten"), clientv3.OpPut(OrgKey("empty"), ""),
	} {
		if _, err := cli.Do(ctx, op); err != nil {
			t.Fatal(err)
		}
	}

	r := &Replica{cfg: ReplicaConfig{Client: cli}}
	type kv struct {
		key, value string
		mod        int64
	}
	var got []kv
	rev, err := r.listStream(ctx, func(key, value []byte, modRev int64) {
		got = append(got, kv{string(bytes.Clone(key)), string(bytes.Clone(value)), modRev})
	})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := cli.Get(ctx, StatePrefix, clientv3.WithPrefix(), clientv3.WithRev(rev))
	if err != nil {
		t.Fatal(err)
	}
	if rev != resp.Header.Revision {
		t.Errorf("stream at revision %d, the store at %d", rev, resp.Header.Revision)
	}
	if len(got) != len(resp.Kvs) {
		t.Fatalf("stream read %d records, Get %d", len(got), len(resp.Kvs))
	}
	for i, want := range resp.Kvs {
		if g := got[i]; g.key != string(want.Key) || g.value != string(want.Value) || g.mod != want.ModRevision {
			t.Fatalf("record %d: stream %q (%d bytes, mod %d), Get %q (%d bytes, mod %d)",
				i, g.key, len(g.value), g.mod, want.Key, len(want.Value), want.ModRevision)
		}
	}
}

// An etcd whose revision is below what a replica applied (restored without --bump-revision) is never taken for
// current: the probe reports it (ending the watch, which would otherwise wait for revisions etcd reuses, while
// the probes called the replica current), and a list of it is refused rather than swapped in.
func TestEtcdGoingBackIsNotCurrent(t *testing.T) {
	t.Parallel()
	srv := etcdtest.Start(t)
	cli := etcdtest.Client(t, srv.Endpoints())
	if _, err := cli.Put(context.Background(), OrgKey("o1"), `{"disableLogin":true}`); err != nil {
		t.Fatal(err)
	}
	r := NewReplica(ReplicaConfig{Client: cli, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	r.applied.Store(1_000_000) // what it applied from the etcd before the restore
	if err := r.probe(context.Background()); !errors.Is(err, errWentBack) {
		t.Fatalf("probe of an etcd behind the replica: %v, want errWentBack", err)
	}
	if _, err := r.relist(context.Background()); !errors.Is(err, errWentBack) {
		t.Fatalf("list of an etcd behind the replica: %v, want errWentBack", err)
	}
	if r.Ready() || r.currentAt.Load() != 0 || r.snap.Load() != nil {
		t.Fatal("an etcd behind the replica made it current, ready or swapped its snapshot")
	}
}
