package state

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Audit returns up to limit audit entries, newest first, older than the cursor (an audit key suffix).
func (s *Store) Audit(ctx context.Context, before string, limit int64) ([]AuditEntry, error) {
	if limit <= 0 || limit > 1000 {
		limit = 100
	}
	end := clientv3.GetPrefixRangeEnd(AuditPrefix)
	if before != "" {
		end = AuditPrefix + before
	}
	resp, err := s.cli.Get(ctx, AuditPrefix, clientv3.WithRange(end), clientv3.WithLimit(limit),
		clientv3.WithSort(clientv3.SortByKey, clientv3.SortDescend))
	if err != nil {
		return nil, err
	}
	out := make([]AuditEntry, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		var e AuditEntry
		if err := json.Unmarshal(kv.Value, &e); err != nil {
			continue
		}
		e.Revision = kv.ModRevision
		out = append(out, e)
	}
	return out, nil
}

// PruneAudit deletes the audit records made before cutoff and returns how many it deleted. Audit keys start
// with their time, so this is one range delete.
func (s *Store) PruneAudit(ctx context.Context, cutoff time.Time) (int64, error) {
	end := fmt.Sprintf("%s%019d", AuditPrefix, cutoff.UnixNano())
	resp, err := s.cli.Delete(ctx, AuditPrefix, clientv3.WithRange(end))
	if err != nil {
		return 0, err
	}
	return resp.Deleted, nil
}
