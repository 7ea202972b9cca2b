package zitadel_test

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/deact/deact/daemon"
	"github.com/deact/deact/source/internal/sourcetest"
	"github.com/deact/deact/source/zitadel"
	"github.com/deact/deact/source/zitadel/zitadeltest"
	"github.com/deact/deact/state"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/genproto/googleapis/rpc/code"
)

const e2eKey = "e2e-signing-key"

// zitadelCluster is a local 3-gateway deact whose admin node follows a fake ZITADEL.
type zitadelCluster struct {
	t       *testing.T
	fake    *zitadeltest.Server
	c       *sourcetest.Cluster
	gws     []authv3.AuthorizationClient
	zcfg    daemon.ZitadelConfig
	nodeDir string
}

func startZitadelCluster(t *testing.T, fake *zitadeltest.Server) *zitadelCluster {
	t.Helper()
	dir := t.TempDir()
	tokenFile, keyFile := filepath.Join(dir, "pat"), filepath.Join(dir, "keys")
	if err := os.WriteFile(tokenFile, []byte(fake.Token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// Two keys: a rotation in progress; ZITADEL signs with the new one.
	if err := os.WriteFile(keyFile, []byte("old-key\n"+e2eKey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	zc := &zitadelCluster{t: t, fake: fake, nodeDir: dir, zcfg: daemon.ZitadelConfig{
		URL: fake.URL, TokenFile: tokenFile, SigningKeyFile: keyFile, SyncInterval: 300 * time.Millisecond,
	}}
	zc.c = sourcetest.Start(t, dir, func(dc *daemon.Config) { dc.Zitadel = zc.zcfg })
	zc.gws = zc.c.Gateways
	return zc
}

// check asks a gateway about a token request that names an org (x-zitadel-orgid) or only a client ID (form).
func check(gw authv3.AuthorizationClient, org, clientID string) (int32, error) {
	h := map[string]string{"content-type": "application/x-www-form-urlencoded"}
	if org != "" {
		h["x-zitadel-orgid"] = org
	}
	body := "grant_type=client_credentials"
	if clientID != "" {
		body += "&client_id=" + clientID
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := gw.Check(ctx, &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Method: "POST", Path: "/oauth/v2/token", Headers: h, Body: body,
		}},
		ContextExtensions: map[string]string{"op": "token"},
	}})
	if err != nil {
		return 0, err
	}
	return resp.Status.Code, nil
}

func token(t testing.TB, gw authv3.AuthorizationClient, org, clientID string) int32 {
	t.Helper()
	c, err := check(gw, org, clientID)
	if err != nil {
		t.Fatalf("Check: %v", err)
	}
	return c
}

// everyGateway checks that every gateway answers want right now.
func (zc *zitadelCluster) everyGateway(what string, want code.Code, org, clientID string) {
	zc.t.Helper()
	for i, gw := range zc.gws {
		if got := token(zc.t, gw, org, clientID); got != int32(want) {
			zc.t.Errorf("%s: gateway %d answered %v, want %v", what, i+1, code.Code(got), want)
		}
	}
}

// eventually polls until every gateway answers want.
func (zc *zitadelCluster) eventually(what string, want code.Code, org, clientID string) {
	zc.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		ok := true
		for _, gw := range zc.gws {
			if token(zc.t, gw, org, clientID) != int32(want) {
				ok = false
			}
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			zc.t.Fatalf("%s: not every gateway answers %v", what, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// post delivers a signed event to an admin node and returns the status and the confirmation header.
func post(adminAddr string, ev zitadeltest.Event) (int, string, error) {
	body := ev.Body()
	req, _ := http.NewRequest(http.MethodPost, "http://"+adminAddr+zitadel.WebhookPath, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(zitadel.SignatureHeader, zitadeltest.Sign(time.Now(), body, e2eKey))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, resp.Header.Get(zitadel.HeaderConfirmed), nil
}

func deliver(t testing.TB, adminAddr string, ev zitadeltest.Event) (int, string) {
	t.Helper()
	status, confirmed, err := post(adminAddr, ev)
	if err != nil {
		t.Fatal(err)
	}
	return status, confirmed
}

// TestZitadelEndToEnd: a real admin deactd follows a ZITADEL-shaped server; its events and reconciles are
// enforced by all 3 gateways of a local cluster.
func TestZitadelEndToEnd(t *testing.T) {
	fake := zitadeltest.New()
	t.Cleanup(fake.Close)
	orgA, _ := fake.AddOrg("A", "a.example")
	orgB, _ := fake.AddOrg("B")
	orgLocal, _ := fake.AddOrg("L")
	proj, _ := fake.AddProject(orgA, "shop")
	_, clientA, _ := fake.AddApp(proj, "web", zitadeltest.OIDC)
	fake.SetOrgState(orgB, zitadeltest.Inactive) // inactive before deact followed ZITADEL
	zc := startZitadelCluster(t, fake)
	admin := zc.c.Admin.AdminAddr

	// The first reconcile mirrors B's deactivation and A's client ID.
	zc.eventually("org deactivated before the first sync", code.Code_PERMISSION_DENIED, orgB, "")
	zc.everyGateway("active org", code.Code_OK, orgA, "")
	zc.everyGateway("active org's client", code.Code_OK, "", clientA)

	// An org deactivated in ZITADEL: denied on every gateway once the webhook answered.
	status, confirmed := deliver(t, admin, fake.SetOrgState(orgA, zitadeltest.Inactive))
	if status != 200 || confirmed != "3/3" {
		t.Fatalf("deactivation event: %d, confirmed %q", status, confirmed)
	}
	zc.everyGateway("org deactivated by event", code.Code_PERMISSION_DENIED, orgA, "")
	zc.everyGateway("token request naming only a client of that org", code.Code_PERMISSION_DENIED, "", clientA)

	// Reactivation passes again.
	if status, confirmed := deliver(t, admin, fake.SetOrgState(orgA, zitadeltest.Active)); status != 200 || confirmed != "3/3" {
		t.Fatalf("reactivation event: %d, confirmed %q", status, confirmed)
	}
	zc.everyGateway("org reactivated by event", code.Code_OK, orgA, "")
	zc.everyGateway("its client after reactivation", code.Code_OK, "", clientA)

	// A missed event is repaired by the next reconcile.
	fake.SetOrgState(orgA, zitadeltest.Inactive)
	zc.eventually("missed deactivation after a reconcile", code.Code_PERMISSION_DENIED, orgA, "")
	fake.SetOrgState(orgA, zitadeltest.Active)
	zc.eventually("missed reactivation after a reconcile", code.Code_OK, orgA, "")

	// A local deactivation (deact's own admin API) survives reconciles of an org ZITADEL says is active.
	req, _ := http.NewRequest("POST", zc.c.AdminURL()+"/management/v1/orgs/me/_deactivate", strings.NewReader("{}"))
	req.Header.Set("Authorization", "Bearer "+zc.c.AdminToken)
	req.Header.Set("x-zitadel-orgid", orgLocal)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("local deactivation: %d", resp.StatusCode)
	}
	zc.everyGateway("local deactivation", code.Code_PERMISSION_DENIED, orgLocal, "")
	before := fake.Requests()
	for fake.Requests() < before+20 { // several reconciles
		time.Sleep(50 * time.Millisecond)
	}
	zc.everyGateway("local deactivation after reconciles", code.Code_PERMISSION_DENIED, orgLocal, "")

	// ZITADEL down: gateways keep enforcing what was mirrored.
	fake.SetOrgState(orgA, zitadeltest.Inactive)
	zc.eventually("deactivation before ZITADEL goes down", code.Code_PERMISSION_DENIED, orgA, "")
	fake.Fail(http.StatusServiceUnavailable)
	before = fake.Requests()
	for fake.Requests() < before+3 {
		time.Sleep(50 * time.Millisecond)
	}
	zc.everyGateway("while ZITADEL answers 503", code.Code_PERMISSION_DENIED, orgA, "")
	zc.everyGateway("B while ZITADEL answers 503", code.Code_PERMISSION_DENIED, orgB, "")
	fake.Fail(0)
}

// startAdmin starts one more admin node of the cluster that follows the same ZITADEL, authenticating with a
// service account key (JWT profile) instead of a personal access token; it stops at cleanup.
func (zc *zitadelCluster) startAdmin(id string) *daemon.Daemon {
	zc.t.Helper()
	logf, err := os.Create(filepath.Join(zc.nodeDir, id+".log"))
	if err != nil {
		zc.t.Fatal(err)
	}
	zcfg := zc.zcfg
	zcfg.TokenFile, zcfg.KeyFile = "", filepath.Join(zc.nodeDir, id+"-key.json")
	if err := os.WriteFile(zcfg.KeyFile, zc.fake.ServiceAccountKey(), 0o600); err != nil {
		zc.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	d, err := daemon.Start(ctx, daemon.Config{
		DataDir: filepath.Join(zc.nodeDir, id), NodeID: id, Role: daemon.AdminNode, EtcdEndpoints: zc.c.Etcd.Endpoints(),
		AdminToken: zc.c.AdminToken, AdminAddr: "127.0.0.1:0", Zitadel: zcfg,
		Logger: slog.New(slog.NewTextHandler(logf, nil)).With("node", id), Out: io.Discard,
	})
	if err != nil {
		cancel()
		zc.t.Fatal(err)
	}
	zc.t.Cleanup(func() { cancel(); _ = d.Wait(); logf.Close() })
	return d
}

// status polls the ZITADEL source's status record until ok accepts it.
func (zc *zitadelCluster) status(what string, ok func(state.SourceStatus) bool) state.SourceStatus {
	zc.t.Helper()
	return zc.c.Status(zc.t, what, zitadel.SourceName, 20*time.Second, ok)
}

// TestZitadelLeaderMovesAndStatus: two admin nodes follow ZITADEL, one syncs; the webhook works on both; when
// the leader stops the other one takes over the sync; when ZITADEL fails the gateways keep enforcing and the
// status says why.
func TestZitadelLeaderMovesAndStatus(t *testing.T) {
	fake := zitadeltest.New()
	t.Cleanup(fake.Close)
	orgA, _ := fake.AddOrg("A")
	orgB, _ := fake.AddOrg("B")
	zc := startZitadelCluster(t, fake)
	second := zc.startAdmin("admin2")
	zc.status("first leader", func(st state.SourceStatus) bool { return st.Leader == "admin" && !st.LastReconcileOKAt.IsZero() })

	// The webhook on the node that does not lead applies the event and confirms it on every gateway.
	if status, confirmed := deliver(t, second.AdminAddr, fake.SetOrgState(orgB, zitadeltest.Inactive)); status != 200 || confirmed != "3/3" {
		t.Fatalf("event to the follower: %d, confirmed %q", status, confirmed)
	}
	zc.everyGateway("event applied by the follower", code.Code_PERMISSION_DENIED, orgB, "")

	// The leader stops: the other admin node syncs, and repairs a missed event.
	if err := zc.c.Admin.Stop(); err != nil {
		t.Fatal(err)
	}
	fake.SetOrgState(orgA, zitadeltest.Inactive)
	zc.eventually("missed event after the leader stopped", code.Code_PERMISSION_DENIED, orgA, "")
	zc.status("new leader", func(st state.SourceStatus) bool { return st.Leader == "admin2" })

	// ZITADEL answers 401 (here to every request, even with a fresh token): the status reports it, gateways keep enforcing, nothing is undone.
	fake.Fail(http.StatusUnauthorized)
	st := zc.status("401 reported", func(st state.SourceStatus) bool { return strings.Contains(st.LastReconcileError, "HTTP 401") })
	if st.ReconcileErrors == 0 {
		t.Errorf("status = %+v", st)
	}
	// The same through the admin API operators use (deactctl sources).
	req, _ := http.NewRequest("GET", "http://"+second.AdminAddr+"/v1/sources", nil)
	req.Header.Set("Authorization", "Bearer "+zc.c.AdminToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(b), "HTTP 401") || !strings.Contains(string(b), `"admin2"`) {
		t.Errorf("GET /v1/sources: %d %s", resp.StatusCode, b)
	}
	zc.everyGateway("A while ZITADEL refuses the token", code.Code_PERMISSION_DENIED, orgA, "")
	zc.everyGateway("B while ZITADEL refuses the token", code.Code_PERMISSION_DENIED, orgB, "")
	// ZITADEL unreachable.
	fake.Close()
	zc.status("unreachable reported", func(st state.SourceStatus) bool { return strings.Contains(st.LastReconcileError, "unreachable") })
	zc.everyGateway("A while ZITADEL is down", code.Code_PERMISSION_DENIED, orgA, "")
}
