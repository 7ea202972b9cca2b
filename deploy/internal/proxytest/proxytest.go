// Package proxytest is what the end-to-end tests of deact's proxy configurations (nginx, Caddy, Traefik) share:
// a real deactd on loopback, a stand-in upstream, the proxy's binary and process, and requests as clients send
// them.
package proxytest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/deact/deact/daemon"
)

// Binary finds the proxy's binary, trying names in order (the first is also its Debian package); product names
// it in messages. Outside CI a missing binary skips the test; under CI=true it fails it, so CI cannot pass
// without running the proxy.
func Binary(t *testing.T, product string, names ...string) string {
	t.Helper()
	for _, n := range names {
		if path, err := exec.LookPath(n); err == nil {
			return path
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s is not installed, and CI=true requires this test to run (.ci/run installs it: apt-get install -y %s)", names[0], names[0])
	}
	t.Skipf("%s not installed: skipping the %s end-to-end test (apt-get install -y %s to run it)", names[0], product, names[0])
	return ""
}

// FreePort is a loopback address nothing listens on right now.
func FreePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// Run starts the proxy's cmd and returns once something accepts connections on addr (10 s at most). At
// cleanup it interrupts cmd and waits for it; when the test failed it logs cmd's stderr, and what more()
// returns (nil: nothing), under name.
func Run(t *testing.T, name string, cmd *exec.Cmd, addr string, more func() string) {
	t.Helper()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		_ = cmd.Wait()
		if t.Failed() {
			if more == nil {
				t.Logf("%s stderr:\n%s", name, stderr.String())
			} else {
				t.Logf("%s stderr:\n%s\n%s", name, stderr.String(), more())
			}
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s does not listen on %s: %s", name, addr, stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Upstream is the stand-in for the protected service, closed at cleanup: it answers every request it gets with
// 200 "upstream ok METHOD PATH body=BODY" (the escaped path, the body quoted), so a test sees what passed.
func Upstream(t *testing.T) *httptest.Server {
	t.Helper()
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "upstream ok %s %s body=%q", r.Method, r.URL.EscapedPath(), b)
	}))
	t.Cleanup(s.Close)
	return s
}

// StartDeactd starts a real deactd (embedded etcd, admin API, ext_authz and /check, all on free loopback ports)
// with adminToken and waits until it is ready: synced and registered, so that from then on the admin API waits
// for it before it answers a write. It stops at cleanup.
func StartDeactd(t *testing.T, adminToken string) *daemon.Daemon {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	d, err := daemon.Start(ctx, daemon.Config{
		DataDir: t.TempDir(), NodeID: "edge", AdminToken: adminToken,
		AuthzAddr: "127.0.0.1:0", HTTPCheckAddr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0",
		EtcdLogLevel: "fatal", Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Out: io.Discard,
	})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); _ = d.Wait() })
	for deadline := time.Now().Add(10 * time.Second); ; {
		if r, err := http.Get("http://" + d.AdminAddr + "/readyz"); err == nil {
			r.Body.Close()
			if r.StatusCode == 200 {
				return d
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("deactd not ready")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Reply is an answer as a test checks it.
type Reply struct {
	Status int
	Body   string
	Header http.Header
}

// Do sends one request; hdr["Host"] sets the Host the request names, the other entries are headers.
func Do(t *testing.T, method, url string, hdr map[string]string, body string) Reply {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		if k == "Host" {
			req.Host = v
			continue
		}
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return Reply{resp.StatusCode, string(b), resp.Header}
}

// SendRaw sends one request exactly as written (absolute-form targets, repeated headers, spellings net/http
// would not send) to base and returns the answer.
func SendRaw(t *testing.T, base, raw string) Reply {
	t.Helper()
	c, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return Reply{resp.StatusCode, string(b), resp.Header}
}

// OrgJWT is an unsigned-looking JWT (a fake signature) whose payload names org as the user's resource owner,
// the claim deact reads at the resource API; the upstream would verify it.
func OrgJWT(org string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"RS256","typ":"JWT"}`)) + "." +
		base64.RawURLEncoding.EncodeToString([]byte(`{"sub":"u1","urn:zitadel:iam:user:resourceowner:id":"`+org+`","exp":4102444800}`)) + ".c2ln"
}
