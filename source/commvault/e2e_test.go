package commvault_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/deact/deact/daemon"
	"github.com/deact/deact/internal/wait"
	"github.com/deact/deact/source/commvault"
	"github.com/deact/deact/source/commvault/commvaulttest"
	"github.com/deact/deact/source/internal/sourcetest"
	"github.com/deact/deact/state"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/genproto/googleapis/rpc/code"
)

// cvCluster is a local 3-gateway deact whose admin node follows a fake Commvault.
type cvCluster struct {
	t    *testing.T
	fake *commvaulttest.Server
	c    *sourcetest.Cluster
	gws  []authv3.AuthorizationClient
}

func startCluster(t testing.TB, fake *commvaulttest.Server, cv daemon.CommvaultConfig) *cvCluster {
	t.Helper()
	dir := t.TempDir()
	if cv.User == "" && cv.TokenFile == "" {
		cv.User, cv.PasswordFile = fake.User, filepath.Join(dir, "password")
		if err := os.WriteFile(cv.PasswordFile, []byte(fake.Password+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cv.URL = fake.URL
	c := sourcetest.Start(t, dir, func(dc *daemon.Config) { dc.Commvault = cv })
	cc := &cvCluster{fake: fake, c: c, gws: c.Gateways}
	if tt, ok := t.(*testing.T); ok {
		cc.t = tt
	}
	return cc
}

// A Commvault request as Envoy sends it to ext_authz: a login (the org comes from the login name) or a
// backup/restore of an org's client (the org comes from the route's context extension).
type cvRequest struct {
	name string
	req  *authv3.CheckRequest
}

func login(user string) cvRequest {
	return cvRequest{"login " + user, &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Method: "POST", Path: "/webconsole/api/Login",
			Headers: map[string]string{"content-type": "application/json", "accept": "application/json"},
			Body:    fmt.Sprintf(`{"username":%q,"password":"cGFzcw=="}`, user),
		}},
	}}}
}

func action(org, what string) cvRequest {
	path := "/webconsole/api/Subclient/12/action/backup"
	if what == "restore" {
		path = "/webconsole/api/retrieveToClient"
	}
	return cvRequest{what + " of org " + org, &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Method: "POST", Path: path, Headers: map[string]string{"accept": "application/json", "authtoken": "QSDK 1234"},
		}},
		ContextExtensions: map[string]string{"org_id": org},
	}}}
}

func answer(t testing.TB, gw authv3.AuthorizationClient, r cvRequest) code.Code {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := gw.Check(ctx, r.req)
	if err != nil {
		t.Fatalf("Check %s: %v", r.name, err)
	}
	return code.Code(resp.Status.Code)
}

// allAnswer reports whether every gateway answers want to r now.
func (cc *cvCluster) allAnswer(t testing.TB, r cvRequest, want code.Code) bool {
	for _, gw := range cc.gws {
		if answer(t, gw, r) != want {
			return false
		}
	}
	return true
}

