package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/deact/deact/bench"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestUsage: bad usage exits 2 with a message.
func TestUsage(t *testing.T) {
	for _, args := range [][]string{nil, {"nope"}, {"check", "--no-such-flag"}, {"check", "extra"}, {"check", "--mix", "x=1"}, {"check", "--servers", "x"}, {"null-server", "extra"}, {"fleet", "--gateways", "10,x"}, {"fleet", "--gateways", "0"}, {"fleet", "--gateways", ""}, {"etcd-cluster"}, {"etcd-cluster", "--dir", "d", "extra"}} {
		var out, errb bytes.Buffer
		if code := run(args, &out, &errb); code != 2 || errb.Len() == 0 {
			t.Errorf("run(%q) = %d, stderr %q; want 2 and a message", args, code, errb.String())
		}
	}
}

// TestCheckAgainstNullServer: the null server posing as deact, with half the orgs claimed deactivated, makes
// the command exit 1, print the failure and still write the JSON report and the plot.
func TestCheckAgainstNullServer(t *testing.T) {
	ns, err := bench.StartNullServer()
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	out := t.TempDir()
	var stdout, stderr bytes.Buffer
	code := run([]string{"check", "--authz", ns.GRPCAddr, "--no-register", "--deactivated", "0.5", "--orgs", "20",
		"-c", "2", "--duration", "200ms", "--warmup", "-1s", "--settle", "-1s", "--quiet", "--out", out, "--dir", t.TempDir()}, &stdout, &stderr)
	if code != 1 {
		t.Fatalf("exit %d, want 1\nstdout:\n%s\nstderr:\n%s", code, stdout.String(), stderr.String())
	}
	if !strings.Contains(stdout.String(), "FAILED") || !strings.Contains(stderr.String(), "wrong allows") {
		t.Errorf("the failure is not reported:\nstdout:\n%s\nstderr:\n%s", stdout.String(), stderr.String())
	}
	b, err := os.ReadFile(filepath.Join(out, "report.json"))
	if err != nil {
		t.Fatal(err)
	}
	var rep bench.Report
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatal(err)
	}
	if len(rep.Check) != 1 || rep.Check[0].Runs[0].WrongAllows == 0 || len(rep.Failures) == 0 {
		t.Errorf("report: %s", b)
	}
	if _, err := os.Stat(filepath.Join(out, "check-grpc-closed-latency.png")); err != nil {
		t.Error(err)
	}
}
