package bench

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/deact/deact/daemon"
	"go.uber.org/goleak"
)

// fakeDeactdEnv makes the test binary act as deactd (for the child processes of sync and process mode).
const fakeDeactdEnv = "DEACTBENCH_TEST_AS_DEACTD"

func TestMain(m *testing.M) {
	// Process mode starts os.Executable() (this test binary) with the null-server subcommand, as deactbench.
	if len(os.Args) > 1 && os.Args[1] == NullServerCommand {
		os.Exit(RunNullServer(context.Background(), os.Args[2:], os.Stdin, os.Stdout, os.Stderr))
	}
	// The fleet mode starts os.Executable() with the etcd-cluster subcommand.
	if len(os.Args) > 1 && os.Args[1] == EtcdClusterCommand {
		os.Exit(RunEtcdCluster(context.Background(), os.Args[2:], os.Stdin, os.Stdout, os.Stderr))
	}
	if os.Getenv(fakeDeactdEnv) == "1" {
		os.Exit(fakeDeactd(os.Args[1:]))
	}
	goleak.VerifyTestMain(m,
		// process-wide goroutines of etcd's embedded server and client libraries, as in package daemon
		goleak.IgnoreTopFunction("go.etcd.io/etcd/pkg/v3/traceutil.init.func1"),
		goleak.IgnoreTopFunction("google.golang.org/grpc/internal/grpcsync.(*CallbackSerializer).run"),
		goleak.IgnoreTopFunction("gopkg.in/natefinch/lumberjack%2ev2.(*Logger).millRun"),
		goleak.IgnoreAnyFunction("github.com/dgraph-io/ristretto/v2.(*defaultPolicy[...]).processItems"),
		goleak.IgnoreAnyFunction("github.com/dgraph-io/ristretto/v2.(*Cache[...]).processItems"),
		// Members of the local cluster's etcd talk to each other over HTTP on their peer ports; local.Start then
		// Close alone (without deactbench) leaves keep-alive connections of those behind, both ends, in IO wait
		// as often as not. deactbench closes its own HTTP clients' connections.
		goleak.IgnoreAnyFunction("github.com/soheilhy/cmux.(*MuxConn).Read"),
		goleak.IgnoreAnyFunction("net/http.(*connReader).abortPendingRead"),
		goleak.IgnoreAnyFunction("net/http.(*persistConn).readLoop"),
		goleak.IgnoreAnyFunction("net/http.(*persistConn).writeLoop"),
	)
}

