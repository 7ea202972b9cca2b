package bench

import (
	"context"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/deact/deact/admin/adminapi"
)

// RunCheck runs the check benchmark: it registers the model's state, then measures the baseline (if any), deact,
// and the baseline again with the same load, checking every answer deact gives. It returns the report, and an
// error wrapping ErrCorrectness when an answer was wrong (the report is complete then too).
func RunCheck(ctx context.Context, cfg CheckConfig) (*CheckReport, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	var childEnv []string
	if cfg.Pin {
		childEnv = []string{"GOMAXPROCS=1"} // each server gets one CPU
	}
	servers := "given"
	dep := cfg.Deployment
	if dep == nil {
		var err error
		servers = cfg.Servers
		if cfg.Local {
			servers = ServersProcess
			dep, err = StartLocal(ctx, cfg.Dir, cfg.Deactd, cfg.Progress)
		} else {
			dep, err = StartDaemonProcess(ctx, cfg.Dir, cfg.Deactd, childEnv, cfg.Progress)
		}
		if err != nil {
			return nil, fmt.Errorf("start deact: %w", err)
		}
		defer dep.Close()
	}
	if cfg.Pin && dep.PID == 0 {
		return nil, errors.New("pinning needs deact in a child process (not given by address, not the local cluster)")
	}
	addrs := dep.AuthzAddrs
	if cfg.Transport == TransportHTTP {
		addrs = dep.HTTPAddrs
	}
	if len(addrs) == 0 {
		return nil, fmt.Errorf("no %s check address for deact", cfg.Transport)
	}

	m := newModel(cfg.RunID, cfg.Orgs, cfg.Apps, cfg.Deactivated, cfg.Seed)
	pool := buildPool(m, cfg.Mix, cfg.Pool, cfg.Seed)
	rep := &CheckReport{
		Deployment: dep.Desc, Servers: servers, Transport: cfg.Transport, Loop: "closed", Workers: cfg.Workers, Conns: cfg.Conns,
		Rate: cfg.Rate, DurationS: cfg.Duration.Seconds(), RunID: cfg.RunID, Orgs: cfg.Orgs, Apps: cfg.Apps, Mix: cfg.Mix.String(),
	}
	if cfg.Rate > 0 {
		rep.Loop = "open"
	}
	rep.DeactivatedOrgs, rep.DeactivatedApps = m.counts()

	var ac *adminapi.Client
	if dep.AdminURL != "" {
		var err error
		if ac, err = newAdminClient(dep.AdminURL, dep.AdminToken, 4, 2*time.Second); err != nil {
			return nil, err
		}
		defer ac.Close()
	}
	if cfg.Churn > 0 && ac == nil {
		return nil, errors.New("churn needs the admin API (admin URL and token)")
	}

	deact, err := newSender(cfg.Transport, addrs, cfg.Conns)
	if err != nil {
		return nil, err
	}
	defer deact.close()
	if !cfg.NoRegister {
		if ac == nil {
			return nil, errors.New("registering the state needs the admin API (admin URL and token); or say it is registered already")
		}
		if _, err := register(ctx, ac, m); err != nil {
			return nil, fmt.Errorf("register state: %w", err)
		}
		if err := waitConsistent(ctx, deact, m, pool); err != nil {
			return nil, err
		}
	}

	var base sender
	var baseName string
	var basePID int
	switch cfg.Baseline {
	case "":
	case "null":
		var grpcAddr, httpAddr string
		if cfg.Servers == ServersProcess {
			np, err := startNullProcess(ctx, cfg.NullServerCmd, filepath.Join(cfg.Dir, "null-server.log"), childEnv)
			if err != nil {
				return nil, fmt.Errorf("start null server: %w", err)
			}
			defer np.stop()
			grpcAddr, httpAddr, basePID = np.grpcAddr, np.httpAddr, np.pid()
			rep.Baseline = fmt.Sprintf("null ext_authz server, child process (pid %d)", basePID)
		} else {
			ns, err := StartNullServer()
			if err != nil {
				return nil, err
			}
			defer ns.Close()
			grpcAddr, httpAddr = ns.GRPCAddr, ns.HTTPAddr
			rep.Baseline = "null ext_authz server in this process"
		}
		addr := grpcAddr
		if cfg.Transport == TransportHTTP {
			addr = httpAddr
		}
		if base, err = newSender(cfg.Transport, []string{addr}, cfg.Conns); err != nil {
			return nil, err
		}
		baseName = "null"
	default:
		if base, err = newSender(cfg.Transport, []string{cfg.Baseline}, cfg.Conns); err != nil {
			return nil, fmt.Errorf("baseline: %w", err)
		}
		baseName = "baseline"
		rep.Baseline = "check server at " + cfg.Baseline
	}
	if base != nil {
		defer base.close()
	}
	// the server processes this run started, whose CPU is not "other"
	children := slices.Clone(dep.Children)
	if basePID > 0 {
		children = append(children, basePID)
	}
	if cfg.Pin {
		ps := []pinned{{"deact", dep.PID}}
		if basePID > 0 {
			ps = append(ps, pinned{"null", basePID})
		}
		desc, undo, err := pinCPUs(ps)
		if err != nil {
			return nil, err
		}
		defer undo()
		rep.Pinning = desc
		if cfg.Progress != nil {
			fmt.Fprintf(cfg.Progress, "pinned: %s\n", desc)
		}
	}
	pids := map[sender]int{deact: dep.PID}
	if base != nil {
		pids[base] = basePID
	}

	warmed := map[sender]bool{}
	run := func(name string, s sender, verify bool, churn float64) error {
		var mm *model
		if verify {
			mm = m
		}
		warm := cfg.Warmup
		if !warmed[s] {
			warm, warmed[s] = cfg.Settle, true
		}
		r, err := runLoad(ctx, loadRun{name: name, cfg: &cfg, sender: s, pool: pool, model: mm, churn: churn, admin: ac, warmup: warm,
			serverPID: pids[s], children: children})
		rep.Runs = append(rep.Runs, r)
		return err
	}
	if base == nil {
		if err := run("deact", deact, true, cfg.Churn); err != nil {
			return rep, err
		}
		return rep, rep.err()
	}
	// Baseline and deact alternate, the baseline first and last: base, deact, base, ..., deact, base.
	name := func(what string, i int) string {
		if cfg.Rounds == 1 {
			return what + map[bool]string{true: "-before", false: "-after"}[i == 0]
		}
		return fmt.Sprintf("%s-%d", what, i+1)
	}
	for i := range cfg.Rounds {
		if err := run(name(baseName, i), base, false, 0); err != nil {
			return rep, err
		}
		dn := "deact"
		if cfg.Rounds > 1 {
			dn = fmt.Sprintf("deact-%d", i+1)
		}
		if err := run(dn, deact, true, cfg.Churn); err != nil {
			return rep, err
		}
	}
	if err := run(name(baseName, cfg.Rounds), base, false, 0); err != nil {
		return rep, err
	}
	rep.Ratio = ratio(rep.Runs)
	return rep, rep.err()
}

