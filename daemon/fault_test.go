package daemon_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/Shopify/toxiproxy/v2"
	"github.com/deact/deact/daemon"
	"github.com/deact/deact/internal/wait"
	"github.com/deact/deact/state"
	"github.com/deact/deact/state/etcdtest"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"google.golang.org/genproto/googleapis/rpc/code"
)

// faultNet is a real TCP proxy (toxiproxy) in front of each etcd member: the gateway reaches etcd only
// through it, so a test can cut, slow down and restore the gateway's network while etcd itself stays up.
type faultNet struct {
	proxies []*toxiproxy.Proxy
}

func newFaultNet(t *testing.T, endpoints []string) *faultNet {
	t.Helper()
	srv := toxiproxy.NewServer(toxiproxy.NewMetricsContainer(prometheus.NewRegistry()), zerolog.Nop())
	f := &faultNet{}
	for i, ep := range endpoints {
		u, err := url.Parse(ep)
		if err != nil {
			t.Fatal(err)
		}
		p := toxiproxy.NewProxy(srv, "etcd"+string(rune('0'+i)), "127.0.0.1:0", u.Host)
		if err := p.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(p.Stop)
		f.proxies = append(f.proxies, p)
	}
	return f
}

func (f *faultNet) endpoints() []string {
	var eps []string
	for _, p := range f.proxies {
		eps = append(eps, "http://"+p.Listen)
	}
	return eps
}

func (f *faultNet) cutAll() {
	for _, p := range f.proxies {
		p.Stop()
	}
}

func (f *faultNet) restoreAll(t *testing.T) {
	t.Helper()
	for _, p := range f.proxies {
		if err := p.Start(); err != nil {
			t.Fatal(err)
		}
	}
}

// latency adds ms of latency to everything etcd sends the gateway.
func (f *faultNet) latency(t *testing.T, ms int) {
	t.Helper()
	for _, p := range f.proxies {
		if _, err := p.Toxics.AddToxicJson(strings.NewReader(`{"name":"slow","type":"latency","stream":"downstream","toxicity":1,"attributes":{"latency":` + itoa(ms) + `}}`)); err != nil {
			t.Fatal(err)
		}
	}
}

func (f *faultNet) clear(t *testing.T) {
	t.Helper()
	for _, p := range f.proxies {
		if err := p.Toxics.RemoveToxic(context.Background(), "slow"); err != nil {
			t.Fatal(err)
		}
	}
}

func itoa(n int) string {
	b, _ := json.Marshal(n)
	return string(b)
}

// opRequest is a request for op with the org named by the route, the way an Envoy route would send it.
func opRequest(op, org string) *authv3.CheckRequest {
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Method: "POST", Path: "/webconsole/api/Subclient/1/action/" + op,
		}},
		ContextExtensions: map[string]string{"op": op, "org_id": org},
	}}
}

func staleness(t *testing.T, adminAddr string) time.Duration {
	t.Helper()
	r, err := http.Get("http://" + adminAddr + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Body.Close()
	var v struct {
		StalenessMs int64 `json:"stalenessMs"`
	}
	_ = json.NewDecoder(r.Body).Decode(&v)
	return time.Duration(v.StalenessMs) * time.Millisecond
}

// TestGatewayUnderEtcdFaults runs a gateway against a 3-member cluster through fault proxies, with backups
// fail-closed after 1 s of staleness and everything else serving the last-known state, and checks decisions:
// one member down, all members unreachable, recovery with a write made meanwhile, and high latency.
func TestGatewayUnderEtcdFaults(t *testing.T) {
	t.Parallel()
	cluster := etcdtest.StartCluster(t, 3)
	writer := state.NewStore(etcdtest.Client(t, cluster.Endpoints()))
	fnet := newFaultNet(t, cluster.Endpoints())
	d := start(t, func(c *daemon.Config) {
		c.Role = daemon.GatewayNode
		c.EtcdEndpoints = fnet.endpoints()
		c.Staleness = "backup=deny-after:1s"
		c.ProgressInterval = 100 * time.Millisecond
	})
	check := authv3.NewAuthorizationClient(d.authz(t))
	ctx := context.Background()
	decide := func(t *testing.T, op, org string) int32 {
		t.Helper()
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		resp, err := check.Check(cctx, opRequest(op, org))
		if err != nil {
			t.Fatalf("Check %s %s: %v", op, org, err)
		}
		return resp.Status.Code
	}
	const allow, deny = int32(code.Code_OK), int32(code.Code_PERMISSION_DENIED)
	wait.Eventually(t, "gateway ready", func() bool {
		r, err := http.Get("http://" + d.AdminAddr + "/readyz")
		if err != nil {
			return false
		}
		r.Body.Close()
		return r.StatusCode == 200
	})
	if _, err := writer.DeactivateOrg(ctx, "bad", state.OpsAll, false, who); err != nil {
		t.Fatal(err)
	}
	wait.Eventually(t, "deactivation applied", func() bool { return decide(t, "backup", "bad") == deny })

	// One member down: no interruption, and new writes still arrive.
	t.Run("one member down", func(t *testing.T) {
		cluster.Stop(0)
		if got := decide(t, "login", "bad"); got != deny {
			t.Fatalf("member down: deactivated org got %d", got)
		}
		if _, err := writer.DeactivateOrg(ctx, "bad2", state.OpsAll, false, who); err != nil {
			t.Fatal(err)
		}
		wait.Eventually(t, "write with a member down", func() bool { return decide(t, "login", "bad2") == deny })
	})
	if err := cluster.Restart(0); err != nil {
		t.Fatal(err)
	}

	// All members unreachable: the last-known state is served, staleness grows, and once it passes 1 s the
	// fail-closed op (backup) denies even an active org while login keeps serving the last-known state.
	fnet.cutAll()
	t.Run("all members unreachable", func(t *testing.T) {
		if _, err := writer.DeactivateOrg(ctx, "during", state.OpsAll, false, who); err != nil {
			t.Fatal(err)
		}
		if got := decide(t, "login", "bad"); got != deny {
			t.Fatalf("cut off: deactivated org got %d", got)
		}
		wait.Eventually(t, "staleness past the bound", func() bool { return staleness(t, d.AdminAddr) > 1200*time.Millisecond })
		if got := decide(t, "backup", "good"); got != deny {
			t.Fatalf("cut off past the bound: backup of an active org got %d, want fail-closed deny", got)
		}
		if got := decide(t, "login", "good"); got != allow {
			t.Fatalf("cut off: login of an active org got %d, want last-known allow", got)
		}
		if got := decide(t, "login", "bad"); got != deny {
			t.Fatalf("cut off: login of a deactivated org got %d", got)
		}
	})

	// Recovery: the gateway resyncs, including the write it missed.
	fnet.restoreAll(t)
	t.Run("recovery", func(t *testing.T) {
		wait.Eventually(t, "resync after the cut", func() bool { return decide(t, "login", "during") == deny })
		wait.Eventually(t, "staleness back under the bound", func() bool { return decide(t, "backup", "good") == allow })
	})

	// High latency from etcd: slower, never wrong.
	fnet.latency(t, 150)
	t.Run("high latency", func(t *testing.T) {
		if _, err := writer.ReactivateOrg(ctx, "bad", who); err != nil {
			t.Fatal(err)
		}
		wait.Eventually(t, "write under latency", func() bool { return decide(t, "login", "bad") == allow })
		if got := decide(t, "login", "bad2"); got != deny {
			t.Fatalf("under latency: deactivated org got %d", got)
		}
	})
	fnet.clear(t)
}
