package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/deact/deact/admin/adminapi"
)

// ErrCorrectness is returned (wrapped) when a run saw a wrong answer: an allow of a deactivated subject, a deny
// of an active one, a check that failed, or a confirmed write that a node had not applied.
var ErrCorrectness = errors.New("correctness check failed")

// CheckConfig configures the check benchmark. Zero values take the defaults in brackets.
type CheckConfig struct {
	// Deployment is the deact under test, given by address; nil starts one: the local cluster with Local, else
	// one in-process deactd. Started deployments keep their data and logs in Dir and are stopped at the end.
	Deployment *Deployment
	Local      bool
	Dir        string // required when a deployment is started

	// Servers says where started servers run (deact when Deployment is nil, and the "null" baseline):
	// ServersProcess (each in a child process of its own) or ServersInProcess (in this process) [inprocess].
	// The local cluster (Local) always runs in-process.
	Servers string
	// Deactd is the deactd binary process mode starts; empty builds ./cmd/deactd into Dir.
	Deactd string
	// NullServerCmd is the executable process mode runs with the null-server subcommand (RunNullServer)
	// [os.Executable(): deactbench itself].
	NullServerCmd string
	// Pin (process mode, Linux) pins the load generator to one CPU and the server processes to another, each
	// started with GOMAXPROCS=1, so that neither competes with the other for a core.
	Pin bool

	Transport string // TransportGRPC or TransportHTTP [grpc]
	// Baseline is "" (none), "null" (a NullServer started in this process) or the address of another check
	// server; it is measured with the same load right before and right after deact.
	Baseline string
	// Rounds of baseline and deact runs: base, deact, base for 1; base, deact, base, deact, base for 2 [1].
	// The machine's load drifts; more, shorter rounds make the median ratio steadier.
	Rounds int

	Orgs        int     // orgs registered before the run [1000]
	Apps        int     // apps (one project each, one client ID each), app j in org j mod Orgs [Orgs]
	Deactivated float64 // share of orgs, and of apps of active orgs, deactivated (0: none; the command's default is 0.1)
	Mix         Mix     // request mix [DefaultMix]
	Pool        int     // distinct prepared requests [min(16384, 4·(Orgs+Apps))]
	// NoRegister skips registering the state: the deployment already holds it (same RunID and Seed). The
	// answers are still checked against the model.
	NoRegister bool
	RunID      string // prefix of every ID [random]
	Seed       uint64 // which subjects are deactivated and which requests are drawn [1]

	Workers  int           // closed loop: concurrent requests; open loop: most requests in flight [64]
	Conns    int           // gRPC connections, or HTTP keep-alive connections [grpc 4, http Workers]
	Rate     float64       // requests per second; 0 runs a closed loop
	Duration time.Duration // of each measured run [10s]
	Warmup   time.Duration // closed-loop warm-up before each run, checked but not measured [1s]
	// Settle replaces Warmup before the first run against each server: fresh connections and a fresh heap take
	// a few seconds to reach their steady state (without it the first run is ~15% slower) [3s, at least Warmup].
	Settle      time.Duration
	MaxRequests int64 // bound on each measured run's requests; 0 for none

	// Churn flips this many orgs per second through the admin API during the deact run (deactivate, or
	// reactivate, waiting for the confirmation each time). Answers about an org are not judged from the start
	// of a write until its confirmation by every node; outside those windows a wrong answer is an error.
	Churn float64

	Progress io.Writer // a line per second; nil for none
}

// CheckReport is the outcome of a check benchmark.
type CheckReport struct {
	Deployment      string      `json:"deployment"`
	Servers         string      `json:"servers"`            // "process", "inprocess", or "given" (by address)
	Baseline        string      `json:"baseline,omitempty"` // what the baseline was
	Pinning         string      `json:"pinning,omitempty"`  // what --pin pinned where
	Transport       string      `json:"transport"`
	Loop            string      `json:"loop"` // "closed" or "open"
	Workers         int         `json:"workers"`
	Conns           int         `json:"conns"`
	Rate            float64     `json:"rate,omitempty"`
	DurationS       float64     `json:"durationS"`
	RunID           string      `json:"runId"`
	Orgs            int         `json:"orgs"`
	Apps            int         `json:"apps"`
	DeactivatedOrgs int         `json:"deactivatedOrgs"`
	DeactivatedApps int         `json:"deactivatedApps"`
	Mix             string      `json:"mix"`
	Runs            []RunResult `json:"runs"`
	Ratio           *Ratio      `json:"ratio,omitempty"`
}

