package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

const childToken = "child-test-token-0123456789"

// child is a deactd child process and the addresses its banner showed.
type child struct {
	cmd                 *exec.Cmd
	authz, check, admin string // host:port
	etcd                string // the embedded etcd's endpoint
	banner              []string
}

// runChild starts cmd (a deactd, possibly behind sh -c) with the test token in its environment and waits for
// the banner's etcd line, the last with an address. The process is killed at cleanup.
func runChild(t *testing.T, cmd *exec.Cmd) *child {
	t.Helper()
	cmd.Env = append(os.Environ(), "DEACT_ADMIN_TOKEN="+childToken)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	c := &child{cmd: cmd}
	lines := make(chan string, 64)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		_, _ = io.Copy(io.Discard, stdout)
	}()
	timeout := time.After(60 * time.Second)
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("deactd exited before its banner: %q", c.banner)
			}
			c.banner = append(c.banner, l)
			field := func(prefix string) string {
				v, _ := strings.CutPrefix(strings.TrimSpace(l), prefix)
				return strings.TrimSpace(v)
			}
			switch s := strings.TrimSpace(l); {
			case strings.HasPrefix(s, "authz gRPC (ext_authz):"):
				c.authz = field("authz gRPC (ext_authz):")
			case strings.HasPrefix(s, "check HTTP (/check):"):
				c.check = strings.TrimSuffix(strings.TrimPrefix(field("check HTTP (/check):"), "http://"), "/check")
			case strings.HasPrefix(s, "admin HTTP/gRPC:"):
				c.admin = strings.TrimPrefix(field("admin HTTP/gRPC:"), "http://")
			case strings.HasPrefix(s, "etcd (embedded):"):
				c.etcd, _, _ = strings.Cut(field("etcd (embedded):"), ",")
			case strings.HasPrefix(s, "etcd:"):
				c.etcd = field("etcd:")
			}
			if c.etcd != "" { // the line after the addresses
				go func() {
					for range lines {
					}
				}()
				return c
			}
		case <-timeout:
			t.Fatalf("deactd printed no admin address: %q", c.banner)
		}
	}
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
