package daemon_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/deact/deact/daemon"
	"github.com/deact/deact/internal/wait"
	"github.com/deact/deact/state"
	"github.com/deact/deact/state/etcdtest"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"go.uber.org/goleak"
	"google.golang.org/genproto/googleapis/rpc/code"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, etcdtest.LeakOptions()...)
}

const token = "daemon-test-token-0123456789"

type running struct {
	*daemon.Daemon
	stop   func() error
	banner string
}

// start runs a daemon on free loopback ports with an embedded etcd in a temp dir, stopped at cleanup.
func start(t *testing.T, mutate func(*daemon.Config)) *running {
	t.Helper()
	var out bytes.Buffer
	cfg := daemon.Config{
		DataDir: t.TempDir(), NodeID: "n1", AdminToken: token,
		AuthzAddr: "127.0.0.1:0", HTTPCheckAddr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0",
		EtcdLogLevel: "fatal", Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Out: &out,
	}
	if mutate != nil {
		mutate(&cfg)
	}
	ctx, cancel := context.WithCancel(context.Background())
	d, err := daemon.Start(ctx, cfg)
	if err != nil {
		cancel()
		t.Fatalf("start: %v", err)
	}
	var once sync.Once
	var werr error
	stop := func() error { once.Do(func() { cancel(); werr = d.Wait() }); return werr }
	t.Cleanup(func() { _ = stop() })
	return &running{Daemon: d, stop: stop, banner: out.String()}
}

func (r *running) authz(t *testing.T) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(r.AuthzAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func tokenRequest(org string) *authv3.CheckRequest {
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Method: "POST", Path: "/oauth/v2/token", Host: "idp.example",
			Headers: map[string]string{"content-type": "application/x-www-form-urlencoded"},
		}},
		ContextExtensions: map[string]string{"op": "token", "org_id": org},
		Source:            &authv3.AttributeContext_Peer{Address: &corev3.Address{}},
	}}
}

