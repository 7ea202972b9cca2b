package bench

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"
)

// ErrCorrectness is returned (wrapped) when a run saw a wrong answer: an allow of a deactivated subject, a deny
// of an active one, a check that failed, or a confirmed write that a node had not applied.
var ErrCorrectness = errors.New("correctness check failed")

// CheckConfig configures the check benchmark. Zero values take the defaults in brackets.
type CheckConfig struct {
	// Deployment is the deact under test, given by address; nil starts one as child processes: the local
	// cluster with Local, else one deactd. Started deployments keep their data and logs in Dir and are stopped
	// at the end.
	Deployment *Deployment
	Local      bool
	Dir        string // required when a deployment is started

	// Servers says where the "null" baseline runs: ServersProcess (a child process of its own, as deact) or
	// ServersInProcess (in this process; only with a Deployment given by address or Local) [process]. A deact
	// that deactbench starts always runs in child processes.
	Servers string
	// Deactd is the deactd binary started for deact; empty builds ./cmd/deactd into Dir.
	Deactd string
	// NullServerCmd is the executable process mode runs with the null-server subcommand (RunNullServer)
	// [os.Executable(): deactbench itself].
	NullServerCmd string
	// Pin (Linux) pins the load generator to one CPU and the server processes (one deactd, the null server)
	// to another, each started with GOMAXPROCS=1, so that neither competes with the other for a core.
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
		c.Servers = ServersProcess
	}
	if c.Servers != ServersProcess && c.Servers != ServersInProcess {
		return fmt.Errorf("servers %q: want %s or %s", c.Servers, ServersProcess, ServersInProcess)
	}
	if c.Servers == ServersInProcess && c.Deployment == nil && !c.Local {
		// The baseline would share the load generator's process while deact has one of its own: its ratio
		// would compare unlike things.
		return fmt.Errorf("servers %s: deactbench starts deact as a child process; use %s, or give deact by address", ServersInProcess, ServersProcess)
	}
	if c.Deployment == nil && c.Dir == "" || c.Servers == ServersProcess && c.Baseline == "null" && c.Dir == "" {
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