// waitConsistent waits until every address of s answers like the model (one deactivated and one active request
// of the pool, if it has them): the registration has reached every node. Bounded by 30 s.
func waitConsistent(ctx context.Context, s sender, m *model, pool []*template) error {
	var probes []*template
	var haveDeny, haveAllow bool
	for _, t := range pool {
		deny, _ := m.expect(t, time.Now())
		if deny && !haveDeny || !deny && !haveAllow {
			probes = append(probes, t)
			haveDeny, haveAllow = haveDeny || deny, haveAllow || !deny
		}
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for conn := range s.conns() {
		for _, t := range probes {
			want, _ := m.expect(t, time.Now())
			for {
				got, err := s.send(ctx, conn, t)
				if err == nil && got == want {
					break
				}
				select {
				case <-ctx.Done():
					return fmt.Errorf("%s never answered %s for %s (last: deny=%v, %v): %w", s.target(conn), verdict(want), t.kind, got, err, ctx.Err())
				case <-time.After(20 * time.Millisecond):
				}
			}
		}
	}
	return nil
}

func verdict(deny bool) string {
	if deny {
		return "deny"
	}
	return "allow"
}

// loadRun is one measured run with its warm-up.
type loadRun struct {
	name   string
	cfg    *CheckConfig
	sender sender
	pool   []*template
	model  *model // nil: answers are not checked (baselines)
	churn  float64
	admin  *adminapi.Client
	warmup time.Duration
	// serverPID is the measured server's process when it is a child (0: this process or unknown); children
	// are every server process the run started.
	serverPID int
	children  []int
}

// runStats counts answers; shared by a run's workers.
type runStats struct {
	allowed, denied, errors  atomic.Int64
	wrongAllows, wrongDenies atomic.Int64
	ambiguous                atomic.Int64
	perKind                  [numKinds][2]atomic.Int64
	mu                       sync.Mutex
	examples                 []string
}

const maxExamples = 10

// line is the progress line's summary of the answers so far.
func (st *runStats) line() string {
	c := st.counts()
	denyPct := 0.0
	if c.Requests > 0 {
		denyPct = 100 * float64(c.Denied) / float64(c.Requests)
	}
	return fmt.Sprintf("denied %4.1f%%  wrong %d  errors %d", denyPct, c.WrongAllows+c.WrongDenies, c.Errors)
}

func (st *runStats) example(format string, args ...any) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if len(st.examples) < maxExamples {
		st.examples = append(st.examples, fmt.Sprintf(format, args...))
	}
}