// fakeDeactd runs a daemon with the flags RunSync and StartDaemonProcess give deactd: the real daemon
// package, started the way cmd/deactd starts it, in a child process.
func fakeDeactd(args []string) int {
	var c daemon.Config
	var role, etcd, level string
	fs := flag.NewFlagSet("deactd", flag.ContinueOnError)
	fs.StringVar(&c.AdminToken, "admin-token", "", "")
	fs.StringVar(&c.EtcdLogLevel, "etcd-log-level", "", "")
	fs.StringVar(&role, "role", "", "")
	fs.StringVar(&c.ReadyFile, "ready-file", "", "")
	fs.StringVar(&etcd, "etcd-endpoints", "", "")
	fs.StringVar(&c.DataDir, "data-dir", "", "")
	fs.StringVar(&c.NodeID, "node-id", "", "")
	fs.StringVar(&c.AuthzAddr, "authz-addr", "", "")
	fs.StringVar(&c.HTTPCheckAddr, "http-check-addr", "", "")
	fs.StringVar(&c.AdminAddr, "admin-addr", "", "")
	fs.StringVar(&level, "log-level", "", "")
	fs.DurationVar(&c.NodeTTL, "node-ttl", 0, "")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	c.Role = daemon.NodeRole(role)
	if etcd != "" {
		c.EtcdEndpoints = strings.Split(etcd, ",")
	}
	if c.AdminToken == "" {
		c.AdminToken = os.Getenv("DEACT_ADMIN_TOKEN") // as deactd reads it; StartDaemonProcess passes it so
	}
	c.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	ctx, cancel := signalContext()
	defer cancel()
	if err := daemon.Run(ctx, c); err != nil {
		fmt.Fprintln(os.Stderr, "deactd:", err)
		return 1
	}
	return 0
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// TestCheckCatchesWrongAllows: the null server allows everything; a run that claims 30% of the orgs and apps
// are deactivated must count wrong allows (no wrong denies), name examples and fail.
func TestCheckCatchesWrongAllows(t *testing.T) {
	ns, err := StartNullServer()
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	for _, tr := range []struct{ transport, addr string }{{TransportGRPC, ns.GRPCAddr}, {TransportHTTP, ns.HTTPAddr}} {
		t.Run(tr.transport, func(t *testing.T) {
			dep := &Deployment{Desc: "null server posing as deact", AuthzAddrs: []string{ns.GRPCAddr}, HTTPAddrs: []string{ns.HTTPAddr}}
			rep, err := RunCheck(testContext(t), CheckConfig{
				Deployment: dep, NoRegister: true, Transport: tr.transport, Orgs: 50, Deactivated: 0.3,
				Workers: 4, Duration: 300 * time.Millisecond, Warmup: -1, Settle: -1,
			})
			if !errors.Is(err, ErrCorrectness) {
				t.Fatalf("err = %v, want ErrCorrectness", err)
			}
			r := rep.Runs[0]
			if r.WrongAllows == 0 || r.WrongDenies != 0 || r.Denied != 0 || len(r.Examples) == 0 {
				t.Fatalf("counts %+v, examples %q: want wrong allows only", r.Counts, r.Examples)
			}
			if !strings.Contains(r.Examples[0], "allowed") {
				t.Fatalf("example %q does not say what was wrong", r.Examples[0])
			}
		})
	}
}

// TestCheckEndToEnd runs the check benchmark for about a second per run against one deactd child process
// (this test binary acting as deactd), with the null baseline and churn (gRPC), and over the HTTP check
// endpoint, and writes the report and plots.
func TestCheckEndToEnd(t *testing.T) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv(fakeDeactdEnv, "1")
	ctx := testContext(t)
	dep, err := StartDaemonProcess(ctx, t.TempDir(), self, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer dep.Close()
	var progress bytes.Buffer
	rep := NewReport([]string{"test"})
	grpcRep, err := RunCheck(ctx, CheckConfig{
		Deployment: dep, Dir: t.TempDir(), Baseline: "null", Orgs: 100, Deactivated: 0.2, Workers: 8,
		Duration: time.Second, Warmup: 200 * time.Millisecond, Settle: 300 * time.Millisecond, Churn: 10, Progress: &progress,
	})
	if err != nil {
		t.Fatalf("grpc: %v (%+v)", err, grpcRep)
	}
	rep.Check = append(rep.Check, grpcRep)
	httpRep, err := RunCheck(ctx, CheckConfig{
		Deployment: dep, Transport: TransportHTTP, Orgs: 100, Deactivated: 0.2, Workers: 8, Rate: 300,
		Duration: 500 * time.Millisecond, Warmup: -1, Settle: -1,
	})
	if err != nil {
		t.Fatalf("http: %v (%+v)", err, httpRep)
	}
	rep.Check = append(rep.Check, httpRep)

	if len(grpcRep.Runs) != 3 || grpcRep.Ratio == nil || grpcRep.Ratio.Throughput <= 0 {
		t.Fatalf("want null-before, deact, null-after and a ratio; got %d runs, ratio %+v", len(grpcRep.Runs), grpcRep.Ratio)
	}
	deact := grpcRep.Runs[1]
	if deact.Name != "deact" || !deact.Verified || deact.Requests == 0 || deact.Denied == 0 || deact.Allowed == 0 {
		t.Fatalf("deact run %+v: want allows and denies, verified", deact.Counts)
	}
	if len(deact.ByKind) != int(numKinds) {
		t.Errorf("by kind %v: want every kind of the default mix", deact.ByKind)
	}
	if deact.Churn == nil || deact.Churn.Flips == 0 {
		t.Errorf("churn %+v: want flips", deact.Churn)
	}
	if hr := httpRep.Runs[0]; hr.Denied == 0 || hr.Allowed == 0 || hr.Service == nil {
		t.Errorf("http run %+v: want allows, denies and the service latency of an open loop", hr.Counts)
	}
	if !strings.Contains(progress.String(), "check deact") {
		t.Errorf("no progress line for the deact run in %q", progress.String())
	}

	out := t.TempDir()
	if err := rep.WritePlots(out); err != nil {
		t.Fatal(err)
	}
	if err := rep.WriteJSON(filepath.Join(out, "report.json")); err != nil {
		t.Fatal(err)
	}
	for _, name := range append(rep.Plots, "report.json") {
		if fi, err := os.Stat(filepath.Join(out, name)); err != nil || fi.Size() == 0 {
			t.Errorf("%s: %v", name, err)
		}
	}
	var sum bytes.Buffer
	rep.WriteSummary(&sum)
	for _, want := range []string{"deact/baseline: throughput", "share this machine", "every answer matched"} {
		if !strings.Contains(sum.String(), want) {
			t.Errorf("summary lacks %q:\n%s", want, sum.String())
		}
	}
}

// TestAll runs every benchmark, each for a fraction of a second (sync and the check runs with this test binary
// acting as the deactd child and the null server), and checks each mode's report, the plots and the summary.
func TestAll(t *testing.T) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv(fakeDeactdEnv, "1")
	out := t.TempDir()
	rep := NewReport([]string{"test"})
	if err := RunAll(testContext(t), AllConfig{Out: out, Dir: t.TempDir(), Records: 2000, Deactd: self, Servers: ServersProcess, tiny: true}, rep); err != nil {
		t.Fatal(err)
	}
	if len(rep.Check) != 2 || rep.Check[1].Loop != "open" || len(rep.Check[0].Runs) != 7 || rep.Propagation == nil || rep.Admin == nil || rep.Sync == nil {
		t.Fatalf("report lacks a mode: %+v", rep)
	}
	for _, name := range append(rep.Plots, "report.json") {
		if fi, err := os.Stat(filepath.Join(out, name)); err != nil || fi.Size() == 0 {
			t.Errorf("%s: %v", name, err)
		}
	}
	if p := rep.Propagation; p.Completed != 4 || len(p.PerNode) != 3 || p.FromWrite.Count != 4 || len(p.SamplesMs) != 4 || p.StaleAfterAck != 0 {
		t.Errorf("propagation report %+v", p)
	}
	// etcd's floor, measured beside every write on the local cluster's own etcd, and the write's stages.
	if p := rep.Propagation; p.Floor.Count != 4 || p.FloorAck.Count != 4 || p.Committed.Count != 4 ||
		p.DeniedVsFloorP99 <= 0 || p.AnswerVsFloorP99 <= 0 || (p.Reported.Count > 0 && p.Reported.P50Ms < p.Committed.P50Ms) {
		t.Errorf("propagation floor and stages: floor %+v, committed %+v, reported %+v, ratios %.2f %.2f",
			p.Floor, p.Committed, p.Reported, p.DeniedVsFloorP99, p.AnswerVsFloorP99)
	}
	if a := rep.Admin; a.Writes == 0 || a.ExpectNodes != 3 || a.NotConfirmed != 0 || a.ConfirmWait.Count == 0 {
		t.Errorf("admin report %+v", a)
	}
	// Every write is one transaction at least; the in-process local cluster's etcd counts it. (A read before it
	// is needed only for a key the admin node has not written before, so Range may be below 1.)
	if a := rep.Admin; a.EtcdPerWrite["Txn"] < 1 {
		t.Errorf("admin report's etcd requests per write %v: want Txn ≥ 1", a.EtcdPerWrite)
	}
	if s := rep.Sync; s.Records != 2000 || s.ReadyS <= 0 || s.RSSMiB <= 0 || s.PeakRSSMiB < s.RSSMiB || s.SettledMiB <= 0 ||
		s.HeapInuseMiB <= 0 || s.Applied < s.Revision || s.SpotChecks != 20 || s.WrongChecks != 0 {
		t.Errorf("sync report %+v", s)
	}
	if len(rep.Plots) != 4 {
		t.Errorf("plots %q: want check closed and open, propagation, admin", rep.Plots)
	}
	var sum bytes.Buffer
	rep.WriteSummary(&sum)
	for _, want := range []string{"check (grpc): closed loop", "open loop at", "median of 3 rounds", "propagation:", "etcd floor: put→watch×3", "over the etcd floor", "sync:", "admin:", "etcd per write", "every answer matched"} {
		if !strings.Contains(sum.String(), want) {
			t.Errorf("summary lacks %q:\n%s", want, sum.String())
		}
	}
}

