// Command deactbench measures deact: check throughput and latency against a null baseline, propagation of
// deactivations to every node, initial sync at scale and admin write throughput, checking every answer while it
// measures. The logic is in package bench; this command parses flags.
//
//	deactbench check [flags]        ext_authz (or HTTP check) load, closed or open loop, with a baseline
//	deactbench propagation [flags]  admin write → every node's Check flips
//	deactbench sync [flags]         fresh deactd over 10⁵–10⁶ records: time to ready, memory
//	deactbench admin [flags]        confirmed admin writes per second
//	deactbench fleet [flags]        N gateways with node reporting on a 3-member etcd: etcd cost and confirmation per change
//	deactbench all [--quick]        all of them, report and plots in --out
//
// deactbench drives deact from outside: every deact it starts runs as deactd child processes (built from
// ./cmd/deactd, or --deactd), started through the launcher that reads their --ready-file. check and all run the
// null baseline in a child process of its own too ("deactbench null-server"; --servers inprocess runs it in
// deactbench, for a deact given by address). --pin pins the load generator and the servers to a CPU each.
//
// Exit status: 0 when every answer was right, 1 when a run failed or saw a wrong answer, 2 for bad usage.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/deact/deact/bench"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

const usage = `usage: deactbench <check|propagation|sync|admin|fleet|all> [flags]; deactbench <mode> -h lists a mode's flags`

// common are the flags of every mode.
type common struct {
	out, jsonPath, dir string
	gomaxprocs         int
	quiet              bool
}

func (c *common) register(fs *flag.FlagSet) {
	fs.StringVar(&c.out, "out", "bench-out", "directory for report.json and the plots")
	fs.StringVar(&c.jsonPath, "o", "", "JSON report path (default: OUT/report.json)")
	fs.StringVar(&c.dir, "dir", "", "data and logs of what deactbench starts (default: a temporary directory, removed at exit)")
	fs.IntVar(&c.gomaxprocs, "gomaxprocs", 0, "set GOMAXPROCS of this process (load generator and in-process servers); 0 keeps the default")
	fs.BoolVar(&c.quiet, "quiet", false, "no progress lines on stderr")
}

// target are the flags naming a deployment under test.
type target struct {
	authz, httpCheck, adminURL, adminToken string
	etcd                                   string
	local                                  bool
}

func (t *target) register(fs *flag.FlagSet, local string) {
	fs.StringVar(&t.authz, "authz", "", "comma-separated ext_authz gRPC addresses of deact gateways (loopback only)")
	fs.StringVar(&t.httpCheck, "http-check", "", "comma-separated HTTP check addresses (host:port) of deact gateways")
	fs.StringVar(&t.adminURL, "admin-url", "", "deact admin API base URL, e.g. http://127.0.0.1:8080")
	fs.StringVar(&t.adminToken, "admin-token", os.Getenv("DEACT_ADMIN_TOKEN"), "admin token (default $DEACT_ADMIN_TOKEN)")
	if local != "" {
		fs.BoolVar(&t.local, "local", false, local)
	}
}

// deployment is the deployment given by address, or nil to start one.
func (t *target) deployment() *bench.Deployment {
	if t.authz == "" && t.httpCheck == "" && t.adminURL == "" {
		return nil
	}
	return &bench.Deployment{Desc: "given by address", AuthzAddrs: split(t.authz), HTTPAddrs: split(t.httpCheck),
		AdminURL: t.adminURL, AdminToken: t.adminToken, EtcdEndpoints: split(t.etcd)}
}