// Counts are a run's answers. A wrong allow is an allow of a request the model expects denied.
type Counts struct {
	Requests    int64 `json:"requests"`
	Allowed     int64 `json:"allowed"`
	Denied      int64 `json:"denied"`
	Errors      int64 `json:"errors"`
	WrongAllows int64 `json:"wrongAllows"`
	WrongDenies int64 `json:"wrongDenies"`
	// Ambiguous answers were about a subject whose write was in flight (churn): not judged.
	Ambiguous int64 `json:"ambiguous"`
}

// Failures counts what makes a run fail.
func (c Counts) Failures() int64 { return c.Errors + c.WrongAllows + c.WrongDenies }

// RunResult is one measured run against one server.
type RunResult struct {
	Name     string `json:"name"` // "deact", "null-before", "null-after", "baseline-before", ...
	Target   string `json:"target"`
	Verified bool   `json:"verified"` // answers compared with the model
	Counts
	Warmup     Counts    `json:"warmup"`
	Started    time.Time `json:"started"` // of the measured run, after its warm-up
	ElapsedS   float64   `json:"elapsedS"`
	Throughput float64   `json:"throughput"` // answers per second
	// CPUPerReqUs is this process's CPU time (user + system, every thread) per answer: with in-process servers
	// it covers the load generator and the server, so differences between runs are the servers' differences.
	CPUPerReqUs float64 `json:"cpuPerReqUs"`
	// ServerCPUPerReqUs is the measured server's own CPU time per answer, when it is a child process
	// (/proc/PID/stat, user + system, every thread; 0 otherwise): the most robust comparison of deact with the
	// null server on a shared machine. ServerCores is that process's CPU during the run, in cores.
	ServerCPUPerReqUs float64 `json:"serverCpuPerReqUs,omitempty"`
	ServerCores       float64 `json:"serverCores,omitempty"`
	// Cores is the CPU this process used during the run, in cores; OtherCores what the rest of the machine
	// used besides this process and the server processes it started (from /proc/stat; -1 where unknown).
	// Other load on a shared machine shows up here.
	Cores      float64               `json:"cores"`
	OtherCores float64               `json:"otherCores"`
	Latency    Percentiles           `json:"latency"` // open loop: from the intended send time; closed loop: service time
	Service    *Percentiles          `json:"serviceLatency,omitempty"`
	ByKind     map[string]KindCounts `json:"byKind"`
	Timeline   []Window              `json:"timeline"`
	Examples   []string              `json:"examples,omitempty"` // the first wrong answers and errors
	Churn      *ChurnResult          `json:"churn,omitempty"`
}

// KindCounts are the answers to one kind of request.
type KindCounts struct {
	Requests int64 `json:"requests"`
	Denied   int64 `json:"denied"`
}

// ChurnResult is what the churner did during a run.
type ChurnResult struct {
	Flips       int         `json:"flips"`
	Unconfirmed int         `json:"unconfirmed"` // writes not confirmed by every node: their org stays unjudged
	Failed      int         `json:"failed"`
	ConfirmWait Percentiles `json:"confirmWait"`
}

// Ratio compares deact with the baseline: each deact run with the mean of the baseline runs right before and
// after it; with several rounds, the median over the rounds.
type Ratio struct {
	Throughput float64   `json:"throughput"` // deact / baseline; the goal is ≥ 0.9
	PerRound   []float64 `json:"perRound"`   // throughput ratio of each round
	P50        float64   `json:"p50"`
	P99        float64   `json:"p99"`
	// Drift is the last baseline run's throughput / the first one's: far from 1 means the machine changed.
	Drift float64 `json:"drift"`
	// CPUPerReq is deact's CPU per answer / the baseline's, of this process (in-process servers: it includes
	// the load generator; process mode: the load generator alone).
	CPUPerReq float64 `json:"cpuPerReq"`
	// ServerCPUPerReq is the ratio of the server processes' own CPU per answer (process mode only).
	ServerCPUPerReq float64 `json:"serverCpuPerReq,omitempty"`
}