func signalContext() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
}

// TestCheckProcessMode runs a short check with deact (this test binary acting as deactd) and the null server
// (this test binary's null-server subcommand) in child processes, pinned where the machine allows it: the
// answers are checked, the servers' own CPU is measured, and both children are gone when RunCheck returns.
func TestCheckProcessMode(t *testing.T) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv(fakeDeactdEnv, "1")
	pin := runtime.GOOS == "linux" && runtime.NumCPU() >= 2
	var progress bytes.Buffer
	rep, err := RunCheck(testContext(t), CheckConfig{
		Dir: t.TempDir(), Servers: ServersProcess, Deactd: self, Pin: pin, Baseline: "null", Orgs: 100, Deactivated: 0.2, Workers: 8,
		Duration: 500 * time.Millisecond, Warmup: 100 * time.Millisecond, Settle: 200 * time.Millisecond, Progress: &progress,
	})
	if err != nil {
		t.Fatalf("%v (%+v)\n%s", err, rep, progress.String())
	}
	if rep.Servers != ServersProcess || len(rep.Runs) != 3 || rep.Ratio == nil || rep.Ratio.Throughput <= 0 {
		t.Fatalf("report %+v: want process mode, 3 runs and a ratio", rep)
	}
	if pin != (rep.Pinning != "") {
		t.Errorf("pin %v, pinning %q", pin, rep.Pinning)
	}
	for _, r := range rep.Runs {
		if r.Requests == 0 || r.ServerCPUPerReqUs <= 0 {
			t.Errorf("run %s: %d answers, server CPU %.1fµs per answer: want both", r.Name, r.Requests, r.ServerCPUPerReqUs)
		}
	}
	if d := rep.Runs[1]; !d.Verified || d.Denied == 0 || d.Allowed == 0 {
		t.Errorf("deact run %+v: want allows and denies, verified", d.Counts)
	}
	if rep.Ratio.ServerCPUPerReq <= 0 {
		t.Errorf("no server CPU ratio: %+v", rep.Ratio)
	}
	pids := regexp.MustCompile(`pid (\d+)`)
	for _, desc := range []string{rep.Deployment, rep.Baseline} {
		m := pids.FindStringSubmatch(desc)
		if m == nil {
			t.Fatalf("%q names no pid", desc)
		}
		pid, _ := strconv.Atoi(m[1])
		if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("child %d (%s) still there after the run: %v", pid, desc, err)
		}
	}
	var sum bytes.Buffer
	(&Report{Check: []*CheckReport{rep}}).WriteSummary(&sum)
	for _, want := range []string{"servers: process mode", "srv cpu", "server CPU per answer", "child process (pid"} {
		if !strings.Contains(sum.String(), want) {
			t.Errorf("summary lacks %q:\n%s", want, sum.String())
		}
	}
}

