package state

import (
	"context"

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
