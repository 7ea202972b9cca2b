package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/deact/deact/internal/launch"
)

const childToken = "child-test-token-0123456789"

// child is a deactd child process and the addresses its ready file gave.
type child struct {
	p                   *launch.Process
	pid                 int
	authz, check, admin string // host:port
	report              string // an admin node's listener for the gateways' report streams
	etcd                string // the first etcd endpoint: the embedded etcd's socket URL
	readyFile           string
}

// runChild starts argv (a deactd, possibly behind sh -c ... exec) through the launcher with the test token in
// its environment, and returns once its ready file is there. The process is killed at cleanup.
func runChild(t *testing.T, argv ...string) *child {
	t.Helper()
	readyFile := filepath.Join(t.TempDir(), "ready.json")
	p, err := launch.Start(context.Background(), launch.Options{
		Argv: argv, Env: append(os.Environ(), "DEACT_ADMIN_TOKEN="+childToken),
		ReadyFile: readyFile, Stderr: os.Stderr, Timeout: 60 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Kill() })
	c := &child{p: p, pid: p.PID(), authz: p.Ready.AuthzAddr, check: p.Ready.CheckAddr, admin: p.Ready.AdminAddr,
		report: p.Ready.ReportAddr, readyFile: readyFile}
	if len(p.Ready.EtcdEndpoints) > 0 {
		c.etcd = p.Ready.EtcdEndpoints[0]
	}
	return c
}

// openFDs counts the process's open file descriptors.
func openFDs(pid int) (int, error) {
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	return len(ents), err
}

// tcpSockets lists the TCP sockets the process holds, from /proc/net/tcp{,6}: local port and state ("0A" is
// LISTEN, "01" ESTABLISHED), keyed by inode.
func tcpSockets(t *testing.T, pid int) []tcpSocket {
	t.Helper()
	inodes := map[string]bool{}
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if l, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, e.Name())); err == nil {
			if ino, ok := strings.CutPrefix(l, "socket:["); ok {
				inodes[strings.TrimSuffix(ino, "]")] = true
			}
		}
	}
	var out []tcpSocket
	for _, f := range []string{"tcp", "tcp6"} {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/net/%s", pid, f))
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n")[1:] {
			fs := strings.Fields(line)
			if len(fs) < 10 || !inodes[fs[9]] {
				continue
			}
			_, port, _ := strings.Cut(fs[1], ":")
			p, _ := strconv.ParseUint(port, 16, 16)
			out = append(out, tcpSocket{port: int(p), state: fs[3]})
		}
	}
	return out
}

type tcpSocket struct {
	port  int
	state string
}

func portOfAddr(t *testing.T, addr string) int {
	t.Helper()
	_, p, _ := strings.Cut(addr, ":")
	if i := strings.LastIndex(addr, ":"); i >= 0 {
		p = addr[i+1:]
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		t.Fatalf("port of %q: %v", addr, err)
	}
	return n
}