// GoalThroughputRatio is the throughput deact should keep relative to the null server.
const GoalThroughputRatio = 0.9

func (c *CheckConfig) setDefaults() error {
	if c.Transport == "" {
		c.Transport = TransportGRPC
	}
	if c.Transport != TransportGRPC && c.Transport != TransportHTTP {
		return fmt.Errorf("transport %q: want grpc or http", c.Transport)
	}
	if c.Orgs <= 0 {
		c.Orgs = 1000
	}
	if c.Apps < 0 {
		return errors.New("apps must be ≥ 0")
	}
	if c.Apps == 0 {
		c.Apps = c.Orgs
	}
	if c.Deactivated < 0 || c.Deactivated > 1 {
		return fmt.Errorf("deactivated share %v: want 0..1", c.Deactivated)
	}
	if c.Mix == (Mix{}) {
		c.Mix, _ = ParseMix(DefaultMix)
	}
	if c.Pool <= 0 {
		c.Pool = min(16384, 4*(c.Orgs+c.Apps))
	}
	if c.RunID == "" {
		c.RunID = newRunID()
	}
	if c.Seed == 0 {
		c.Seed = 1
	}
	if c.Workers <= 0 {
		c.Workers = 64
	}
	if c.Conns <= 0 {
		c.Conns = 4
		if c.Transport == TransportHTTP {
			c.Conns = c.Workers
		}
	}
	if c.Duration <= 0 {
		c.Duration = 10 * time.Second
	}
	if c.Rounds <= 0 {
		c.Rounds = 1
	}
	if c.Warmup < 0 {
		c.Warmup = 0
	} else if c.Warmup == 0 {
		c.Warmup = time.Second
	}
	if c.Settle == 0 {
		c.Settle = 3 * time.Second
	}
	c.Settle = max(c.Settle, c.Warmup)
	if c.Rate < 0 || c.Churn < 0 {
		return errors.New("rate and churn must be ≥ 0")
	}
	if c.Servers == "" {
		c.Servers = ServersInProcess
	}
	if c.Servers != ServersProcess && c.Servers != ServersInProcess {
		return fmt.Errorf("servers %q: want %s or %s", c.Servers, ServersProcess, ServersInProcess)
	}
	if c.Deployment == nil && c.Dir == "" || c.Servers == ServersProcess && c.Dir == "" {
		return errors.New("a started deployment or server process needs a directory (Dir)")
	}
	if c.Pin && c.Servers != ServersProcess {
		return errors.New("pinning needs the servers in processes of their own (servers process)")
	}
	return nil
}

