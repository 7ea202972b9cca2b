package state

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Audit returns up to limit audit entries (1 to 1000, else 100), newest first, written before the entry
// whose key suffix is before (empty: from the newest). AuditPage also says where the next page starts.
func (s *Store) Audit(ctx context.Context, before string, limit int64) ([]AuditEntry, error) {
	p, err := s.AuditPage(ctx, before, limit)
	return p.Entries, err
}

// AuditPage is a page of the audit log, newest first. Next is the cursor of the page after it (the key suffix
// of the oldest entry read, for before), empty when the log has no older entry.
type AuditPage struct {
	Entries []AuditEntry
	Next    string
}

// AuditPage reads a page as Audit does, with the cursor of the next one.
func (s *Store) AuditPage(ctx context.Context, before string, limit int64) (AuditPage, error) {
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
		return AuditPage{}, err
	}
	p := AuditPage{Entries: make([]AuditEntry, 0, len(resp.Kvs))}
	for _, kv := range resp.Kvs {
		var e AuditEntry
		if err := json.Unmarshal(kv.Value, &e); err != nil {
			continue
		}
		e.Revision = kv.ModRevision
		p.Entries = append(p.Entries, e)
	}
	if resp.More && len(resp.Kvs) > 0 {
		p.Next = strings.TrimPrefix(string(resp.Kvs[len(resp.Kvs)-1].Key), AuditPrefix)
	}
	return p, nil
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
