package admin_test

import (
	"context"
	"strings"
	"testing"

	"github.com/deact/deact/state"
)

// trustEnv is an admin API with records of org B and admin tokens for org A and org B only.
func trustEnv(t *testing.T) (e *env, tokA, tokB string) {
	t.Helper()
	e = newEnv(t, envOpts{nodes: 1})
	tokA = bearer(e.token("token-of-org-A-trust-0123", state.Token{Name: "a", HomeOrg: "A", Orgs: []string{"A"}, Role: state.RoleAdmin}))
	tokB = bearer(e.token("token-of-org-B-trust-0123", state.Token{Name: "b", HomeOrg: "B", Orgs: []string{"B"}, Role: state.RoleAdmin}))
	return e, tokA, tokB
}

// TestAppIDsOfAnotherOrgAreRefused (issue 14, item 4): org A can neither register nor deactivate an app under
// its own project with the app ID of B's app, nor deactivate a project ID B's apps name, nor take B's client
// ID, through any API; each is a conflict that writes nothing, and B keeps its deactivation and its project.
func TestAppIDsOfAnotherOrgAreRefused(t *testing.T) {
	t.Parallel()
	e, tokA, tokB := trustEnv(t)
	ctJSON := "Content-Type: application/json"
	for _, req := range []struct{ method, path, body string }{
		{"PUT", "/v1/projects/projB/apps/X", `{"orgId":"B","clientIds":["X@b"]}`},
		{"POST", "/v1/projects/projB/apps/X/deactivate", ``},
	} {
		if r := e.do(req.method, req.path, req.body, tokB); r.status != 200 {
			t.Fatalf("%s %s as B: %d %s", req.method, req.path, r.status, r.body)
		}
	}
	for _, c := range []struct {
		name, method, path, body string
		headers                  []string
		status                   int
		want                     string
	}{
		{"native register B's app id in A's project", "PUT", "/v1/projects/projA/apps/X", `{"orgId":"A"}`, nil, 409, `"code":"conflict"`},
		{"native deactivate B's app id in A's project", "POST", "/v1/projects/projA/apps/X/deactivate", `{"orgId":"A"}`, nil, 409, "registered under another project"},
		{"native deactivate B's project id", "POST", "/v1/projects/projB/deactivate", `{"orgId":"A"}`, nil, 409, "has apps of another org"},
		{"native register an app in B's project", "PUT", "/v1/projects/projB/apps/Y", `{"orgId":"A"}`, nil, 409, "has apps of another org"},
		{"native take B's client id", "PUT", "/v1/projects/projA/apps/W", `{"orgId":"A","clientIds":["X@b"]}`, nil, 409, "registered to another record"},
		{"zitadel deactivate B's app id in A's project", "POST", "/management/v1/projects/projA/apps/X/_deactivate", "{}", []string{ctJSON}, 409, `"code":6`},
		{"zitadel deactivate B's project id", "POST", "/management/v1/projects/projB/_deactivate", "{}", []string{ctJSON}, 409, `"code":6`},
	} {
		t.Run(c.name, func(t *testing.T) {
			before := e.revision()
			r := e.do(c.method, c.path, c.body, append([]string{tokA}, c.headers...)...)
			if r.status != c.status || !strings.Contains(r.body, c.want) {
				t.Errorf("got %d %s, want %d with %s", r.status, r.body, c.status, c.want)
			}
			if after := e.revision(); after != before {
				t.Errorf("etcd revision moved %d -> %d", before, after)
			}
		})
	}
	// B's app is still deactivated, and B can still reactivate it and deactivate its project.
	ctx := context.Background()
	if v, err := e.store.GetApp(ctx, "projB", "X"); err != nil || !v.Record.IsDeactivated() || v.Record.OrgID != "B" {
		t.Fatalf("B's app = %+v %v", v, err)
	}
	for _, path := range []string{"/v1/projects/projB/apps/X/reactivate", "/v1/projects/projB/deactivate", "/v1/projects/projB/reactivate"} {
		if r := e.do("POST", path, `{"orgId":"B"}`, tokB); r.status != 200 {
			t.Errorf("%s as B: %d %s", path, r.status, r.body)
		}
	}
	if msgs := e.errors.take(); len(msgs) > 0 {
		t.Errorf("error-level logs: %q", msgs)
	}
}