func newRunID() string {
	var b [3]byte
	_, _ = rand.Read(b[:])
	return "b" + hex.EncodeToString(b[:])
}

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
		switch {
		case cfg.Local:
			servers = ServersInProcess
			dep, err = StartLocal(ctx, cfg.Dir)
		case cfg.Servers == ServersProcess:
			dep, err = StartDaemonProcess(ctx, cfg.Dir, cfg.Deactd, childEnv, cfg.Progress)
		default:
			dep, err = StartDaemon(ctx, cfg.Dir)
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
	var children []int // the server processes this run started, whose CPU is not "other"
	for _, pid := range []int{dep.PID, basePID} {
		if pid > 0 {
			children = append(children, pid)
		}
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

// err reports the runs' failures as one error wrapping ErrCorrectness.
func (r *CheckReport) err() error {
	var errs []error
	for _, run := range r.Runs {
		for _, c := range []struct {
			what string
			c    Counts
		}{{"", run.Counts}, {" (warm-up)", run.Warmup}} {
			if c.c.Failures() > 0 {
				errs = append(errs, fmt.Errorf("%w: %s%s: %d wrong allows, %d wrong denies, %d errors", ErrCorrectness, run.Name, c.what,
					c.c.WrongAllows, c.c.WrongDenies, c.c.Errors))
			}
		}
		if run.Churn != nil && run.Churn.Failed > 0 {
			errs = append(errs, fmt.Errorf("%s: %d churn writes failed", run.Name, run.Churn.Failed))
		}
	}
	return errors.Join(errs...)
}

// ratio compares each deact run with the mean of the baseline runs around it (runs alternate base, deact, ...,
// base) and reports the median over the rounds.
func ratio(runs []RunResult) *Ratio {
	div := func(a, b float64) float64 {
		if b == 0 {
			return 0
		}
		return a / b
	}
	var r Ratio
	var tput, p50, p99, cpu, srv []float64
	for i := 1; i+1 < len(runs); i += 2 {
		before, deact, after := runs[i-1], runs[i], runs[i+1]
		mean := func(f func(RunResult) float64) float64 { return (f(before) + f(after)) / 2 }
		tput = append(tput, div(deact.Throughput, mean(func(r RunResult) float64 { return r.Throughput })))
		p50 = append(p50, div(deact.Latency.P50Ms, mean(func(r RunResult) float64 { return r.Latency.P50Ms })))
		p99 = append(p99, div(deact.Latency.P99Ms, mean(func(r RunResult) float64 { return r.Latency.P99Ms })))
		cpu = append(cpu, div(deact.CPUPerReqUs, mean(func(r RunResult) float64 { return r.CPUPerReqUs })))
		if deact.ServerCPUPerReqUs > 0 && before.ServerCPUPerReqUs > 0 && after.ServerCPUPerReqUs > 0 {
			srv = append(srv, div(deact.ServerCPUPerReqUs, mean(func(r RunResult) float64 { return r.ServerCPUPerReqUs })))
		}
	}
	r.PerRound = tput
	r.Throughput, r.P50, r.P99, r.CPUPerReq, r.ServerCPUPerReq = median(tput), median(p50), median(p99), median(cpu), median(srv)
	if len(runs) > 0 {
		r.Drift = div(runs[len(runs)-1].Throughput, runs[0].Throughput)
	}
	return &r
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	v = slices.Clone(v)
	slices.Sort(v)
	if len(v)%2 == 1 {
		return v[len(v)/2]
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2
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

// processCPU is the CPU time this process has used (user and system), or 0 if the OS does not say.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// machineBusy is the CPU time every process on the machine has used (/proc/stat, all but idle and iowait), or
// -1 if it cannot be read. Its resolution is the kernel's clock tick (USER_HZ, 100 per second on Linux).
func machineBusy() time.Duration {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return -1
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 6 || f[0] != "cpu" {
		return -1
	}
	var busy int64
	for i, v := range f[1:] {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return -1
		}
		if i == 3 || i == 4 || i >= 8 { // idle, iowait; guest times are already in user
			continue
		}
		busy += n
	}
	return time.Duration(busy) * 10 * time.Millisecond
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

// runChurn flips random orgs through the admin API at lr.churn per second until stop, one write at a time.
func (lr *loadRun) runChurn(ctx context.Context, out *ChurnResult, stop <-chan struct{}) {
	rng := mrand.New(mrand.NewPCG(lr.cfg.Seed, 0x636875726e))
	waits := newSampleSet(0)
	defer func() { out.ConfirmWait = waits.percentiles() }()
	tick := time.NewTicker(time.Duration(float64(time.Second) / lr.churn))
	defer tick.Stop()
	for {
		select {
		case <-stop:
			return
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		i := rng.IntN(len(lr.model.orgs))
		if lr.model.orgs[i].state.Load().pending {
			continue // an earlier write to it was never confirmed: leave it alone
		}
		prev := lr.model.begin(i)
		a, err := setOrg(ctx, lr.admin, lr.model.orgs[i].id, !prev.deactivated)
		out.Flips++
		switch {
		case err != nil:
			if ctx.Err() == nil {
				out.Failed++
			}
		case !confirmedByAll(a.Confirmation):
			out.Unconfirmed++
		default:
			lr.model.commit(i, !prev.deactivated, time.Now())
			waits.add(time.Duration(a.Confirmation.WaitedMs * float64(time.Millisecond)))
		}
	}
}
