package state

import (
	"context"
	"log/slog"
	"time"
)

// AuditPruneInterval is how often PruneAuditLoop prunes.
const AuditPruneInterval = time.Hour

// PruneAuditLoop deletes audit records older than retention (PruneAudit) at once and then every
// AuditPruneInterval, until ctx ends; failures are logged and retried at the next round. Several admin nodes
// doing it at once is harmless: each round is one idempotent range delete.
func (s *Store) PruneAuditLoop(ctx context.Context, retention time.Duration, log *slog.Logger) {
	t := time.NewTicker(AuditPruneInterval)
	defer t.Stop()
	for {
		n, err := s.PruneAudit(ctx, time.Now().Add(-retention))
		switch {
		case err != nil && ctx.Err() == nil:
			log.Warn("pruning the audit log failed", "err", err)
		case n > 0:
			log.Info("pruned the audit log", "records", n, "retention", retention)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