// TestOwnerlessRecordsNeedAGlobalToken (issue 14, item 5): a project or app a global admin deactivated without
// naming an org cannot be reactivated, or taken over, by a token scoped to an org, through the native or the
// ZITADEL API; the global admin still can.
func TestOwnerlessRecordsNeedAGlobalToken(t *testing.T) {
	t.Parallel()
	e, tokA, _ := trustEnv(t)
	adm := bearer(bootstrapToken)
	ctJSON := "Content-Type: application/json"
	for _, path := range []string{"/v1/projects/p0/deactivate", "/v1/projects/p1/apps/a0/deactivate"} {
		if r := e.do("POST", path, "", adm); r.status != 200 {
			t.Fatalf("%s as admin: %d %s", path, r.status, r.body)
		}
	}
	for _, c := range []struct {
		name, path, body string
		headers          []string
	}{
		{"native reactivate project naming A", "/v1/projects/p0/reactivate", `{"orgId":"A"}`, nil},
		{"native reactivate project", "/v1/projects/p0/reactivate", ``, nil},
		{"native reactivate app naming A", "/v1/projects/p1/apps/a0/reactivate", `{"orgId":"A"}`, nil},
		{"native reactivate app", "/v1/projects/p1/apps/a0/reactivate", ``, nil},
		{"zitadel reactivate project", "/management/v1/projects/p0/_reactivate", "{}", []string{ctJSON}},
		{"zitadel reactivate app", "/management/v1/projects/p1/apps/a0/_reactivate", "{}", []string{ctJSON}},
	} {
		t.Run(c.name, func(t *testing.T) {
			before := e.revision()
			r := e.do("POST", c.path, c.body, append([]string{tokA}, c.headers...)...)
			if r.status != 403 {
				t.Errorf("got %d %s, want 403", r.status, r.body)
			}
			if after := e.revision(); after != before {
				t.Errorf("etcd revision moved %d -> %d", before, after)
			}
		})
	}
	if r := e.do("PUT", "/v1/projects/p1/apps/a0", `{"orgId":"A"}`, tokA); r.status != 403 {
		t.Errorf("A registering the ownerless app: %d %s", r.status, r.body)
	}
	ctx := context.Background()
	if p, err := e.store.GetProject(ctx, "p0"); err != nil || p.Record.OrgID != "" || !p.Record.IsDeactivated() {
		t.Fatalf("p0 = %+v %v", p, err)
	}
	if a, err := e.store.GetApp(ctx, "p1", "a0"); err != nil || a.Record.OrgID != "" || !a.Record.IsDeactivated() {
		t.Fatalf("p1/a0 = %+v %v", a, err)
	}
	for _, path := range []string{"/v1/projects/p0/reactivate", "/v1/projects/p1/apps/a0/reactivate"} {
		if r := e.do("POST", path, "", adm); r.status != 200 {
			t.Errorf("%s as admin: %d %s", path, r.status, r.body)
		}
	}
}

