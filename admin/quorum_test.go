package admin_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/deact/deact/admin"
	"github.com/deact/deact/admin/adminapi"
	management "github.com/deact/deact/admin/proto/zitadel/management/v1"
	"github.com/deact/deact/admin/proto/zitadel/management/v1/managementconnect"
	"github.com/deact/deact/internal/wait"
	"github.com/deact/deact/state"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	grpcstatus "google.golang.org/grpc/status"
)

// TestWritesWithoutQuorum: with 2 of 3 etcd members stopped, every admin write and read answers within the
// write timeout with its API's "unavailable" (ZITADEL REST 503 code 14, gRPC and Connect UNAVAILABLE, Commvault
// 503 errorCode 12, native 503 "unavailable"). Once the members are back, repeating the writes either succeeds
// or answers "already deactivated", and each org is deactivated exactly once in the audit: nothing is applied
// twice or by half.
func TestWritesWithoutQuorum(t *testing.T) {
	t.Parallel()
	const writeTimeout = 1500 * time.Millisecond
	e := newEnv(t, envOpts{cluster: 3, config: func(c *admin.Config) { c.WriteTimeout = writeTimeout }})
	adm := bearer(bootstrapToken)
	ctJSON := "Content-Type: application/json"
	if r := e.do("GET", "/v1/orgs", "", adm); r.status != 200 {
		t.Fatalf("before the outage: %d %s", r.status, r.body)
	}

	e.cluster.Stop(1)
	e.cluster.Stop(2)

	// bound is what "within the write timeout" may take on a loaded test machine: the timeout, plus the time to
	// write an answer.
	bound := writeTimeout + 2*time.Second
	within := func(t *testing.T, what string, f func()) {
		t.Helper()
		start := time.Now()
		f()
		d := time.Since(start)
		t.Logf("%s answered in %v", what, d.Round(time.Millisecond))
		if d > bound {
			t.Errorf("%s answered after %v, more than %v", what, d, bound)
		}
	}
	zitadelDeactivate := func(org string) response {
		return e.do("POST", "/management/v1/orgs/me/_deactivate", "{}", adm, ctJSON, "x-zitadel-orgid: "+org)
	}
	commvaultDeactivate := func(org string) response {
		return e.do("POST", "/webconsole/api/organization/"+org+"/action/deactivate", "",
			"Authtoken: QSDK "+bootstrapToken, "Accept: application/json")
	}

	within(t, "ZITADEL REST", func() {
		r := zitadelDeactivate("900")
		var st struct {
			Code    int    `json:"code"`
			Message string `json:"message"`
		}
		if r.status != http.StatusServiceUnavailable || json.Unmarshal([]byte(r.body), &st) != nil || st.Code != 14 ||
			!strings.Contains(st.Message, "DEACT-Unavailable") {
			t.Errorf("ZITADEL REST: %d %s", r.status, r.body)
		}
	})
	within(t, "ZITADEL gRPC", func() {
		conn, err := grpc.NewClient(e.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		ctx := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+bootstrapToken, "x-zitadel-orgid", "901")
		var resp management.DeactivateOrgResponse
		err = conn.Invoke(ctx, "/"+managementconnect.ManagementServiceName+"/DeactivateOrg", &management.DeactivateOrgRequest{}, &resp)
		if grpcstatus.Code(err) != codes.Unavailable {
			t.Errorf("ZITADEL gRPC: %v", err)
		}
	})
	within(t, "ZITADEL Connect", func() {
		cl := managementconnect.NewManagementServiceClient(e.http1, e.url)
		req := connect.NewRequest(&management.DeactivateAppRequest{ProjectId: "p1", AppId: "a1"})
		req.Header().Set("Authorization", "Bearer "+bootstrapToken)
		req.Header().Set("x-zitadel-orgid", "902")
		if _, err := cl.DeactivateApp(context.Background(), req); connect.CodeOf(err) != connect.CodeUnavailable {
			t.Errorf("ZITADEL Connect: %v", err)
		}
	})
	within(t, "Commvault", func() {
		r := commvaultDeactivate("903")
		var cv struct {
			ErrorCode int `json:"errorCode"`
		}
		if r.status != http.StatusServiceUnavailable || json.Unmarshal([]byte(r.body), &cv) != nil || cv.ErrorCode != 12 {
			t.Errorf("Commvault: %d %s", r.status, r.body)
		}
	})
	native := []struct{ name, method, path, body string }{
		{"deactivate org", "POST", "/v1/orgs/904/deactivate", ""},
		{"register app", "PUT", "/v1/projects/p1/apps/a1", `{"orgId":"904","clientIds":["c1"]}`},
		{"import", "POST", "/v1/import", `{"org":{"id":"905"}}`},
		{"create token", "POST", "/v1/tokens", `{"name":"x","allOrgs":true}`},
		{"read", "GET", "/v1/orgs/904", ""},
	}
	for _, c := range native {
		within(t, "native "+c.name, func() {
			r := e.do(c.method, c.path, c.body, adm)
			var eb adminapi.ErrorBody
			if r.status != http.StatusServiceUnavailable || json.Unmarshal([]byte(r.body), &eb) != nil || eb.Error.Code != "unavailable" {
				t.Errorf("native %s: %d %s", c.name, r.status, r.body)
			}
		})
	}

	if err := e.cluster.Restart(1); err != nil {
		t.Fatal(err)
	}
	if err := e.cluster.Restart(2); err != nil {
		t.Fatal(err)
	}
	wait.Eventually(t, "the admin API answers again", func() bool { return e.do("GET", "/v1/orgs", "", adm).status == 200 })

	// The retries: success, or "already deactivated" when the attempt that timed out did commit after all.
	if r := zitadelDeactivate("900"); r.status != 200 && !(r.status == 400 && strings.Contains(r.body, `"code":9`)) {
		t.Errorf("ZITADEL retry: %d %s", r.status, r.body)
	}
	if r := commvaultDeactivate("903"); r.status != 200 && !(r.status == 409 && strings.Contains(r.body, `"errorCode":4`)) {
		t.Errorf("Commvault retry: %d %s", r.status, r.body)
	}
	if r := e.do("POST", "/v1/orgs/904/deactivate", "", adm); r.status != 200 && !(r.status == 409 && strings.Contains(r.body, "already_deactivated")) {
		t.Errorf("native retry: %d %s", r.status, r.body)
	}
	entries, err := e.store.Audit(context.Background(), "", 1000)
	if err != nil {
		t.Fatal(err)
	}
	for _, org := range []string{"900", "903", "904"} {
		n := 0
		for _, en := range entries {
			if en.Key == state.OrgKey(org) && en.Action == "deactivate org" {
				n++
			}
		}
		if n != 1 {
			t.Errorf("org %s deactivated %d times in the audit, want once", org, n)
		}
	}
}