// TestNullServerCommand: the null-server subcommand prints its addresses on one line, answers OK, and exits
// 0 when its stdin closes.
func TestNullServerCommand(t *testing.T) {
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	code := make(chan int, 1)
	go func() { code <- RunNullServer(context.Background(), nil, inR, outW, io.Discard); outW.Close() }()
	line, err := bufio.NewReader(outR).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	go func() { _, _ = io.Copy(io.Discard, outR) }()
	f := strings.Fields(line)
	if len(f) != 3 || f[0] != NullServerCommand || !strings.HasPrefix(f[1], "grpc=127.0.0.1:") || !strings.HasPrefix(f[2], "http=127.0.0.1:") {
		t.Fatalf("line %q", line)
	}
	s, err := newGRPCSender([]string{strings.TrimPrefix(f[1], "grpc=")}, 1)
	if err != nil {
		t.Fatal(err)
	}
	mix, _ := ParseMix(DefaultMix)
	deny, err := s.send(testContext(t), 0, buildPool(newModel("n", 1, 1, 0, 1), mix, 1, 1)[0])
	s.close()
	if err != nil || deny {
		t.Fatalf("deny %v, err %v: want an allow", deny, err)
	}
	inW.Close()
	select {
	case c := <-code:
		if c != 0 {
			t.Fatalf("exit %d", c)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("null-server did not exit when stdin closed")
	}
	if RunNullServer(context.Background(), []string{"--addr", "192.0.2.1:0"}, nil, io.Discard, io.Discard) != 1 {
		t.Error("a non-loopback address was accepted")
	}
}