// TestDeactivationsAddUpAcrossAPIs (issue 14, item 6): a Commvault backup-only deactivation adds backup to the
// login and token ZITADEL disabled; Commvault's activate takes back only what Commvault disabled; ZITADEL still
// answers "already deactivated" for its part; the audit says what changed.
func TestDeactivationsAddUpAcrossAPIs(t *testing.T) {
	t.Parallel()
	e, _, _ := trustEnv(t)
	adm := bearer(bootstrapToken)
	ctJSON := "Content-Type: application/json"
	cv := "Authtoken: QSDK " + bootstrapToken
	ctx := context.Background()
	disabled := func(want state.Ops) {
		t.Helper()
		if v, err := e.store.GetOrg(ctx, "7"); err != nil || v.Record.Disabled != want {
			t.Fatalf("org 7 = %+v %v, want %s disabled", v.Record, err, want)
		}
	}
	step := func(what string, r response, status int) {
		t.Helper()
		if r.status != status {
			t.Fatalf("%s: %d %s, want %d", what, r.status, r.body, status)
		}
	}
	step("zitadel deactivate", e.do("POST", "/management/v1/orgs/me/_deactivate", "{}", adm, ctJSON, "x-zitadel-orgid: 7"), 200)
	step("commvault backup-only", e.do("POST", "/webconsole/api/organization/7/action/deactivate",
		`<Api_DeactivateOrganizationRequest><deactivateOptions disableLogin="0" disableBackup="1" disableRestore="0"/></Api_DeactivateOrganizationRequest>`,
		cv, "Content-Type: application/xml"), 200)
	disabled(state.OpLogin | state.OpToken | state.OpBackup)
	r := e.do("GET", "/webconsole/api/organization/7", "", cv, "Accept: application/json")
	if !strings.Contains(r.body, `"disableBackup":true,"disableLogin":true`) {
		t.Errorf("commvault GET = %s", r.body)
	}
	if r := e.do("POST", "/management/v1/orgs/me/_deactivate", "{}", adm, ctJSON, "x-zitadel-orgid: 7"); r.status != 400 || !strings.Contains(r.body, `"code":9`) {
		t.Errorf("zitadel deactivate again: %d %s", r.status, r.body)
	}
	step("commvault activate", e.do("POST", "/webconsole/api/organization/7/action/activate", "", cv), 200)
	disabled(state.OpLogin | state.OpToken)
	r = e.do("POST", "/webconsole/api/organization/7/action/activate", "", cv, "Accept: application/json")
	if r.status != 409 || !strings.Contains(r.body, `"errorCode":4`) || !strings.Contains(r.body, "zitadel: login,token") {
		t.Errorf("commvault activate again: %d %s", r.status, r.body)
	}
	var audit struct{ Entries []state.AuditEntry }
	r = e.do("GET", "/v1/audit?limit=1", "", adm)
	r.json(t, &audit)
	if len(audit.Entries) != 1 || audit.Entries[0].Detail != "commvault: backup -> none; disabled: login,token,backup -> login,token" {
		t.Errorf("audit = %+v", audit.Entries)
	}
	// The native API adds its own ops, and its reactivate enables the ops it names, whoever disabled them.
	step("native deactivate restore", e.do("POST", "/v1/orgs/7/deactivate", `{"ops":"restore"}`, adm), 200)
	step("native reactivate login", e.do("POST", "/v1/orgs/7/reactivate", `{"ops":"login"}`, adm), 200)
	disabled(state.OpToken | state.OpRestore)
	step("zitadel reactivate", e.do("POST", "/management/v1/orgs/me/_reactivate", "{}", adm, ctJSON, "x-zitadel-orgid: 7"), 200)
	disabled(state.OpRestore)
	step("native reactivate", e.do("POST", "/v1/orgs/7/reactivate", "", adm), 200)
	disabled(0)
}

// TestImportUnknownStateFailsClosed (issue 14, item 7): an import line whose state deact does not know is
// refused with its line number, for orgs, projects and apps alike, and a deactivated org stays deactivated.
func TestImportUnknownStateFailsClosed(t *testing.T) {
	t.Parallel()
	e, _, _ := trustEnv(t)
	adm := bearer(bootstrapToken)
	if r := e.do("POST", "/v1/orgs/9/deactivate", `{"ops":"all"}`, adm); r.status != 200 {
		t.Fatalf("deactivate: %d %s", r.status, r.body)
	}
	for _, line := range []string{
		`{"org":{"id":"9","state":"Deactivated"}}`,
		`{"org":{"id":"9","state":"inactive"}}`,
		`{"org":{"id":"9","stat":"deactivated"}}`,
		`{"project":{"id":"p","orgId":"9","state":"Deactivated"}}`,
		`{"app":{"id":"a","projectId":"p","orgId":"9","state":"Deactivated"}}`,
	} {
		before := e.revision()
		r := e.do("POST", "/v1/import", `{"account":{"id":"u","orgId":"9"}}`+"\n"+line+"\n", adm)
		if r.status != 400 || !strings.Contains(r.body, "line 2") {
			t.Errorf("%s: %d %s, want 400 naming line 2", line, r.status, r.body)
		}
		if after := e.revision(); after != before {
			t.Errorf("%s: etcd revision moved %d -> %d", line, before, after)
		}
	}
	if v, err := e.store.GetOrg(context.Background(), "9"); err != nil || v.Record.Disabled != state.OpsAll {
		t.Fatalf("org 9 = %+v %v", v.Record, err)
	}
}
