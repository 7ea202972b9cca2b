package daemon_test

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/deact/deact/daemon"
	"github.com/deact/deact/internal/wait"
	"github.com/deact/deact/state/etcdtest"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
)

type readiness struct {
	code   int
	Fenced bool `json:"fenced"`
}

func readyz(t *testing.T, adminAddr string) readiness {
	t.Helper()
	r, err := http.Get("http://" + adminAddr + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Body.Close()
	v := readiness{code: r.StatusCode}
	_ = json.NewDecoder(r.Body).Decode(&v)
	return v
}

// TestGatewayCutFromEtcdFencesItself (issue 14, B9): a gateway cut from etcd serves the last-known state only
// until its fence bound (lease TTL 5 s less 1 s), while its record still counts in the registry; then it
// refuses every decision that reads state (UNAVAILABLE), /readyz says 503 with fenced:true and gRPC health
// NOT_SERVING. Once etcd is reachable it registers again, catches up and serves.
func TestGatewayCutFromEtcdFencesItself(t *testing.T) {
	t.Parallel()
	etcd := etcdtest.Start(t)
	fnet := newFaultNet(t, etcd.Endpoints())
	d := start(t, func(c *daemon.Config) {
		c.Role = daemon.GatewayNode
		c.EtcdEndpoints = fnet.endpoints()
		c.NodeTTL = 5 * time.Second
		c.ProgressInterval = 100 * time.Millisecond
	})
	conn := d.authz(t)
	check := authv3.NewAuthorizationClient(conn)
	health := healthpb.NewHealthClient(conn)
	serving := func() bool {
		r, err := health.Check(context.Background(), &healthpb.HealthCheckRequest{Service: "envoy.service.auth.v3.Authorization"})
		return err == nil && r.Status == healthpb.HealthCheckResponse_SERVING
	}
	decide := func() codes.Code {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		resp, err := check.Check(ctx, opRequest("login", "good"))
		if err != nil {
			return status.Code(err)
		}
		return codes.Code(resp.Status.Code)
	}
	wait.Eventually(t, "gateway ready", func() bool { return readyz(t, d.AdminAddr).code == 200 && serving() })

	fnet.cutAll()
	cut := time.Now()
	if c := decide(); c != codes.OK {
		t.Fatalf("just cut off: %v, want the last-known allow", c)
	}
	wait.Eventually(t, "the gateway to fence itself", func() bool { return decide() == codes.Unavailable })
	if since := time.Since(cut); since > 5*time.Second {
		t.Fatalf("fenced %v after the cut, later than its 5 s lease could have expired", since)
	}
	if r := readyz(t, d.AdminAddr); r.code != http.StatusServiceUnavailable || !r.Fenced {
		t.Fatalf("fenced gateway readiness %+v, want 503 fenced", r)
	}
	wait.Eventually(t, "health NOT_SERVING", func() bool { return !serving() })
	if code := httpCheck(t, d.HTTPCheckAddr); code != http.StatusServiceUnavailable {
		t.Fatalf("fenced HTTP check: %d, want 503", code)
	}

	fnet.restoreAll(t)
	wait.Eventually(t, "the gateway to serve again", func() bool { return decide() == codes.OK })
	wait.Eventually(t, "ready again", func() bool { return readyz(t, d.AdminAddr).code == 200 && serving() })
	if code := httpCheck(t, d.HTTPCheckAddr); code != http.StatusOK {
		t.Fatalf("HTTP check after the return: %d, want 200", code)
	}
}

// httpCheck asks the HTTP check endpoint about a login of org good, as nginx's auth_request would.
func httpCheck(t *testing.T, addr string) int {
	t.Helper()
	req, _ := http.NewRequest("GET", "http://"+addr+"/check", nil)
	req.Header.Set("X-Original-URI", "/oauth/v2/authorize")
	req.Header.Set("X-Deact-Op", "login")
	req.Header.Set("X-Deact-Org-Id", "good")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}
