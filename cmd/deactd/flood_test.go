package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/genproto/googleapis/rpc/code"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// fdLimit is the open-file limit the flooded deactd runs under.
const fdLimit = 512

// TestConnectionFloodUnderLowFileLimit: deactd runs under ulimit -n 512 while every listener is flooded with
// idle TCP connections (silent, or one byte and silent), several times the limit in all, held open. Throughout, it keeps answering: ext_authz
// Check (allow and deny) over gRPC, the HTTP check, /readyz and admin writes that go through its embedded etcd;
// its descriptors stay below the limit, each listener's connections stay within its bound, and the process and
// its etcd survive (a write after the flood is stored).
func TestConnectionFloodUnderLowFileLimit(t *testing.T) {
	t.Parallel()
	bin := deactdBinary(t)
	c := runChild(t, "sh", "-c", fmt.Sprintf(`ulimit -n %d && exec "$0" "$@"`, fdLimit), bin,
		"--data-dir", t.TempDir(), "--node-id", "flooded",
		"--authz-addr", "127.0.0.1:0", "--http-check-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0",
		"--confirm-timeout", "5s", "--etcd-log-level", "error", "--log-level", "warn")
	pid := c.pid
	admin := "http://" + c.admin
	deadline := time.Now().Add(20 * time.Second)
	for {
		if code, _ := httpDo(admin+"/readyz", "GET", nil, ""); code == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("deactd never became ready")
		}
		time.Sleep(20 * time.Millisecond)
	}
	auth := map[string]string{"Authorization": "Bearer " + childToken, "Content-Type": "application/json"}
	if code, body := httpDo(admin+"/v1/orgs/666/deactivate", "POST", auth, `{"ops":"all"}`); code != 200 {
		t.Fatalf("deactivate before the flood: %d %s", code, body)
	}
	conn, err := grpc.NewClient(c.authz, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	authz := authv3.NewAuthorizationClient(conn)

	// The flood: per listener, 3 × the whole limit in connections, opened as fast as one dialer can and held
	// until the end (the server closes those it evicts). Half never send a byte (the kernel keeps those from
	// deactd for a while: TCP_DEFER_ACCEPT), half send the first byte of a request and nothing more, so they
	// are accepted and fill the listeners.
	const perListener = 3 * fdLimit
	var held sync.Map
	var dialed atomic.Int64
	stop := make(chan struct{})
	var flood sync.WaitGroup
	for _, addr := range []string{c.authz, c.check, c.admin, c.report} {
		flood.Add(1)
		go func() {
			defer flood.Done()
			for i := range perListener {
				select {
				case <-stop:
					return
				default:
				}
				nc, err := net.DialTimeout("tcp", addr, 2*time.Second)
				if err != nil {
					continue
				}
				dialed.Add(1)
				held.Store(nc, true)
				if i%2 == 0 {
					_, _ = nc.Write([]byte("P")) // "PRI * HTTP/2.0" or "POST", cut short
				}
			}
		}()
	}
	defer func() {
		held.Range(func(k, _ any) bool { k.(net.Conn).Close(); return true })
	}()
	var maxFDs atomic.Int64
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			if n, err := openFDs(pid); err == nil && int64(n) > maxFDs.Load() {
				maxFDs.Store(int64(n))
			}
			select {
			case <-stop:
				return
			case <-time.After(2 * time.Millisecond):
			}
		}
	}()

	// Real clients, during the flood and after it while it is held.
	floodDone := make(chan struct{})
	go func() { flood.Wait(); close(floodDone) }()
	probes, org := 0, 0
	after := time.Time{}
	for {
		select {
		case <-floodDone:
			if after.IsZero() {
				after = time.Now()
			}
		default:
		}
		if !after.IsZero() && time.Since(after) > 500*time.Millisecond && probes >= 20 {
			break
		}
		probes++
		org++
		probe(t, authz, c.check, admin, auth, org)
		if t.Failed() {
			break
		}
	}
	close(stop)
	<-sampled
	t.Logf("%d idle connections dialed, %d probe rounds; deactd's descriptors peaked at %d of %d", dialed.Load(), probes, maxFDs.Load(), fdLimit)
	if dialed.Load() < fdLimit {
		t.Errorf("only %d connections dialed: no flood", dialed.Load())
	}
	if maxFDs.Load() >= fdLimit {
		t.Errorf("deactd reached %d descriptors of %d", maxFDs.Load(), fdLimit)
	}

	_, metrics := httpDo(admin+"/metrics", "GET", nil, "")
	var evicted float64
	for _, l := range []string{"authz", "check", "admin"} {
		open, bound, ev := metric(metrics, "deact_listener_connections", l), metric(metrics, "deact_listener_max_connections", l), metric(metrics, "deact_listener_evicted_total", l)
		t.Logf("listener %s: %v open, bound %v, %v evicted, %v rejected", l, open, bound, ev, metric(metrics, "deact_listener_rejected_total", l))
		if open > bound || bound <= 0 || bound*3 > fdLimit {
			t.Errorf("listener %s: %v open, bound %v (limit %d)", l, open, bound, fdLimit)
		}
		evicted += ev
	}
	if evicted == 0 {
		t.Error("the flood never filled a listener")
	}
	// The embedded etcd is alive: a write is stored and enforced, and the process did not exit.
	if code, body := httpDo(admin+"/v1/orgs/777/deactivate", "POST", auth, `{"ops":"all"}`); code != 200 {
		t.Fatalf("deactivate after the flood: %d %s", code, body)
	}
	if got := checkOrg(t, authz, "777"); got != int32(code.Code_PERMISSION_DENIED) {
		t.Errorf("after the flood, org 777: code %d", got)
	}
	select {
	case <-c.p.Done():
		t.Fatalf("deactd exited: %v", c.p.Wait())
	default:
	}
}

