package state

import (
	"context"
	"fmt"
	"reflect"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// SnapshotKeys maps each record's etcd key to its mod revision, for comparing a replica with etcd.
func SnapshotKeys(s *Snapshot) map[string]int64 {
	out := map[string]int64{}
	s.each(func(k kind, id string, it item) {
		key := keyOf(k, id)
		out[key] = it.rev
	})
	return out
}

// DrainList streams the whole state prefix as a replica's list does and drops every record: etcd's own cost of
// a list, the floor a replica's sync is measured against in the same run.
func DrainList(ctx context.Context, cli *clientv3.Client) (records int, err error) {
	r := NewReplica(ReplicaConfig{Client: cli})
	_, err = r.listStream(ctx, func([]byte, []byte, int64) { records++ })
	return records, err
}

// SnapshotsDiffer describes the first difference between two snapshots' records (kind, ID, mod revision and
// decoded value, as lookups see them) and mirrored layers, or returns "" when they hold the same.
func SnapshotsDiffer(a, b *Snapshot) string {
	type rec struct {
		k  kind
		id string
	}
	collect := func(s *Snapshot) map[rec]item {
		out := map[rec]item{}
		s.each(func(k kind, id string, it item) { out[rec{k, id}] = it })
		if s.layers != nil {
			for k := range s.layers.subjects {
				for _, sh := range s.layers.subjects[k].shards {
					sh.each(func(id string, it item) { out[rec{kind(k) + 100, id}] = it })
				}
			}
		}
		return out
	}
	am, bm := collect(a), collect(b)
	for r, x := range am {
		y, ok := bm[r]
		if !ok {
			return fmt.Sprintf("kind %d %q: only in the first", r.k, r.id)
		}
		if x.rev != y.rev || !reflect.DeepEqual(x.val, y.val) {
			return fmt.Sprintf("kind %d %q: %d %+v against %d %+v", r.k, r.id, x.rev, x.val, y.rev, y.val)
		}
	}
	for r := range bm {
		if _, ok := am[r]; !ok {
			return fmt.Sprintf("kind %d %q: only in the second", r.k, r.id)
		}
	}
	return ""
}
