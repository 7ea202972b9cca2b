package state_test

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/deact/deact/state"
)

// TestPruneAuditLoop: the loop prunes at once, records older than the retention only, and returns when its
// context ends.
func TestPruneAuditLoop(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := context.Background()
	if _, err := s.DeactivateOrg(ctx, "old", state.OpLogin, false, who); err != nil {
		t.Fatal(err)
	}
	// The cutoff falls midway in a gap between the two records, so the clock's progress while the loop starts
	// cannot move either record across it.
	time.Sleep(200 * time.Millisecond)
	mid := time.Now().Add(-100 * time.Millisecond)
	if _, err := s.DeactivateOrg(ctx, "new", state.OpLogin, false, who); err != nil {
		t.Fatal(err)
	}
	lctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		s.PruneAuditLoop(lctx, time.Since(mid), slog.New(slog.NewTextHandler(io.Discard, nil)))
		close(done)
	}()
	deadline := time.Now().Add(10 * time.Second)
	for {
		left, err := s.Audit(ctx, "", 100)
		if err != nil {
			t.Fatal(err)
		}
		if len(left) == 1 && strings.HasSuffix(left[0].Key, "/new") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("audit log still holds %+v", left)
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	<-done
}
