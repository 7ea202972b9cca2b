package state

import (
	"encoding/json"
	"os"
	"strconv"
	"testing"

	"go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// TestApplyTakesInWaitingResponses: the event responses already waiting behind the one being applied go into
// the same snapshot, in order, each whole; the first response that is not events (a progress notification,
// the channel's end) is handed back unhandled, after the publish; and a lone response is published at once.
func TestApplyTakesInWaitingResponses(t *testing.T) {
	put := func(org string, ops Ops, rev int64) clientv3.WatchResponse {
		b, err := json.Marshal(Org{ID: org, Disabled: ops})
		if err != nil {
			t.Fatal(err)
		}
		return clientv3.WatchResponse{Header: &etcdserverpb.ResponseHeader{Revision: rev}, Events: []*clientv3.Event{
			{Type: mvccpb.PUT, Kv: &mvccpb.KeyValue{Key: []byte(OrgKey(org)), Value: b, ModRevision: rev}},
		}}
	}
	progress := clientv3.WatchResponse{Header: &etcdserverpb.ResponseHeader{Revision: 20}}
	cases := []struct {
		name    string
		waiting []clientv3.WatchResponse
		close   bool
		// What the snapshot holds afterwards, and what apply hands back.
		revision int64
		disabled map[string]Ops
		ahead    bool
		aheadOK  bool
	}{
		{name: "lone response", revision: 10, disabled: map[string]Ops{"a": OpLogin}},
		{
			name:    "waiting events join, in order, up to a progress notification",
			waiting: []clientv3.WatchResponse{put("b", OpToken, 11), put("a", OpBackup, 12), progress, put("c", OpLogin, 21)},
			// "c" stays on the channel: it comes after the progress notification.
			revision: 12, disabled: map[string]Ops{"a": OpBackup, "b": OpToken, "c": 0}, ahead: true, aheadOK: true,
		},
		{
			name: "the channel's end", waiting: []clientv3.WatchResponse{put("b", OpToken, 11)}, close: true,
			revision: 11, disabled: map[string]Ops{"a": OpLogin, "b": OpToken}, ahead: true,
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := NewReplica(ReplicaConfig{})
			wch := make(chan clientv3.WatchResponse, len(c.waiting))
			for _, w := range c.waiting {
				wch <- w
			}
			if c.close {
				close(wch)
			}
			changed := r.Changed()
			next, ok, ahead := r.apply(put("a", OpLogin, 10), wch)
			select {
			case <-changed:
			default:
				t.Fatal("no snapshot published")
			}
			s := r.Snapshot()
			if s.Revision() != c.revision || r.AppliedRevision() != c.revision {
				t.Errorf("snapshot revision %d, applied %d; want %d", s.Revision(), r.AppliedRevision(), c.revision)
			}
			for org, want := range c.disabled {
				var got Ops
				if o := s.Org(org); o != nil {
					got = o.Disabled
				}
				if got != want {
					t.Errorf("org %s disables %v, want %v", org, got, want)
				}
			}
			if ahead != c.ahead || ok != c.aheadOK || (c.ahead && c.aheadOK && !next.IsProgressNotify()) {
				t.Errorf("handed back %+v (ok %v, ahead %v); want ahead %v, ok %v", next, ok, ahead, c.ahead, c.aheadOK)
			}
			if n := r.Stats().BadRecords; n != 0 {
				t.Errorf("%d bad records", n)
			}
		})
	}
}

// BenchmarkApply is the cost of applying one change to a large snapshot, and of bursts of changes waiting on
// the watch channel, taken into one snapshot: each touched shard is copied once per snapshot, so a burst costs
// less per change as its changes share shards (256 per kind). Changes go to orgs spread over every shard, as
// real ones are. DEACT_APPLY_RECORDS adds a size (e.g. 1000000).
func BenchmarkApply(b *testing.B) {
	sizes := []int{1000, 100_000}
	if v, err := strconv.Atoi(os.Getenv("DEACT_APPLY_RECORDS")); err == nil && v > 0 {
		sizes = append(sizes, v)
	}
	for _, n := range sizes {
		recs := make([]Record, 0, n)
		for i := range n {
			recs = append(recs, Record{Org: &Org{ID: strconv.Itoa(69629023906488334 + i)}})
		}
		base, err := BuildSnapshot(1, recs...)
		if err != nil {
			b.Fatal(err)
		}
		val, _ := json.Marshal(Org{ID: "x", Disabled: OpLogin})
		for _, burst := range []int{1, 64, 256} {
			b.Run("records="+strconv.Itoa(n)+"/burst="+strconv.Itoa(burst), func(b *testing.B) {
				r := NewReplica(ReplicaConfig{})
				r.snap.Store(base)
				rev := int64(2)
				wch := make(chan clientv3.WatchResponse, burst)
				resp := func() clientv3.WatchResponse {
					rev++
					org := strconv.Itoa(69629023906488334 + int(rev*7919)%n)
					return clientv3.WatchResponse{Header: &etcdserverpb.ResponseHeader{Revision: rev}, Events: []*clientv3.Event{{Type: mvccpb.PUT,
						Kv: &mvccpb.KeyValue{Key: []byte(OrgKey(org)), Value: val, ModRevision: rev}}}}
				}
				b.ReportAllocs()
				for b.Loop() {
					for i := 1; i < burst; i++ {
						wch <- resp()
					}
					if _, _, ahead := r.apply(resp(), wch); ahead {
						b.Fatal("handed back a response")
					}
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*burst), "ns/change")
			})
		}
	}
}
