package daemon_test

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/genproto/googleapis/rpc/code"

	"github.com/deact/deact/daemon"
	"github.com/deact/deact/internal/wait"
	"github.com/deact/deact/state"
	"github.com/deact/deact/state/etcdtest"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// metrics is the text of a node's /metrics.
func metrics(t *testing.T, adminAddr string) string {
	t.Helper()
	m, err := http.Get("http://" + adminAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer m.Body.Close()
	b, _ := io.ReadAll(m.Body)
	return string(b)
}

// A gateway node started beside an admin node takes its first snapshot from the admin node (by default), then
// decides as one that listed etcd: a deactivation written before it started is denied, and one written after.
// With --seeds=false it lists etcd.
func TestGatewaySeededByAdminNode(t *testing.T) {
	t.Parallel()
	srv := etcdtest.Start(t)
	store := state.NewStore(etcdtest.Client(t, srv.Endpoints()))
	ctx := context.Background()
	if _, err := store.DeactivateOrg(ctx, "before", state.OpsAll, false, who); err != nil {
		t.Fatal(err)
	}
	admin := start(t, func(c *daemon.Config) {
		c.Role, c.EtcdEndpoints, c.NodeID = daemon.AdminNode, srv.Endpoints(), "admin-1"
	})
	wait.Eventually(t, "the admin node serves seeds", func() bool {
		return strings.Contains(metrics(t, admin.AdminAddr), "deact_report_server_seeds_total 0")
	})
	cli := etcdtest.Client(t, srv.Endpoints())
	wait.Until(t, "the admin node's entry says it seeds", 10*time.Second, func() bool {
		resp, err := cli.Get(ctx, state.AdminsPrefix, clientv3.WithPrefix())
		return err == nil && len(resp.Kvs) > 0 && strings.Contains(string(resp.Kvs[0].Value), `"seeds":true`)
	})
	for _, c := range []struct {
		name, node string
		noSeeds    bool
		seeded     string
	}{{"seeded", "gw-1", false, "deact_replica_seeded 1"}, {"listed", "gw-2", true, "deact_replica_seeded 0"}} {
		t.Run(c.name, func(t *testing.T) {
			gw := start(t, func(cfg *daemon.Config) {
				cfg.Role, cfg.EtcdEndpoints, cfg.NodeID, cfg.NoSeeds = daemon.GatewayNode, srv.Endpoints(), c.node, c.noSeeds
			})
			wait.Eventually(t, "gateway ready", func() bool { return readyz(t, gw.AdminAddr).code == 200 })
			if m := metrics(t, gw.AdminAddr); !strings.Contains(m, c.seeded) {
				t.Fatalf("gateway metrics lack %q", c.seeded)
			}
			check := authv3.NewAuthorizationClient(gw.authz(t))
			decide := func(org string) int32 {
				resp, err := check.Check(ctx, tokenRequest(org))
				if err != nil {
					t.Fatal(err)
				}
				return resp.Status.Code
			}
			if got := decide("before"); got != int32(code.Code_PERMISSION_DENIED) {
				t.Fatalf("org deactivated before the gateway started: %d", got)
			}
			after := "after-" + c.node
			if _, err := store.DeactivateOrg(ctx, after, state.OpsAll, false, who); err != nil {
				t.Fatal(err)
			}
			wait.Eventually(t, "a later deactivation is denied", func() bool { return decide(after) == int32(code.Code_PERMISSION_DENIED) })
			if got := decide("someone"); got != int32(code.Code_OK) {
				t.Fatalf("an active org: %d", got)
			}
		})
	}
	if m := metrics(t, admin.AdminAddr); !strings.Contains(m, "deact_report_server_seeds_total 1") {
		t.Fatal("the admin node did not count one seed")
	}
}