// probe is one round of real requests; every one must be answered correctly.
func probe(t *testing.T, authz authv3.AuthorizationClient, check, admin string, auth map[string]string, n int) {
	t.Helper()
	if got := checkOrg(t, authz, "666"); got != int32(code.Code_PERMISSION_DENIED) {
		t.Errorf("probe %d: Check of deactivated org 666: code %d", n, got)
	}
	if got := checkOrg(t, authz, "1"); got != int32(code.Code_OK) {
		t.Errorf("probe %d: Check of active org 1: code %d", n, got)
	}
	hdr := map[string]string{"X-Original-URI": "/oauth/v2/token", "X-Original-Method": "POST", "X-Deact-Op": "token", "X-Deact-Org-Id": "666"}
	if got, body := httpDo("http://"+check+"/check", "GET", hdr, ""); got != http.StatusForbidden {
		t.Errorf("probe %d: HTTP check of org 666: %d %s", n, got, body)
	}
	if got, body := httpDo(admin+"/readyz", "GET", nil, ""); got != 200 {
		t.Errorf("probe %d: /readyz: %d %s", n, got, body)
	}
	if n%5 == 0 {
		org := strconv.Itoa(10000 + n)
		if got, body := httpDo(admin+"/v1/orgs/"+org+"/deactivate", "POST", auth, `{"ops":"all"}`); got != 200 {
			t.Errorf("probe %d: deactivate %s: %d %s", n, org, got, body)
		}
	}
}

// checkOrg is one token-request Check for org. A client like Envoy reconnects when its connection is closed:
// WaitForReady lets the gRPC client do that within the deadline.
func checkOrg(t *testing.T, c authv3.AuthorizationClient, org string) int32 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := c.Check(ctx, &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Method: "POST", Path: "/oauth/v2/token", Host: "idp.example",
		}},
		ContextExtensions: map[string]string{"op": "token", "org_id": org},
	}}, grpc.WaitForReady(true))
	if err != nil {
		t.Errorf("Check %s: %v", org, err)
		return -1
	}
	return resp.Status.Code
}

// httpDo sends one request on a new connection (as nginx's auth_request does without keepalive).
func httpDo(url, method string, hdr map[string]string, body string) (int, string) {
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		return 0, err.Error()
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	cl := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := cl.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// metric reads one listener's sample from a Prometheus text exposition.
func metric(text, name, listener string) float64 {
	re := regexp.MustCompile(`(?m)^` + name + `\{listener="` + listener + `"\} (\S+)$`)
	m := re.FindStringSubmatch(text)
	if m == nil {
		return -1
	}
	v, _ := strconv.ParseFloat(m[1], 64)
	return v
}