func split(s string) []string {
	var out []string
	for p := range strings.SplitSeq(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprintln(stderr, usage)
		return 2
	}
	if args[0] == bench.NullServerCommand { // internal: the null baseline as a child process of check
		return bench.RunNullServer(context.Background(), args[1:], os.Stdin, stdout, stderr)
	}
	if args[0] == bench.EtcdClusterCommand { // internal: the fleet's etcd as a child process
		return bench.RunEtcdCluster(context.Background(), args[1:], os.Stdin, stdout, stderr)
	}
	mode := args[0]
	fs := flag.NewFlagSet("deactbench "+mode, flag.ContinueOnError)
	fs.SetOutput(stderr)
	var c common
	c.register(fs)
	var t target
	var (
		check bench.CheckConfig
		prop  bench.PropagationConfig
		sync  bench.SyncConfig
		adm   bench.AdminConfig
		all   bench.AllConfig
		fleet bench.FleetConfig
		mix   string
		sizes string
		pause bool
	)
	switch mode {
	case "check":
		t.register(fs, "start the local cluster (3 etcd members in deactbench, 3 gateways and an admin node as deactd children) instead of one deactd")
		fs.StringVar(&check.Transport, "transport", bench.TransportGRPC, "grpc (Envoy ext_authz) or http (/check, as nginx auth_request)")
		fs.StringVar(&check.Baseline, "baseline", "", `"null" measures a null ext_authz server (see --servers) before and after deact; an address measures that server`)
		fs.StringVar(&check.Servers, "servers", bench.ServersProcess, "where the null server runs: process (a child process, as deact) or inprocess (in deactbench; only with deact given by address or --local)")
		fs.StringVar(&check.Deactd, "deactd", "", "deactd binary of the deact started (default: go build ./cmd/deactd)")
		fs.BoolVar(&check.Pin, "pin", false, "--servers process, Linux: pin the load generator to one CPU and the servers to another")
		fs.IntVar(&check.Orgs, "orgs", 1000, "orgs to register")
		fs.IntVar(&check.Apps, "apps", 0, "apps to register, one project and one client ID each (default: as many as orgs)")
		fs.Float64Var(&check.Deactivated, "deactivated", 0.1, "share of orgs, and of the apps of active orgs, deactivated")
		fs.StringVar(&mix, "mix", bench.DefaultMix, "request mix: weights of token, authorize, login, backup, restore, api")
		fs.IntVar(&check.Pool, "pool", 0, "distinct prepared requests (default min(16384, 4·(orgs+apps)))")
		fs.BoolVar(&check.NoRegister, "no-register", false, "the state is registered already (same --run-id and --seed)")
		fs.StringVar(&check.RunID, "run-id", "", "prefix of every ID (default random)")
		fs.Uint64Var(&check.Seed, "seed", 1, "seed of the deactivated subjects and the drawn requests")
		fs.IntVar(&check.Workers, "c", 64, "closed loop: concurrent requests; open loop: most requests in flight")
		fs.IntVar(&check.Conns, "conns", 0, "gRPC connections, or HTTP keep-alive connections (default grpc 4, http -c)")
		fs.Float64Var(&check.Rate, "rate", 0, "open loop at this many requests per second; 0 runs a closed loop")
		fs.DurationVar(&check.Duration, "duration", 10*time.Second, "length of each measured run")
		fs.DurationVar(&check.Warmup, "warmup", time.Second, "closed-loop warm-up before each run (answers checked, not measured); negative for none")
		fs.DurationVar(&check.Settle, "settle", 3*time.Second, "warm-up before the first run against each server (fresh connections and heap); negative for none")
		fs.Int64Var(&check.MaxRequests, "max-requests", 0, "bound on each run's requests (0: none)")
		fs.Float64Var(&check.Churn, "churn", 0, "flip this many orgs per second through the admin API during the deact run")
		fs.IntVar(&check.Rounds, "rounds", 1, "with a baseline: rounds of baseline and deact runs (base, deact, base, ..., base); the ratio is the median")
	case "propagation":
		t.register(fs, "")
		fs.StringVar(&prop.Deactd, "deactd", "", "deactd binary of the local cluster (default: go build ./cmd/deactd)")
		fs.StringVar(&t.etcd, "etcd-endpoints", "", "with a deployment given by address: its etcd client URLs (comma-separated, plain http or unix, no TLS), to measure etcd's own put → watch floor beside it")
		fs.IntVar(&prop.Iterations, "iterations", 200, "writes (deactivate and reactivate alternately)")
		fs.StringVar(&prop.API, "api", bench.APINative, "API of the writes: native (/v1/orgs/{id}/deactivate) or zitadel (/management/v1/orgs/me/_deactivate)")
		fs.DurationVar(&prop.PollInterval, "poll-interval", 200*time.Microsecond, "pause between a node's checks; negative for a tight loop (which, on 2 cores, takes the CPU etcd needs)")
		fs.DurationVar(&prop.MaxDuration, "max-duration", 2*time.Minute, "bound on the run")
	case "sync":
		fs.IntVar(&sync.Records, "records", 100_000, "etcd records to load (orgs, domains, apps, client IDs), e.g. 1000000")
		fs.StringVar(&sync.Deactd, "deactd", "", "deactd binary (default: go build ./cmd/deactd)")
	case "admin":
		t.register(fs, "")
		fs.StringVar(&adm.Deactd, "deactd", "", "deactd binary of the local cluster (default: go build ./cmd/deactd)")
		fs.IntVar(&adm.Concurrency, "c", 64, "concurrent writers")
		fs.DurationVar(&adm.Duration, "duration", 10*time.Second, "length of the run")
		fs.Int64Var(&adm.MaxWrites, "max-writes", 0, "bound on writes (0: none)")
		fs.IntVar(&adm.ExpectNodes, "expect-nodes", 0, "confirmations every write must get (default: the gateways given, 3 for the local cluster)")
	case "fleet":
		fs.StringVar(&sizes, "gateways", "10,100,300", "comma-separated fleet sizes, one run each on a fresh cluster, e.g. 10,100,300,1000")
		fs.IntVar(&fleet.Changes, "changes", 100, "org deactivations and reactivations through the admin API per fleet size")
		fs.IntVar(&fleet.Concurrency, "c", 1, "concurrent writers of the churn (1: one change at a time)")
		fs.DurationVar(&fleet.ConfirmTimeout, "confirm-timeout", 2*time.Second, "confirmation bound each churn write asks of the admin")
		fs.BoolVar(&pause, "pause", true, "the paused case: 1% of the gateways (at least 1) are deactd child processes, SIGSTOPped after the churn")
		fs.IntVar(&fleet.PausedChanges, "paused-changes", 5, "writes while the gateways are paused")
		fs.DurationVar(&fleet.PausedBound, "paused-bound", time.Second, "confirmation bound of the writes while paused")
		fs.DurationVar(&fleet.PausedTTL, "paused-ttl", 30*time.Second, "node lease TTL of the pausable gateways (the paused case must end within it)")
		fs.IntVar(&fleet.ReplicasPerClient, "replicas-per-client", 50, "in-process replicas sharing one etcd client")
		fs.DurationVar(&fleet.MaxDuration, "max-duration", 5*time.Minute, "bound on each fleet size's churn")
		fs.StringVar(&fleet.Deactd, "deactd", "", "deactd binary of the admin node and the pausable gateways (default: go build ./cmd/deactd)")
	case "all":
		fs.BoolVar(&all.Quick, "quick", false, "short runs (about a minute on 2 cores)")
		fs.StringVar(&all.Transport, "transport", bench.TransportGRPC, "transport of the check runs: grpc or http")
		fs.IntVar(&all.Records, "records", 100_000, "sync records")
		fs.StringVar(&all.Deactd, "deactd", "", "deactd binary of every deact started (default: go build ./cmd/deactd)")
		fs.StringVar(&all.Servers, "servers", bench.ServersProcess, "where the check runs' null server runs: process (inprocess is refused: deact runs in a child)")
		fs.BoolVar(&all.Pin, "pin", false, "--servers process, Linux: pin the load generator to one CPU and the servers to another")
	default:
		fmt.Fprintf(stderr, "deactbench: unknown mode %q\n%s\n", mode, usage)
		return 2
	}
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "deactbench: unexpected arguments %q\n", fs.Args())
		return 2
	}
	for _, v := range []string{check.Servers, all.Servers} {
		if v != "" && v != bench.ServersProcess && v != bench.ServersInProcess {
			fmt.Fprintf(stderr, "deactbench: --servers %q: want %s or %s\n", v, bench.ServersProcess, bench.ServersInProcess)
			return 2
		}
	}
	if c.gomaxprocs > 0 {
		runtime.GOMAXPROCS(c.gomaxprocs)
	}
	var progress io.Writer = stderr
	if c.quiet {
		progress = nil
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	dir := c.dir
	if dir == "" {
		tmp, err := os.MkdirTemp("", "deactbench-")
		if err != nil {
			fmt.Fprintln(stderr, "deactbench:", err)
			return 1
		}
		defer os.RemoveAll(tmp)
		dir = tmp
	}
	rep := bench.NewReport(append([]string{"deactbench"}, args...))
	var err error
	switch mode {
	case "check":
		if check.Mix, err = bench.ParseMix(mix); err != nil {
			fmt.Fprintln(stderr, "deactbench:", err)
			return 2
		}
		check.Deployment, check.Local, check.Dir, check.Progress = t.deployment(), t.local, dir, progress
		var r *bench.CheckReport
		r, err = bench.RunCheck(ctx, check)
		if r != nil {
			rep.Check = append(rep.Check, r)
		}
	case "propagation":
		prop.Deployment, prop.Dir, prop.Progress = t.deployment(), dir, progress
		rep.Propagation, err = bench.RunPropagation(ctx, prop)
	case "sync":
		sync.Dir, sync.Progress = dir, progress
		rep.Sync, err = bench.RunSync(ctx, sync)
	case "admin":
		adm.Deployment, adm.Dir, adm.Progress = t.deployment(), dir, progress
		rep.Admin, err = bench.RunAdmin(ctx, adm)
	case "fleet":
		if fleet.Gateways, err = parseSizes(sizes); err != nil {
			fmt.Fprintln(stderr, "deactbench:", err)
			return 2
		}
		fleet.NoPause, fleet.Dir, fleet.Progress = !pause, dir, progress
		rep.Fleet, err = bench.RunFleet(ctx, fleet)
	case "all":
		all.Out, all.Dir, all.Progress = c.out, dir, progress
		err = bench.RunAll(ctx, all, rep)
		rep.WriteSummary(stdout)
		if c.jsonPath != "" {
			if werr := rep.WriteJSON(c.jsonPath); werr != nil {
				fmt.Fprintln(stderr, "deactbench:", werr)
			}
		}
		fmt.Fprintf(stdout, "report: %s\n", filepath.Join(c.out, "report.json"))
		return status(err, stderr)
	}
	rep.Fail(mode, err)
	if err := os.MkdirAll(c.out, 0o755); err != nil {
		fmt.Fprintln(stderr, "deactbench:", err)
		return 1
	}
	if perr := rep.WritePlots(c.out); perr != nil {
		fmt.Fprintln(stderr, "deactbench:", perr)
	}
	jsonPath := c.jsonPath
	if jsonPath == "" {
		jsonPath = filepath.Join(c.out, "report.json")
	}
	if werr := rep.WriteJSON(jsonPath); werr != nil {
		fmt.Fprintln(stderr, "deactbench:", werr)
	}
	rep.WriteSummary(stdout)
	fmt.Fprintf(stdout, "report: %s\n", jsonPath)
	return status(err, stderr)
}

// parseSizes reads --gateways: positive integers, comma-separated.
func parseSizes(s string) ([]int, error) {
	var out []int
	for _, p := range split(s) {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 {
			return nil, fmt.Errorf("--gateways %q: want positive integers, comma-separated", s)
		}
		out = append(out, n)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("--gateways %q: want at least one size", s)
	}
	return out, nil
}

func status(err error, stderr io.Writer) int {
	if err == nil {
		return 0
	}
	if errors.Is(err, context.Canceled) {
		fmt.Fprintln(stderr, "deactbench: interrupted")
	} else {
		fmt.Fprintln(stderr, "deactbench:", err)
	}
	return 1
}
