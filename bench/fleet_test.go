package bench

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"
	"time"
)

// fleetTestConfig runs the fleet mode with this test binary as deactd (admin node, pausable gateways) and as
// deactbench (the etcd-cluster child).
func fleetTestConfig(t *testing.T, gateways, changes int) FleetConfig {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return FleetConfig{
		Gateways: []int{gateways}, Changes: changes, Concurrency: 2, Dir: t.TempDir(),
		Deactd: self, DeactdEnv: []string{fakeDeactdEnv + "=1"}, MaxDuration: 40 * time.Second,
		// Not a timed test: under -race on a loaded machine a write to 50 gateways can take seconds, and the
		// check is that every gateway confirms it, not how fast.
		ConfirmTimeout: 30 * time.Second,
	}
}

func fleetContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// TestFleet is make test's regression check of the fleet mode: 50 real replicas with node reporting on a
// 3-member etcd, a short churn through a deactd admin child: every write is confirmed by all 50 gateways and
// applied by every replica, and the run measured etcd's writes.
func TestFleet(t *testing.T) {
	t.Parallel()
	cfg := fleetTestConfig(t, 50, 20)
	cfg.NoPause = true
	var progress bytes.Buffer
	cfg.Progress = &progress
	rep, err := RunFleet(fleetContext(t), cfg)
	if err != nil {
		t.Fatalf("%v\n%s%s", err, progress.String(), fleetExamples(rep))
	}
	if len(rep.Runs) != 1 {
		t.Fatalf("%d runs, want 1", len(rep.Runs))
	}
	r := rep.Runs[0]
	if r.Gateways != 50 || r.InProcess != 50 || r.Children != 0 || r.Paused != nil {
		t.Errorf("fleet %d = %d in process + %d children, paused %+v: want 50 in process, none paused", r.Gateways, r.InProcess, r.Children, r.Paused)
	}
	if r.Changes != 20 || r.Confirmed != 20 || r.Unconfirmed != 0 || r.Failed != 0 {
		t.Errorf("%d changes, %d confirmed by all 50, %d unconfirmed, %d failed: want 20, 20, 0, 0 (%q)", r.Changes, r.Confirmed, r.Unconfirmed, r.Failed, r.Examples)
	}
	if r.Answer.Count != 20 || r.AppliedAll.Count != 20 {
		t.Errorf("answer %d samples, applied-on-all %d: want 20 each", r.Answer.Count, r.AppliedAll.Count)
	}
	// One report per gateway per change at most: at least the org record, at most it and the audit record plus
	// a report per gateway per change (coalescing may write fewer), plus heartbeats.
	if r.WritesPerChange < 1 || r.EtcdPerChange["Txn"] < 1 || r.DBSizeMiB <= 0 {
		t.Errorf("etcd writes per change %.1f, Txn %.1f, db %.1f MiB: want the counters read", r.WritesPerChange, r.EtcdPerChange["Txn"], r.DBSizeMiB)
	}
	var sum bytes.Buffer
	(&Report{Fleet: rep}).WriteSummary(&sum)
	if !strings.Contains(sum.String(), "   50 ") || !strings.Contains(sum.String(), "20/20") {
		t.Errorf("summary lacks the row of 50 gateways, 20/20 confirmed:\n%s", sum.String())
	}
}

// TestFleetPaused: one of 10 gateways is a child process the run SIGSTOPs; every write while it is paused is
// answered (at its confirmation bound) with confirmed/total = 9/10, and /v1/nodes shows that one, and only it, stale.
func TestFleetPaused(t *testing.T) {
	t.Parallel()
	cfg := fleetTestConfig(t, 10, 4)
	// The bound is long enough for the 9 live gateways under -race, short enough for 3 writes within the
	// paused gateway's lease (FleetConfig.PausedTTL).
	cfg.PausedChanges, cfg.PausedBound = 3, 3*time.Second
	rep, err := RunFleet(fleetContext(t), cfg)
	if err != nil {
		t.Fatalf("%v%s", err, fleetExamples(rep))
	}
	r := rep.Runs[0]
	p := r.Paused
	if r.Children != 1 || p == nil {
		t.Fatalf("children %d, paused %+v: want one paused gateway", r.Children, p)
	}
	if p.Paused != 1 || p.Changes != 3 || p.Short != 3 || !p.StaleOK || len(p.Stale) != 1 {
		t.Errorf("paused case %+v: want 3 answers of 9/10 and exactly the paused gateway stale", p)
	}
	if _, ok := p.Stale["pausable-00"]; !ok {
		t.Errorf("stale %v: want pausable-00", p.Stale)
	}
	if r.Confirmed != 4 {
		t.Errorf("%d of 4 churn writes confirmed by all 10 before the pause", r.Confirmed)
	}
}

func fleetExamples(rep *FleetReport) string {
	var b strings.Builder
	if rep != nil {
		for _, r := range rep.Runs {
			for _, e := range r.Examples {
				b.WriteString("\n  " + e)
			}
		}
	}
	return b.String()
}
