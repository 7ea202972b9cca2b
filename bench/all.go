package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"
)

// AllConfig configures a run of every benchmark. Zero values take the defaults in brackets.
type AllConfig struct {
	Out       string // report.json and the plots [bench-out]
	Dir       string // data of the deployments it starts [a new temporary directory, removed at the end]
	Quick     bool   // short runs: the whole takes about a minute on 2 cores
	Transport string // of the check runs [grpc]
	Records   int    // sync records [100000]
	Deactd    string // deactd binary of every deact it starts [built from ./cmd/deactd, once]
	// Servers is where the check runs' null baseline runs: ServersProcess [process]; ServersInProcess is
	// refused (CheckConfig.Servers), deact running in a child process.
	Servers  string
	Pin      bool // pin the load generator and the servers to a CPU each (CheckConfig.Pin)
	Progress io.Writer

	// tiny shrinks every run to a fraction of a second, for the package's own test of RunAll.
	tiny bool
}

// openShare is the open loop's rate as a share of the lowest closed-loop throughput: a moderate load, below
// saturation even when the machine's other load changes during the run.
const openShare = 0.3

func openRate(closed *CheckReport) float64 {
	if closed == nil || len(closed.Runs) == 0 {
		return 0
	}
	lowest := closed.Runs[0].Throughput
	for _, r := range closed.Runs {
		lowest = min(lowest, r.Throughput)
	}
	return openShare * lowest
}

// RunAll runs, in order: check (closed loop against one deactd, alternating with the null baseline for 3
// rounds; each in a child process), check again in an open loop at 30% of the lowest closed-loop throughput, propagation and admin writes
// on the local cluster, and sync. Each benchmark's failure is recorded in the report and the next one still
// runs. It writes report.json and the plots into Out (also when something failed) and returns every failure.
func RunAll(ctx context.Context, cfg AllConfig, rep *Report) error {
	if cfg.Out == "" {
		cfg.Out = "bench-out"
	}
	if err := os.MkdirAll(cfg.Out, 0o755); err != nil {
		return err
	}
	if cfg.Dir == "" {
		dir, err := os.MkdirTemp("", "deactbench-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		cfg.Dir = dir
	}
	sub := func(name string) string {
		d := filepath.Join(cfg.Dir, name)
		_ = os.MkdirAll(d, 0o755)
		return d
	}
	run, warm, iters, adminDur := 10*time.Second, time.Second, 500, 20*time.Second
	settle, orgs, settleSync := 3*time.Second, 1000, time.Duration(0)
	if cfg.Quick {
		run, warm, iters, adminDur = 3*time.Second, 500*time.Millisecond, 200, 5*time.Second
	}
	if cfg.tiny {
		run, warm, iters, adminDur, settle = 300*time.Millisecond, 100*time.Millisecond, 4, 300*time.Millisecond, 200*time.Millisecond
		orgs, settleSync = 100, 100*time.Millisecond
	}
	var errs []error
	fail := func(mode string, err error) {
		if err != nil {
			rep.Fail(mode, err)
			errs = append(errs, fmt.Errorf("%s: %w", mode, err))
		}
	}
	note := func(format string, args ...any) {
		if cfg.Progress != nil {
			fmt.Fprintf(cfg.Progress, format+"\n", args...)
		}
	}

	if cfg.Deactd == "" {
		bin, took, err := buildDeactd(ctx, cfg.Dir, cfg.Progress, "all")
		if err != nil {
			return err
		}
		cfg.Deactd = bin
		note("built deactd in %.1fs, for check, the local cluster and sync", took.Seconds())
	}
	mode := "servers in child processes"
	if cfg.Servers == ServersInProcess {
		mode = "the null server in-process"
	}
	if cfg.Pin {
		mode += ", pinned"
	}
	note("== check, closed loop, null baseline and deact alternately, 3 rounds, %s", mode)
	closed, err := RunCheck(ctx, CheckConfig{Dir: sub("check-closed"), Transport: cfg.Transport, Baseline: "null", Rounds: 3,
		Servers: cfg.Servers, Deactd: cfg.Deactd, Pin: cfg.Pin,
		Orgs: orgs, Deactivated: 0.1, Duration: run, Warmup: warm, Settle: settle, Progress: cfg.Progress})
	if closed != nil {
		rep.Check = append(rep.Check, closed)
	}
	fail("check (closed loop)", err)

	if rate := openRate(closed); rate > 0 {
		note("== check, open loop at %.0f/s (%.0f%% of the lowest closed-loop throughput), null baseline", rate, 100*openShare)
		open, err := RunCheck(ctx, CheckConfig{Dir: sub("check-open"), Transport: cfg.Transport, Baseline: "null",
			Servers: cfg.Servers, Deactd: cfg.Deactd, Pin: cfg.Pin,
			Orgs: orgs, Deactivated: 0.1, Rate: rate, Workers: 256, Duration: run, Warmup: warm, Settle: settle, Progress: cfg.Progress})
		if open != nil {
			rep.Check = append(rep.Check, open)
		}
		fail("check (open loop)", err)
	}

	if ctx.Err() == nil {
		note("== local cluster: propagation, then admin writes")
		dep, err := StartLocal(ctx, sub("local"), cfg.Deactd, cfg.Progress)
		fail("local cluster", err)
		if err == nil {
			p, err := RunPropagation(ctx, PropagationConfig{Deployment: dep, Iterations: iters, Progress: cfg.Progress})
			rep.Propagation = p
			fail("propagation", err)
			a, err := RunAdmin(ctx, AdminConfig{Deployment: dep, Concurrency: 64, Duration: adminDur, Progress: cfg.Progress})
			rep.Admin = a
			fail("admin", err)
			dep.Close()
		}
	}

	if ctx.Err() == nil {
		note("== sync")
		s, err := RunSync(ctx, SyncConfig{Dir: sub("sync"), Records: cfg.Records, Deactd: cfg.Deactd, Settle: settleSync, Progress: cfg.Progress})
		rep.Sync = s
		fail("sync", err)
	}
	fail("plots", rep.WritePlots(cfg.Out))
	fail("report", rep.WriteJSON(filepath.Join(cfg.Out, "report.json")))
	return errors.Join(errs...)
}
