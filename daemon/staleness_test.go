package daemon_test

import (
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/deact/deact/daemon"
	"github.com/deact/deact/internal/wait"
	"github.com/deact/deact/state"
	"github.com/deact/deact/state/etcdtest"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/genproto/googleapis/rpc/code"
)

// TestLaggingGatewayReportsItsLag (issue 14, B10): a gateway that stays connected to etcd but receives a bulk
// import slower than it is written (its link carries 256 KiB/s) reports the lag as staleness in /readyz, and
// `backup=deny-after:1s` denies backups (state_stale) while it lags, although watch events keep arriving; once
// it has caught up, backups are allowed again.
func TestLaggingGatewayReportsItsLag(t *testing.T) {
	t.Parallel()
	etcd := etcdtest.Start(t)
	writer := etcdtest.Client(t, etcd.Endpoints())
	fnet := newFaultNet(t, etcd.Endpoints())
	d := start(t, func(c *daemon.Config) {
		c.Role = daemon.GatewayNode
		c.EtcdEndpoints = fnet.endpoints()
		c.Staleness = "backup=deny-after:1s"
		c.ProgressInterval = 100 * time.Millisecond
	})
	check := authv3.NewAuthorizationClient(d.authz(t))
	backup := func() (int32, string) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		resp, err := check.Check(ctx, opRequest("backup", "good"))
		if err != nil {
			t.Fatalf("Check: %v", err)
		}
		reason := ""
		for _, h := range resp.GetDeniedResponse().GetHeaders() {
			if h.Header.Key == "x-deact-reason" {
				reason = h.Header.Value
			}
		}
		return resp.Status.Code, reason
	}
	wait.Eventually(t, "gateway ready", func() bool { return readyz(t, d.AdminAddr).code == 200 })
	if c, _ := backup(); c != int32(code.Code_OK) {
		t.Fatalf("backup before the import: %d", c)
	}

	for _, p := range fnet.proxies {
		if _, err := p.Toxics.AddToxicJson(strings.NewReader(`{"name":"narrow","type":"bandwidth","stream":"downstream","toxicity":1,"attributes":{"rate":256}}`)); err != nil {
			t.Fatal(err)
		}
	}
	var last int64
	for i := range 40 { // 5120 orgs, about 0.8 MB of watch events: seconds on this link
		ops := make([]clientv3.Op, 128)
		for j := range ops {
			id := strconv.Itoa(500000000 + i*128 + j)
			b, _ := json.Marshal(state.Org{ID: id, Disabled: state.OpLogin})
			ops[j] = clientv3.OpPut(state.OrgKey(id), string(b))
		}
		resp, err := writer.Txn(context.Background()).Then(ops...).Commit()
		if err != nil {
			t.Fatal(err)
		}
		last = resp.Header.Revision
	}
	imported := time.Now()
	wait.Eventually(t, "staleness to show the lag", func() bool { return staleness(t, d.AdminAddr) > 1200*time.Millisecond })
	if c, reason := backup(); c != int32(code.Code_PERMISSION_DENIED) || reason != "state_stale" {
		t.Fatalf("backup while the gateway lags %v behind the import: %d %q, want denied state_stale", time.Since(imported), c, reason)
	}
	r := readyz(t, d.AdminAddr)
	if r.Fenced {
		t.Fatal("a connected, lagging gateway fenced itself")
	}

	for _, p := range fnet.proxies {
		if err := p.Toxics.RemoveToxic(context.Background(), "narrow"); err != nil {
			t.Fatal(err)
		}
	}
	wait.Eventually(t, "backups allowed once caught up", func() bool { c, _ := backup(); return c == int32(code.Code_OK) })
	// Backups are allowed as soon as the staleness is under the bound, while the backlog may still be draining:
	// it must then settle, well under the bound, and stay there.
	wait.Eventually(t, "staleness settled after catching up", func() bool { return staleness(t, d.AdminAddr) < 500*time.Millisecond })
	if got := staleness(t, d.AdminAddr); got > time.Second {
		t.Fatalf("staleness %v after catching up with revision %d", got, last)
	}
}