// TestConfirmWaitIsNotTheWriteTimeout: the wait for gateways after a commit has its own bound: a confirmation
// wait longer than the write timeout still answers success (with the count of nodes that confirmed), on every
// API, and the Commvault answer still names the org's domain (read after the wait, under a fresh bound).
func TestConfirmWaitIsNotTheWriteTimeout(t *testing.T) {
	t.Parallel()
	const writeTimeout, confirmWait = 200 * time.Millisecond, 700 * time.Millisecond
	e := newEnv(t, envOpts{config: func(c *admin.Config) { c.WriteTimeout = writeTimeout }})
	ctx := context.Background()
	lease, err := e.cli.Grant(ctx, 30)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _, _ = e.cli.Revoke(ctx, lease.ID) }()
	if _, err := e.cli.Put(ctx, state.NodeKey("stuck"), `{"id":"stuck","appliedRevision":1}`, clientv3WithLease(lease.ID)); err != nil {
		t.Fatal(err)
	}
	wait.Eventually(t, "stuck node seen", func() bool { return len(e.fanout.Nodes()) == 1 })
	if _, err := e.store.PutOrg(ctx, state.Org{ID: "31", Domains: []string{"thirtyone.example"}}, state.Change{Actor: "test"}); err != nil {
		t.Fatal(err)
	}
	confirm := "X-Deact-Confirm-Timeout: " + confirmWait.String()
	adm := bearer(bootstrapToken)

	r := e.do("POST", "/management/v1/orgs/me/_deactivate", "{}", adm, "x-zitadel-orgid: 30", confirm, "Content-Type: application/json")
	if r.status != 200 || r.header.Get("X-Deact-Confirmed") != "0/1" {
		t.Errorf("ZITADEL REST: %d %q %s", r.status, r.header.Get("X-Deact-Confirmed"), r.body)
	}
	conn, err := grpc.NewClient(e.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	gctx := metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+bootstrapToken, "x-zitadel-orgid", "32",
		"x-deact-confirm-timeout", confirmWait.String())
	var resp management.DeactivateOrgResponse
	if err := conn.Invoke(gctx, "/"+managementconnect.ManagementServiceName+"/DeactivateOrg", &management.DeactivateOrgRequest{}, &resp); err != nil {
		t.Errorf("ZITADEL gRPC: %v", err)
	}
	r = e.do("POST", "/webconsole/api/organization/31/action/deactivate", "", "Authtoken: QSDK "+bootstrapToken,
		"Accept: application/json", confirm)
	if r.status != 200 || !strings.Contains(r.body, `"providerDomainName":"thirtyone.example"`) {
		t.Errorf("Commvault: %d %s", r.status, r.body)
	}
	r = e.do("POST", "/v1/orgs/33/deactivate", "", adm, confirm)
	if r.status != 200 || !strings.Contains(r.body, `"confirmed":0,"total":1`) {
		t.Errorf("native: %d %s", r.status, r.body)
	}
}