func post(t *testing.T, url string, hdr map[string]string, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest("POST", url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	a := wait.Response(t, http.DefaultClient, req)
	return a.Status, a.Body
}

// TestDaemonEnforcesAdminWrites: a ZITADEL-compatible deactivation through the admin listener is confirmed by
// this node and denies the org's token requests on the ext_authz listener; a reactivation lets them through.
func TestDaemonEnforcesAdminWrites(t *testing.T) {
	t.Parallel()
	d := start(t, nil)
	t.Run("banner", func(t *testing.T) {
		for _, want := range []string{d.AuthzAddr, d.HTTPCheckAddr, d.AdminAddr, "admin token"} {
			if !strings.Contains(d.banner, want) {
				t.Fatalf("banner lacks %q:\n%s", want, d.banner)
			}
		}
	})
	conn := d.authz(t)
	health := healthpb.NewHealthClient(conn)
	wait.Eventually(t, "health SERVING", func() bool {
		r, err := health.Check(context.Background(), &healthpb.HealthCheckRequest{Service: "envoy.service.auth.v3.Authorization"})
		return err == nil && r.Status == healthpb.HealthCheckResponse_SERVING
	})
	check := authv3.NewAuthorizationClient(conn)
	ctx := context.Background()
	hdr := map[string]string{"Authorization": "Bearer " + token, "x-zitadel-orgid": "777", "Content-Type": "application/json"}
	t.Run("deactivate, then reactivate", func(t *testing.T) {
		resp, err := check.Check(ctx, tokenRequest("777"))
		if err != nil || resp.Status.Code != int32(code.Code_OK) {
			t.Fatalf("active org: %v %v", resp, err)
		}
		status, body := post(t, "http://"+d.AdminAddr+"/management/v1/orgs/me/_deactivate", hdr, "{}")
		if status != 200 || !strings.Contains(body, `"resourceOwner":"777"`) {
			t.Fatalf("deactivate: %d %s", status, body)
		}
		// The admin waited for this node: the deny is in effect the moment the call returned.
		resp, err = check.Check(ctx, tokenRequest("777"))
		if err != nil || resp.Status.Code != int32(code.Code_PERMISSION_DENIED) || resp.GetDeniedResponse() == nil {
			t.Fatalf("deactivated org: %v %v", resp, err)
		}
		status, body = post(t, "http://"+d.AdminAddr+"/management/v1/orgs/me/_deactivate", hdr, "{}")
		if status != 400 || !strings.Contains(body, `"code":9`) {
			t.Fatalf("second deactivate: %d %s", status, body)
		}
		if status, body = post(t, "http://"+d.AdminAddr+"/management/v1/orgs/me/_reactivate", hdr, "{}"); status != 200 {
			t.Fatalf("reactivate: %d %s", status, body)
		}
		resp, err = check.Check(ctx, tokenRequest("777"))
		if err != nil || resp.Status.Code != int32(code.Code_OK) {
			t.Fatalf("reactivated org: %v %v", resp, err)
		}
	})
	t.Run("readyz", func(t *testing.T) {
		r, err := http.Get("http://" + d.AdminAddr + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		var ready struct {
			Ready    bool  `json:"ready"`
			Revision int64 `json:"appliedRevision"`
		}
		_ = json.NewDecoder(r.Body).Decode(&ready)
		r.Body.Close()
		if r.StatusCode != 200 || !ready.Ready || ready.Revision == 0 {
			t.Fatalf("readyz %d %+v", r.StatusCode, ready)
		}
	})
	t.Run("metrics", func(t *testing.T) {
		mb := metrics(t, d.AdminAddr)
		for _, name := range []string{"deact_replica_staleness_seconds", "deact_replica_ready 1", "deact_authz_checks_total"} {
			if !strings.Contains(mb, name) {
				t.Errorf("metrics lack %s", name)
			}
		}
	})
	if err := d.stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}
}

// TestDaemonNotReadyWithoutEtcd: a gateway that cannot reach etcd at start decides nothing: Check is
// UNAVAILABLE, health NOT_SERVING, /readyz 503 and /check 503. It never allows.
func TestDaemonNotReadyWithoutEtcd(t *testing.T) {
	t.Parallel()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "http://" + lis.Addr().String()
	lis.Close() // nothing listens there now
	d := start(t, func(c *daemon.Config) {
		c.EtcdEndpoints = []string{dead}
		c.Role = daemon.GatewayNode
	})
	conn := d.authz(t)
	ctx := context.Background()
	_, err = authv3.NewAuthorizationClient(conn).Check(ctx, tokenRequest("1"))
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("Check without state: %v", err)
	}
	h, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil || h.Status != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Fatalf("health without state: %v %v", h, err)
	}
	for _, url := range []string{"http://" + d.AdminAddr + "/readyz", "http://" + d.HTTPCheckAddr + "/check"} {
		r, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		r.Body.Close()
		if r.StatusCode != http.StatusServiceUnavailable {
			t.Fatalf("%s without state: %d", url, r.StatusCode)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	for name, c := range map[string]daemon.Config{
		"bad role":         {Role: "boss"},
		"bad node id":      {Role: daemon.AllInOne, NodeID: "a/b"},
		"cert no key":      {Role: daemon.AllInOne, NodeID: "n", TLSCert: "x"},
		"bad staleness":    {Role: daemon.AllInOne, NodeID: "n", Staleness: "login=sometimes"},
		"tls on http etcd": {Role: daemon.AllInOne, NodeID: "n", EtcdEndpoints: []string{"http://x:2379"}, EtcdCACert: "ca.pem"},
	} {
		if err := c.Validate(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

var who = state.Change{Actor: "test"}

// TestListenerLimits: oversized headers and bodies get a clear 4xx from the listeners, never a 500.
func TestListenerLimits(t *testing.T) {
	t.Parallel()
	d := start(t, nil)
	wait.Eventually(t, "gateway ready", func() bool { return readyz(t, d.AdminAddr).code == 200 })
	big := strings.Repeat("a", 100<<10)
	for name, tc := range map[string]struct {
		url    string
		header string
		body   string
		want   int
	}{
		"huge header on /check":        {"http://" + d.HTTPCheckAddr + "/check", big, "", http.StatusRequestHeaderFieldsTooLarge},
		"huge header on the admin API": {"http://" + d.AdminAddr + "/v1/orgs", big, "", http.StatusRequestHeaderFieldsTooLarge},
		// /check reads a body up to its limit (1 MiB) and decides on that prefix: a token request whose form is
		// cut there is refused (403 body_incomplete: nginx passes only 401 and 403), never allowed.
		"huge body on /check":        {"http://" + d.HTTPCheckAddr + "/check", "", strings.Repeat("a", 2<<20), http.StatusForbidden},
		"huge body on the admin API": {"http://" + d.AdminAddr + "/v1/orgs/1/deactivate", "", big, http.StatusRequestEntityTooLarge},
	} {
		t.Run(name, func(t *testing.T) {
			req, _ := http.NewRequest("POST", tc.url, strings.NewReader(tc.body))
			req.Header.Set("Authorization", "Bearer "+token)
			req.Header.Set("Content-Type", "application/json")
			if tc.url == "http://"+d.HTTPCheckAddr+"/check" {
				req.Header.Set("X-Original-URI", "/oauth/v2/token")
				req.Header.Set("X-Original-Method", "POST")
				req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			}
			if tc.header != "" {
				req.Header.Set("X-Padding", tc.header)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Errorf("%s: %d, want %d", name, resp.StatusCode, tc.want)
			}
		})
	}
}