func (st *runStats) counts() Counts {
	c := Counts{Allowed: st.allowed.Load(), Denied: st.denied.Load(), Errors: st.errors.Load(),
		WrongAllows: st.wrongAllows.Load(), WrongDenies: st.wrongDenies.Load(), Ambiguous: st.ambiguous.Load()}
	c.Requests = c.Allowed + c.Denied + c.Errors
	return c
}

// exec returns the execFunc of a run that sends drawn requests and checks the answers into st.
func (lr *loadRun) exec(st *runStats, workers int) execFunc {
	rngs := make([]*mrand.Rand, workers)
	for w := range rngs {
		rngs[w] = mrand.New(mrand.NewPCG(lr.cfg.Seed, uint64(w)))
	}
	conns := lr.sender.conns()
	return func(ctx context.Context, w int, _ time.Time) (sent, done time.Time) {
		t := lr.pool[rngs[w].IntN(len(lr.pool))]
		conn := w % conns
		sent = time.Now()
		deny, err := lr.sender.send(ctx, conn, t)
		done = time.Now()
		if err != nil {
			if ctx.Err() == nil {
				st.errors.Add(1)
				st.example("%s %s: %v", lr.sender.target(conn), t.kind, err)
			}
			return sent, done
		}
		if deny {
			st.denied.Add(1)
			st.perKind[t.kind][1].Add(1)
		} else {
			st.allowed.Add(1)
		}
		st.perKind[t.kind][0].Add(1)
		if lr.model == nil {
			return sent, done
		}
		want, amb := lr.model.expect(t, sent)
		switch {
		case amb:
			st.ambiguous.Add(1)
		case want && !deny:
			st.wrongAllows.Add(1)
			st.example("%s allowed %s of deactivated org %s app %s", lr.sender.target(conn), t.kind, lr.model.orgs[t.org].id, lr.appName(t))
		case !want && deny:
			st.wrongDenies.Add(1)
			st.example("%s denied %s of active org %s app %s", lr.sender.target(conn), t.kind, lr.model.orgs[t.org].id, lr.appName(t))
		}
		return sent, done
	}
}

