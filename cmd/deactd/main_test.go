package main

import (
	"errors"
	"fmt"
	"github.com/deact/deact/internal/wait"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/deact/deact/internal/launch"
)

// deactdBinary builds deactd once for the tests that run it as a child process (the build is shared by the
// tests running in parallel; TestMain removes it at the end).
func deactdBinary(t *testing.T) string {
	t.Helper()
	bin, err := builtDeactd()
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

// deactdBuildDir holds the binary deactdBinary built, if any.
var deactdBuildDir string

var builtDeactd = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "deactd-test-")
	if err != nil {
		return "", err
	}
	deactdBuildDir = dir
	bin := filepath.Join(dir, "deactd")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build: %v\n%s", err, out)
	}
	return bin, nil
})

// startChild runs deactd on free ports with dataDir through the launcher and returns it and its admin URL
// once it is ready.
func startChild(t *testing.T, bin, dataDir string) (*launch.Process, string) {
	t.Helper()
	c := runChild(t, bin, "--data-dir", dataDir, "--node-id", "child",
		"--authz-addr", "127.0.0.1:0", "--http-check-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0",
		"--etcd-log-level", "fatal", "--log-level", "warn")
	return c.p, "http://" + c.admin
}

func call(t *testing.T, method, url, body string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer child-test-token-0123456789")
	req.Header.Set("Content-Type", "application/json")
	a := wait.Response(t, http.DefaultClient, req)
	return a.Status, a.Body
}

// TestAcknowledgedWriteSurvivesKill9: a deactivation acknowledged by the admin API is there after deactd is
// killed with SIGKILL right after the acknowledgement and started again on the same data directory.
func TestAcknowledgedWriteSurvivesKill9(t *testing.T) {
	t.Parallel()
	bin := deactdBinary(t)
	dataDir := t.TempDir()
	p, url := startChild(t, bin, dataDir)
	if code, body := call(t, "POST", url+"/v1/orgs/424242/deactivate?confirmTimeout=0", `{"ops":"all","reason":"kill test"}`); code != 200 {
		t.Fatalf("deactivate: %d %s", code, body)
	}
	_ = p.Kill()

	_, url = startChild(t, bin, dataDir)
	code, body := call(t, "GET", url+"/v1/orgs/424242", "")
	if code != 200 || !strings.Contains(body, `"deactivated"`) || !strings.Contains(body, `"disableBackup":true`) {
		t.Fatalf("after kill -9 and restart: %d %s", code, body)
	}
}

// TestSIGTERMStopsCleanly: SIGTERM drains and exits 0, and deactd removes its ready file.
func TestSIGTERMStopsCleanly(t *testing.T) {
	t.Parallel()
	c := runChild(t, deactdBinary(t), "--data-dir", t.TempDir(), "--node-id", "child",
		"--authz-addr", "127.0.0.1:0", "--http-check-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0",
		"--etcd-log-level", "fatal", "--log-level", "warn")
	p := c.p
	if fi, err := os.Stat(c.readyFile); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("ready file: %v, %v; want it there, 0600", fi, err)
	}
	if err := p.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.Done():
		if err := p.Wait(); err != nil {
			t.Fatalf("exit after SIGTERM: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("deactd did not stop after SIGTERM")
	}
	if _, err := os.Stat(c.readyFile); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("ready file after a clean exit: %v, want it removed", err)
	}
}

func TestParseFlagsAndEnv(t *testing.T) {
	t.Setenv("DEACT_ADMIN_TOKEN", "from-env-0123456789abcdef")
	t.Setenv("DEACT_NODE_ID", "env-node")
	c, err := parse([]string{"--node-id", "flag-node", "--etcd-endpoints", "https://a:2379, https://b:2379", "--presets", ""})
	if err != nil {
		t.Fatal(err)
	}
	if c.AdminToken != "from-env-0123456789abcdef" || c.NodeID != "flag-node" || len(c.EtcdEndpoints) != 2 || len(c.Presets) != 0 {
		t.Fatalf("config %+v", c)
	}
	if _, err := parse([]string{"--log-level", "loud"}); err == nil {
		t.Fatal("bad log level accepted")
	}
	t.Setenv("DEACT_DRAIN_DELAY", "soon")
	if _, err := parse(nil); err == nil || !strings.Contains(err.Error(), "DEACT_DRAIN_DELAY") {
		t.Fatalf("bad env: %v", err)
	}
}
