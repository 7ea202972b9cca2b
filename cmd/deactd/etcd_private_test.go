package main

import (
	"context"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// dialAsEnv, when set, makes the test binary a probe: it connects to that unix socket and exits 0 when it could
// not, 3 when it could (see TestMain).
const dialAsEnv = "DEACT_TEST_DIAL_UNIX"

// TestEmbeddedEtcdIsPrivate: a deactd with its embedded etcd opens no TCP port but its four listeners (so no
// curl, no browser page can reach etcd), its etcd socket is 0600 in a 0700 data dir, another user cannot
// connect to it, and the operator (deactd's own user) can take a backup through it with an etcd client, as the
// README says.
func TestEmbeddedEtcdIsPrivate(t *testing.T) {
	t.Parallel()
	bin := deactdBinary(t)
	dir := filepath.Join(t.TempDir(), "data")
	if err := os.Mkdir(dir, 0o755); err != nil { // made loose on purpose: deactd tightens it
		t.Fatal(err)
	}
	c := runChild(t, bin, "--data-dir", dir, "--node-id", "child",
		"--authz-addr", "127.0.0.1:0", "--http-check-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0",
		"--etcd-log-level", "fatal", "--log-level", "warn")
	sock := filepath.Join(dir, "etcd.sock")
	if c.etcd != "unix://"+sock {
		t.Fatalf("ready file shows etcd at %q, want unix://%s", c.etcd, sock)
	}

	t.Run("no TCP port but its listeners", func(t *testing.T) {
		var listening []int
		for _, s := range tcpSockets(t, c.pid) {
			if s.state == "0A" {
				listening = append(listening, s.port)
			}
		}
		slices.Sort(listening)
		want := []int{portOfAddr(t, c.authz), portOfAddr(t, c.check), portOfAddr(t, c.admin), portOfAddr(t, c.report)}
		slices.Sort(want)
		if !slices.Equal(listening, want) {
			t.Errorf("deactd listens on TCP ports %v, want only its listeners %v", listening, want)
		}
	})

	t.Run("modes", func(t *testing.T) {
		for path, mode := range map[string]os.FileMode{dir: os.ModeDir | 0o700, sock: os.ModeSocket | 0o600} {
			fi, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode()&(os.ModeType|os.ModePerm) != mode {
				t.Errorf("%s: mode %v, want %v", path, fi.Mode(), mode)
			}
		}
	})

	t.Run("another user cannot connect", func(t *testing.T) {
		if os.Geteuid() == 0 {
			// Root passes every permission check: probe as nobody, the way another local user would. The test's
			// own temporary directories are opened up so that only deactd's permissions stand in the way; each layer
			// is probed alone: the 0700 data dir, then the 0600 socket in a data dir opened up.
			for p := filepath.Dir(dir); p != filepath.Dir(filepath.Dir(filepath.Dir(dir))); p = filepath.Dir(p) {
				if err := os.Chmod(p, 0o755); err != nil {
					t.Fatal(err)
				}
			}
			exe := filepath.Join(filepath.Dir(dir), "probe")
			b, err := os.ReadFile(os.Args[0])
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(exe, b, 0o755); err != nil {
				t.Fatal(err)
			}
			probe := func(what string) {
				t.Helper()
				cmd := exec.Command(exe, "-test.run=^$")
				cmd.Env = append(os.Environ(), dialAsEnv+"="+sock)
				cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
				out, err := cmd.CombinedOutput()
				if err != nil {
					t.Errorf("%s: another user reached the etcd socket (%v): %s", what, err, out)
				}
			}
			probe("0700 data dir")
			if err := os.Chmod(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			probe("0600 socket")
			if err := os.Chmod(dir, 0o700); err != nil {
				t.Fatal(err)
			}
		}
	})

	// deactd's own user (the operator, with sudo -u) can back the store up through the socket.
	t.Run("its own user can back up", func(t *testing.T) {
		cli, err := clientv3.New(clientv3.Config{Endpoints: []string{c.etcd}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
		if err != nil {
			t.Fatal(err)
		}
		defer cli.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		rc, err := cli.Snapshot(ctx)
		if err != nil {
			t.Fatal(err)
		}
		n, err := io.Copy(io.Discard, rc)
		rc.Close()
		if err != nil || n == 0 {
			t.Fatalf("snapshot through the socket: %d bytes, %v", n, err)
		}
	})
}

// probeDial is the body of the probe process: it exits 3 if it can connect to the socket.
func probeDial(path string) int {
	c, err := net.DialTimeout("unix", path, 2*time.Second)
	if err != nil {
		if strings.Contains(err.Error(), "permission denied") {
			return 0
		}
		os.Stderr.WriteString("unexpected dial error: " + err.Error() + "\n")
		return 4
	}
	c.Close()
	return 3
}