func (lr *loadRun) appName(t *template) string {
	if t.app < 0 {
		return "-"
	}
	return lr.model.apps[t.app].id
}

// runLoad runs the warm-up and the measured run.
func runLoad(ctx context.Context, lr loadRun) (RunResult, error) {
	cfg := lr.cfg
	res := RunResult{Name: lr.name, Target: lr.sender.target(0), Verified: lr.model != nil}
	if lr.warmup > 0 {
		var st runStats
		wctx, cancel := context.WithTimeout(ctx, lr.warmup+30*time.Second)
		schedule{Workers: cfg.Workers, Duration: lr.warmup}.run(wctx, lr.exec(&st, cfg.Workers), nil)
		cancel()
		res.Warmup = st.counts()
	}
	var st runStats
	sched := schedule{Rate: cfg.Rate, Workers: cfg.Workers, Duration: cfg.Duration, MaxRequests: cfg.MaxRequests}
	rctx, cancel := context.WithTimeout(ctx, cfg.Duration+30*time.Second)
	defer cancel()
	live := newLiveStatus()
	stop := make(chan struct{})
	var bg sync.WaitGroup
	if cfg.Progress != nil {
		bg.Add(1)
		go func() { defer bg.Done(); progress(cfg.Progress, "check "+lr.name, cfg.Duration, live, st.line, stop) }()
	}
	var churn *ChurnResult
	if lr.churn > 0 && lr.model != nil {
		churn = &ChurnResult{}
		bg.Add(1)
		go func() { defer bg.Done(); lr.runChurn(rctx, churn, stop) }()
	}
	runtime.GC() // every run starts without the garbage of the one before
	childCPU := func() (sum, server time.Duration) {
		for _, pid := range lr.children {
			c := max(procCPU(pid), 0)
			sum += c
			if pid == lr.serverPID {
				server = c
			}
		}
		return sum, server
	}
	cpu0, busy0 := processCPU(), machineBusy()
	kids0, srv0 := childCPU()
	out := sched.run(rctx, lr.exec(&st, cfg.Workers), live)
	cpu, busy := processCPU()-cpu0, machineBusy()-busy0
	kids1, srv1 := childCPU()
	kids, srv := kids1-kids0, srv1-srv0
	close(stop)
	bg.Wait()
	if ctx.Err() != nil {
		return res, ctx.Err()
	}
	res.Counts = st.counts()
	res.Started = out.Start
	res.ElapsedS = out.Elapsed.Seconds()
	if out.Elapsed > 0 {
		res.Throughput = float64(out.Completed) / out.Elapsed.Seconds()
	}
	if out.Completed > 0 {
		res.CPUPerReqUs = float64(cpu.Microseconds()) / float64(out.Completed)
	}
	if lr.serverPID > 0 && out.Completed > 0 {
		res.ServerCPUPerReqUs = float64(srv.Microseconds()) / float64(out.Completed)
	}
	res.OtherCores = -1
	if out.Elapsed > 0 {
		res.Cores = cpu.Seconds() / out.Elapsed.Seconds()
		if lr.serverPID > 0 {
			res.ServerCores = srv.Seconds() / out.Elapsed.Seconds()
		}
		if busy0 >= 0 {
			res.OtherCores = max(busy-cpu-kids, 0).Seconds() / out.Elapsed.Seconds()
		}
	}
	res.Latency = percentilesOf(out.Corrected)
	if cfg.Rate > 0 {
		p := percentilesOf(out.Service)
		res.Service = &p
	}
	res.Timeline = out.Timeline
	res.ByKind = map[string]KindCounts{}
	for k := range numKinds {
		if n := st.perKind[k][0].Load(); n > 0 {
			res.ByKind[k.String()] = KindCounts{Requests: n, Denied: st.perKind[k][1].Load()}
		}
	}
	res.Examples = st.examples
	res.Churn = churn
	return res, nil
}