// within waits until every gateway answers every request as wanted, and fails once a third round has started
// since `rounds` (Commvault's count of listings when the change was made): the first round that starts after the
// change, at most one interval later, must show it; the second one's start is slack for the gateways' watch
// under a loaded machine; a third means a round missed the change.
func (cc *cvCluster) within(what string, rounds int64, want map[string]code.Code, reqs ...cvRequest) {
	cc.t.Helper()
	for {
		ok := true
		for _, r := range reqs {
			if !cc.allAnswer(cc.t, r, want[r.name]) {
				ok = false
				break
			}
		}
		if ok {
			return
		}
		if n := cc.fake.ListRequests(); n > rounds+2 {
			for _, r := range reqs {
				for i, gw := range cc.gws {
					cc.t.Logf("gateway %d: %s → %v (want %v)", i+1, r.name, answer(cc.t, gw, r), want[r.name])
				}
			}
			cc.t.Fatalf("%s: not on every gateway within one interval (%d rounds since the change)", what, n-rounds)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (cc *cvCluster) status(what string, ok func(state.SourceStatus) bool) state.SourceStatus {
	cc.t.Helper()
	return cc.c.Status(cc.t, what, commvault.SourceName, 30*time.Second, ok)
}

func (cc *cvCluster) get(path string) string {
	cc.t.Helper()
	req, _ := http.NewRequest("GET", cc.c.AdminURL()+path, nil)
	req.Header.Set("Authorization", "Bearer "+cc.c.AdminToken)
	a := wait.Response(cc.t, http.DefaultClient, req)
	if a.Status != 200 {
		cc.t.Fatalf("GET %s: %d %s", path, a.Status, a.Body)
	}
	return a.Body
}

const (
	ok     = code.Code_OK
	denied = code.Code_PERMISSION_DENIED
)

// TestCommvaultEndToEnd: a real admin deactd polls a Commvault-shaped server; what Commvault deactivates is
// enforced by all 3 gateways of a local cluster within one interval, login names of the org's domains included;
// deact's own deactivation is a layer polls leave alone; a failing Commvault leaves the mirrored state in force
// and shows in the status and the metrics.
func TestCommvaultEndToEnd(t *testing.T) {
	fake := commvaulttest.New()
	t.Cleanup(fake.Close)
	acme := fake.AddOrg("Acme", "acme", "acme.example")
	fake.Update(acme, func(o *commvaulttest.Org) { o.PrimaryDomain = "backup.acme.example" })
	beta := fake.AddOrg("Beta", "beta", "beta.example")
	cc := startCluster(t, fake, daemon.CommvaultConfig{SyncInterval: time.Second, Timeout: 500 * time.Millisecond})
	cc.t = t
	cc.status("first round", func(st state.SourceStatus) bool { return st.Leader == "admin" && st.Records == 2 })

	backup, restore := action(acme, "backup"), action(acme, "restore")
	logins := []cvRequest{login(`acme\bob`), login("bob@acme.example"), login("bob@Backup.ACME.example"), login("ACME\\bob")}
	betaLogin, betaBackup := login(`beta\carol`), action(beta, "backup")
	all := append([]cvRequest{backup, restore, betaLogin, betaBackup}, logins...)
	expect := func(changes map[string]code.Code) map[string]code.Code {
		m := map[string]code.Code{}
		for _, r := range all {
			m[r.name] = ok
		}
		for k, v := range changes {
			m[k] = v
		}
		return m
	}

	// disableBackup only: backups are denied on every gateway, logins and restores are not.
	rounds := fake.ListRequests()
	fake.Deactivate(acme, false, true, false)
	cc.within("backup disabled", rounds, expect(map[string]code.Code{backup.name: denied}), all...)

	// Reactivation.
	rounds = fake.ListRequests()
	fake.Activate(acme)
	cc.within("reactivated", rounds, expect(nil), all...)

	// disableLogin: every spelling of a login name of the org's domains is denied at login.
	rounds = fake.ListRequests()
	fake.Deactivate(acme, true, false, false)
	want := map[string]code.Code{}
	for _, r := range logins {
		want[r.name] = denied
	}
	cc.within("login disabled", rounds, expect(want), all...)

	// deact's own deactivation of an org Commvault says is active (its Commvault-compatible admin API) is a layer
	// of its own: polls do not undo it, and lifting it leaves Commvault's layer as it is.
	cvAdmin := func(org, act, body string) {
		t.Helper()
		req, _ := http.NewRequest("POST", cc.c.AdminURL()+"/webconsole/api/organization/"+org+"/action/"+act, strings.NewReader(body))
		req.Header.Set("Authtoken", "QSDK "+cc.c.AdminToken)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("deact's %s of org %s: %d %s", act, org, resp.StatusCode, b)
		}
	}
	cvAdmin(beta, "deactivate", `{"deactivateOptions":{"disableBackup":true}}`)
	local := map[string]code.Code{betaBackup.name: denied}
	for k, v := range want {
		local[k] = v
	}
	cc.within("deact's own deactivation", fake.ListRequests(), expect(local), all...)
	deadline := time.Now().Add(20 * time.Second)
	for n := fake.ListRequests() + 3; fake.ListRequests() < n; { // three more polls
		if time.Now().After(deadline) {
			t.Fatal("Commvault is no longer polled")
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, r := range all {
		if w := expect(local)[r.name]; !cc.allAnswer(t, r, w) {
			t.Errorf("after polls of a Commvault that has beta active: %s is not %v on every gateway", r.name, w)
		}
	}
	cvAdmin(beta, "activate", "")
	cc.within("deact's own deactivation lifted", fake.ListRequests(), expect(want), all...)

	// What operators see: deactctl sources (GET /v1/sources) and the metrics.
	st := cc.status("rounds reported", func(st state.SourceStatus) bool { return st.Reconciles >= 3 && st.LastReconcileError == "" })
	if st.Kind != "commvault" || st.Upstream != fake.URL || st.LastReconcileOKAt.IsZero() {
		t.Errorf("status: %+v", st)
	}
	if body := cc.get("/v1/sources"); !strings.Contains(body, `"commvault"`) || !strings.Contains(body, `"lagMs"`) {
		t.Errorf("GET /v1/sources: %s", body)
	}
	if m := cc.get("/metrics"); !strings.Contains(m, `deact_source_reconcile_changes_total{source="commvault"}`) ||
		!strings.Contains(m, `deact_source_event_lag_seconds{source="commvault"}`) {
		t.Errorf("metrics lack the commvault series")
	}

	// Commvault fails in three ways; each time the mirrored state stays in force and the status says why.
	for _, f := range []struct {
		name         string
		inject, undo func()
		msg          string
	}{
		{"wrong credentials", func() { fake.Password = "rotated"; fake.ExpireTokens() }, func() { fake.Password = "secret" }, "Invalid Username or Password"},
		{"500", func() { fake.Fail(500) }, func() { fake.Fail(0) }, "HTTP 500"},
		{"timeout", func() { fake.Delay(2 * time.Second) }, func() { fake.Delay(0) }, "unreachable"},
	} {
		f.inject()
		fake.Activate(acme) // not seen while Commvault fails
		cc.status(f.name+" reported", func(st state.SourceStatus) bool { return strings.Contains(st.LastReconcileError, f.msg) })
		if body := cc.get("/v1/sources"); !strings.Contains(body, f.msg) {
			t.Errorf("%s: GET /v1/sources does not say so: %s", f.name, body)
		}
		for _, r := range all {
			if w := expect(want)[r.name]; !cc.allAnswer(t, r, w) {
				t.Errorf("%s: %s is no longer %v on every gateway while Commvault fails", f.name, r.name, w)
			}
		}
		fake.Deactivate(acme, true, false, false)
		f.undo()
		cc.status(f.name+" recovered", func(st state.SourceStatus) bool { return st.LastReconcileError == "" })
	}
	if m := cc.get("/metrics"); !strings.Contains(m, `deact_source_upstream_errors_total{class="unauthorized",source="commvault"}`) ||
		!strings.Contains(m, `deact_source_upstream_errors_total{class="unreachable",source="commvault"}`) {
		t.Errorf("metrics lack the upstream error classes")
	}
}

// startAdmin starts one more admin node of the cluster that polls the same Commvault; it stops at cleanup.
func (cc *cvCluster) startAdmin(id string, cv daemon.CommvaultConfig) *daemon.Daemon {
	cc.t.Helper()
	dir := cc.t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	d, err := daemon.Start(ctx, daemon.Config{
		DataDir: filepath.Join(dir, id), NodeID: id, Role: daemon.AdminNode, EtcdEndpoints: cc.c.Etcd.Endpoints(),
		AdminToken: cc.c.AdminToken, AdminAddr: "127.0.0.1:0", Commvault: cv,
		Logger: slog.New(slog.DiscardHandler), Out: io.Discard,
	})
	if err != nil {
		cancel()
		cc.t.Fatal(err)
	}
	cc.t.Cleanup(func() { cancel(); _ = d.Wait() })
	return d
}

// leaderGauge reads deact_source_leader{source="commvault"} from a node's metrics.
func leaderGauge(t *testing.T, adminAddr string) string {
	t.Helper()
	resp, err := http.Get("http://" + adminAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(b), "\n") {
		if v, found := strings.CutPrefix(line, `deact_source_leader{source="commvault"} `); found {
			return v
		}
	}
	return "missing"
}

// TestCommvaultLeaderMoves: two admin nodes are configured to poll; only the leader does; when it stops, the
// other one takes over and goes on mirroring Commvault's changes.
func TestCommvaultLeaderMoves(t *testing.T) {
	fake := commvaulttest.New()
	t.Cleanup(fake.Close)
	acme := fake.AddOrg("Acme", "acme")
	dir := t.TempDir()
	pw := filepath.Join(dir, "password")
	if err := os.WriteFile(pw, []byte(fake.Password), 0o600); err != nil {
		t.Fatal(err)
	}
	cv := daemon.CommvaultConfig{URL: fake.URL, User: fake.User, PasswordFile: pw, SyncInterval: 300 * time.Millisecond}
	cc := startCluster(t, fake, cv)
	cc.t = t
	second := cc.startAdmin("admin2", cv)
	cc.status("first leader", func(st state.SourceStatus) bool { return st.Leader == "admin" && st.Records == 1 })
	if a, b := leaderGauge(t, cc.c.Admin.AdminAddr), leaderGauge(t, second.AdminAddr); a != "1" || b != "0" {
		t.Fatalf("leader gauges: admin %s, admin2 %s", a, b)
	}
	backup := action(acme, "backup")
	rounds := fake.ListRequests()
	fake.Deactivate(acme, false, true, false)
	cc.within("backup disabled, first leader", rounds, map[string]code.Code{backup.name: denied}, backup)

	if err := cc.c.Admin.Stop(); err != nil {
		t.Fatal(err)
	}
	cc.status("new leader", func(st state.SourceStatus) bool { return st.Leader == "admin2" })
	rounds = fake.ListRequests()
	fake.Activate(acme)
	cc.within("reactivated, second leader", rounds, map[string]code.Code{backup.name: ok}, backup)
	if b := leaderGauge(t, second.AdminAddr); b != "1" {
		t.Errorf("admin2's leader gauge %s", b)
	}
}
