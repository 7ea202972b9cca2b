package admin_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/deact/deact/admin"
	"github.com/deact/deact/admin/adminapi"
	"github.com/deact/deact/state"
)

func TestNativeAPI(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{nodes: 3})
	adm := bearer(bootstrapToken)
	ok := func(r response, status int) response {
		t.Helper()
		if r.status != status {
			t.Fatalf("got %d %s, want %d", r.status, r.body, status)
		}
		return r
	}
	var w adminapi.WriteResult
	ok(e.do("PUT", "/v1/orgs/10", `{"name":"acme","domains":["Acme.example"]}`, adm), 200).json(t, &w)
	if w.Revision == 0 || w.Confirmation.Confirmed != 3 || w.Confirmation.Total != 3 || w.OrgID != "10" {
		t.Fatalf("register org = %+v", w)
	}
	ok(e.do("PUT", "/v1/projects/p1/apps/a1", `{"orgId":"10","clientIds":["c1@p1"]}`, adm), 200)
	ok(e.do("PUT", "/v1/accounts/u1", `{"orgId":"10"}`, adm), 200)
	r := ok(e.do("POST", "/v1/orgs/10/deactivate", `{"ops":"login,backup","reason":"unpaid"}`, adm), 200)
	if r.header.Get("X-Deact-Confirmed") != "3/3" {
		t.Errorf("confirmed header = %q", r.header.Get("X-Deact-Confirmed"))
	}
	var org state.Versioned[state.Org]
	ok(e.do("GET", "/v1/orgs/10", "", adm), 200).json(t, &org)
	if org.Record.Disabled != state.OpLogin|state.OpBackup || org.Record.Name != "acme" || org.Record.Reason != "unpaid" {
		t.Fatalf("org = %+v", org)
	}
	r = ok(e.do("POST", "/v1/orgs/10/deactivate", `{"ops":"login"}`, adm), 409)
	if !strings.Contains(r.body, `"code":"already_deactivated"`) {
		t.Errorf("body = %s", r.body)
	}
	ok(e.do("POST", "/v1/projects/p1/apps/a1/deactivate", ``, adm), 200)
	ok(e.do("POST", "/v1/projects/p1/deactivate", `{"orgId":"10"}`, adm), 200)
	ok(e.do("POST", "/v1/projects/p1/reactivate", ``, adm), 200)
	var app state.Versioned[state.App]
	ok(e.do("GET", "/v1/projects/p1/apps/a1", "", adm), 200).json(t, &app)
	if !app.Record.IsDeactivated() || app.Record.OrgID != "10" {
		t.Fatalf("app = %+v", app)
	}

	// Listing with cursor pagination.
	for i := range 5 {
		ok(e.do("PUT", fmt.Sprintf("/v1/orgs/2%d", i), `{}`, adm), 200)
	}
	var pg state.Page[state.Org]
	ok(e.do("GET", "/v1/orgs?limit=4", "", adm), 200).json(t, &pg)
	if len(pg.Items) != 4 || pg.Next == "" || pg.Revision == 0 {
		t.Fatalf("page 1 = %+v", pg)
	}
	var pg2 state.Page[state.Org]
	ok(e.do("GET", "/v1/orgs?limit=4&after="+pg.Next, "", adm), 200).json(t, &pg2)
	if len(pg2.Items) != 2 || pg2.Next != "" {
		t.Fatalf("page 2 = %+v", pg2)
	}
	var apps state.Page[state.App]
	ok(e.do("GET", "/v1/apps", "", adm), 200).json(t, &apps)
	if len(apps.Items) != 1 {
		t.Fatalf("apps = %+v", apps)
	}

	// Import, audit, nodes.
	ndjson := `{"org":{"id":"500","name":"imported"}}` + "\n" + `{"app":{"id":"a9","projectId":"p9","orgId":"500","clientIds":["c9"]}}` + "\n"
	var imp adminapi.ImportResponse
	ok(e.do("POST", "/v1/import", ndjson, adm, "Content-Type: application/x-ndjson"), 200).json(t, &imp)
	if imp.Records != 2 || imp.Confirmation.Confirmed != 3 {
		t.Fatalf("import = %+v", imp)
	}
	r = ok(e.do("POST", "/v1/import", `{"org":{"id":"a/b"}}`, adm), 400)
	if !strings.Contains(r.body, "line 1") {
		t.Errorf("bad import body = %s", r.body)
	}
	var audit struct{ Entries []state.AuditEntry }
	ok(e.do("GET", "/v1/audit?limit=3", "", adm), 200).json(t, &audit)
	if len(audit.Entries) != 3 || audit.Entries[0].Action != "import" {
		t.Fatalf("audit = %+v", audit)
	}
	var nodes adminapi.NodesResponse
	ok(e.do("GET", "/v1/nodes", "", adm), 200).json(t, &nodes)
	if len(nodes.Nodes) != 3 || nodes.Nodes[0].AppliedRevision == 0 {
		t.Fatalf("nodes = %+v", nodes)
	}

	// Tokens: the secret comes back once and works; the store holds only its hash.
	var created adminapi.TokenCreated
	ok(e.do("POST", "/v1/tokens", `{"name":"ops-10","orgs":["10"],"role":"admin"}`, adm), 201).json(t, &created)
	if created.Token == "" || created.Record.Hash != state.HashToken(created.Token) || created.Record.HomeOrg != "10" {
		t.Fatalf("created = %+v", created)
	}
	raw, err := e.cli.Get(t.Context(), state.TokenKey(created.Record.Hash))
	if err != nil || len(raw.Kvs) != 1 || strings.Contains(string(raw.Kvs[0].Value), created.Token) {
		t.Fatalf("stored token record leaks the secret or is missing: %v", err)
	}
	ok(e.do("POST", "/v1/orgs/10/reactivate", "", bearer(created.Token)), 200)
	var toks state.Page[state.Token]
	ok(e.do("GET", "/v1/tokens", "", bearer(created.Token)), 200).json(t, &toks)
	if len(toks.Items) != 1 || toks.Items[0].Record.Name != "ops-10" {
		t.Fatalf("scoped token sees %+v", toks)
	}
	ok(e.do("DELETE", "/v1/tokens/"+created.Record.Hash, "", adm), 200)
	ok(e.do("GET", "/v1/orgs/10", "", bearer(created.Token)), 401)
	if msgs := e.errors.take(); len(msgs) > 0 {
		t.Errorf("error-level logs: %q", msgs)
	}
}

// TestScopeEveryEndpoint: a token for org A can read and change A, and nothing of org B, on every endpoint of
// every API; etcd is unchanged by each refusal.
func TestScopeEveryEndpoint(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	adm := bearer(bootstrapToken)
	for _, req := range []struct{ method, path, body string }{
		{"PUT", "/v1/orgs/A", `{"name":"a"}`}, {"PUT", "/v1/orgs/B", `{"name":"b"}`},
		{"PUT", "/v1/projects/pa/apps/aa", `{"orgId":"A"}`}, {"PUT", "/v1/projects/pb/apps/ab", `{"orgId":"B"}`},
		{"POST", "/v1/projects/pb/deactivate", `{"orgId":"B"}`}, {"PUT", "/v1/accounts/ub", `{"orgId":"B"}`},
	} {
		if r := e.do(req.method, req.path, req.body, adm); r.status != 200 {
			t.Fatalf("%s %s: %d %s", req.method, req.path, r.status, r.body)
		}
	}
	tokA := bearer(e.token("token-of-org-A-0123456", state.Token{Name: "a", HomeOrg: "A", Orgs: []string{"A"}, Role: state.RoleAdmin}))
	bTok := state.Token{Name: "b", HomeOrg: "B", Orgs: []string{"B"}, Role: state.RoleAdmin}
	e.token("token-of-org-B-0123456", bTok)
	bHash := state.HashToken("token-of-org-B-0123456")
	json := "Content-Type: application/json"
	forbidden := []struct {
		name, method, path, body string
		headers                  []string
	}{
		{"native get org", "GET", "/v1/orgs/B", "", nil},
		{"native put org", "PUT", "/v1/orgs/B", `{"name":"x"}`, nil},
		{"native deactivate org", "POST", "/v1/orgs/B/deactivate", "", nil},
		{"native reactivate org", "POST", "/v1/orgs/B/reactivate", "", nil},
		{"native get project", "GET", "/v1/projects/pb", "", nil},
		{"native deactivate project", "POST", "/v1/projects/pb/deactivate", `{"orgId":"B"}`, nil},
		{"native reactivate project", "POST", "/v1/projects/pb/reactivate", "", nil},
		{"native get app", "GET", "/v1/projects/pb/apps/ab", "", nil},
		{"native put app", "PUT", "/v1/projects/pb/apps/ab", `{"orgId":"B"}`, nil},
		{"native deactivate app", "POST", "/v1/projects/pb/apps/ab/deactivate", "", nil},
		{"native reactivate app", "POST", "/v1/projects/pb/apps/ab/reactivate", `{"orgId":"B"}`, nil},
		{"native put account", "PUT", "/v1/accounts/ub2", `{"orgId":"B"}`, nil},
		{"native steal account", "PUT", "/v1/accounts/ub", `{"orgId":"A"}`, nil},
		{"native get account", "GET", "/v1/accounts/ub", "", nil},
		{"native import", "POST", "/v1/import", `{"org":{"id":"B"}}`, nil},
		{"native create token", "POST", "/v1/tokens", `{"orgs":["B"],"role":"admin"}`, nil},
		{"native create all-orgs token", "POST", "/v1/tokens", `{"allOrgs":true,"role":"read-only"}`, nil},
		{"native delete token", "DELETE", "/v1/tokens/" + bHash, "", nil},
		{"native node registry", "GET", "/v1/nodes", "", nil},
		{"zitadel deactivate org", "POST", "/management/v1/orgs/me/_deactivate", "{}", []string{"x-zitadel-orgid: B", json}},
		{"zitadel reactivate org", "POST", "/management/v1/orgs/me/_reactivate", "{}", []string{"x-zitadel-orgid: B", json}},
		{"zitadel deactivate project", "POST", "/management/v1/projects/pb/_deactivate", "{}", []string{"x-zitadel-orgid: B", json}},
		{"zitadel reactivate project", "POST", "/management/v1/projects/pb/_reactivate", "{}", []string{"x-zitadel-orgid: B", json}},
		{"zitadel deactivate app", "POST", "/management/v1/projects/pb/apps/ab/_deactivate", "{}", []string{"x-zitadel-orgid: B", json}},
		{"zitadel reactivate app", "POST", "/management/v1/projects/pb/apps/ab/_reactivate", "{}", []string{"x-zitadel-orgid: B", json}},
		{"commvault deactivate", "POST", "/webconsole/api/organization/B/action/deactivate", "", []string{"Authtoken: QSDK token-of-org-A-0123456"}},
		{"commvault activate", "POST", "/webconsole/api/organization/B/action/activate", "", []string{"Authtoken: QSDK token-of-org-A-0123456"}},
		{"commvault get", "GET", "/webconsole/api/organization/B", "", []string{"Authtoken: QSDK token-of-org-A-0123456"}},
	}
	for _, c := range forbidden {
		t.Run(c.name, func(t *testing.T) {
			before := e.revision()
			r := e.do(c.method, c.path, c.body, append([]string{tokA}, c.headers...)...)
			if r.status != http.StatusForbidden {
				t.Errorf("got %d %s, want 403", r.status, r.body)
			}
			if after := e.revision(); after != before {
				t.Errorf("etcd revision moved %d -> %d", before, after)
			}
		})
	}
	// Apps of B addressed through A's org are not found rather than forbidden: the store checks ownership.
	for _, path := range []string{"/management/v1/projects/pb/apps/ab/_deactivate", "/management/v1/projects/pb/_deactivate"} {
		if r := e.do("POST", path, "{}", tokA, json); r.status != http.StatusNotFound {
			t.Errorf("%s as A: %d %s", path, r.status, r.body)
		}
	}
	// Lists only show A's records.
	for _, path := range []string{"/v1/orgs", "/v1/projects", "/v1/apps", "/v1/audit", "/v1/tokens"} {
		t.Run("list "+path, func(t *testing.T) {
			r := e.do("GET", path, "", tokA)
			if r.status != 200 || strings.Contains(r.body, `"B"`) || strings.Contains(r.body, `"ab"`) || strings.Contains(r.body, `"pb"`) {
				t.Errorf("%s as A: %d %s", path, r.status, r.body)
			}
		})
	}
	// And A's own records work.
	for _, c := range []struct{ method, path, body string }{
		{"GET", "/v1/orgs/A", ""}, {"POST", "/v1/orgs/A/deactivate", ""}, {"POST", "/v1/projects/pa/apps/aa/deactivate", ""},
	} {
		if r := e.do(c.method, c.path, c.body, tokA); r.status != 200 {
			t.Errorf("%s %s as A: %d %s", c.method, c.path, r.status, r.body)
		}
	}
	// The node registry is the fleet's topology, no org's: an org-scoped token may not read it, an all-orgs
	// read-only one may.
	if r := e.do("GET", "/v1/nodes", "", tokA); r.status != http.StatusForbidden || !strings.Contains(r.body, "DEACT-NodesScope") {
		t.Errorf("/v1/nodes as A: %d %s", r.status, r.body)
	}
	ro := bearer(e.token("all-orgs-read-only-0123456789", state.Token{Name: "ro", AllOrgs: true, Role: state.RoleReadOnly}))
	if r := e.do("GET", "/v1/nodes", "", ro); r.status != 200 {
		t.Errorf("/v1/nodes as all-orgs read-only: %d %s", r.status, r.body)
	}
	var body map[string]any
	e.do("GET", "/v1/orgs", "", tokA).json(t, &body)
	if items := body["items"].([]any); len(items) != 1 {
		t.Errorf("A lists %v", body)
	}
	_ = json
}

// TestBadInput: every client mistake gets a clear 4xx with a body, leaves etcd unchanged and logs nothing at
// error level.
func TestBadInput(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{config: func(c *admin.Config) { c.MaxImportBytes = 1 << 10 }})
	adm := bearer(bootstrapToken)
	ro := bearer(e.token("read-only-token-0123456", state.Token{Name: "ro", AllOrgs: true, Role: state.RoleReadOnly}))
	long := strings.Repeat("x", 10<<10)
	cases := []struct {
		name, method, path, body string
		headers                  []string
		status                   int
	}{
		{"unknown path", "GET", "/v1/nothing", "", []string{adm}, 404},
		{"unknown root path", "GET", "/nothing", "", []string{adm}, 404},
		{"wrong method", "DELETE", "/v1/orgs/1", "", []string{adm}, 405},
		{"wrong method on list", "POST", "/v1/orgs", "{}", []string{adm}, 405},
		{"oversized body", "PUT", "/v1/orgs/1", `{"name":"` + strings.Repeat("a", 70<<10) + `"}`, []string{adm}, 413},
		{"oversized ZITADEL body", "POST", "/management/v1/orgs/me/_deactivate", `{"x":"` + strings.Repeat("a", 70<<10) + `"}`, []string{adm, "x-zitadel-orgid: 1", "Content-Type: application/json"}, 413},
		{"oversized import", "POST", "/v1/import", strings.Repeat(`{"org":{"id":"1"}}`+"\n", 100), []string{adm}, 413},
		{"malformed JSON", "PUT", "/v1/orgs/1", `{"name":`, []string{adm}, 400},
		{"unknown JSON field", "PUT", "/v1/orgs/1", `{"nom":"x"}`, []string{adm}, 400},
		{"two JSON values", "PUT", "/v1/orgs/1", `{} {}`, []string{adm}, 400},
		{"malformed ZITADEL JSON", "POST", "/management/v1/orgs/me/_deactivate", `{`, []string{adm, "x-zitadel-orgid: 1", "Content-Type: application/json"}, 400},
		{"bad ops", "POST", "/v1/orgs/1/deactivate", `{"ops":"everything"}`, []string{adm}, 400},
		{"slash in id", "GET", "/v1/orgs/a%2Fb", "", []string{adm}, 400},
		{"dotdot id", "POST", "/v1/orgs/../deactivate", "", []string{adm}, 400},
		{"dot id", "GET", "/v1/orgs/.", "", []string{adm}, 400},
		{"NUL in id", "POST", "/v1/orgs/a%00b/deactivate", "", []string{adm}, 400},
		{"10 kB id", "POST", "/v1/orgs/" + long + "/deactivate", "", []string{adm}, 400},
		{"10 kB app id", "PUT", "/v1/projects/p/apps/" + long, `{"orgId":"1"}`, []string{adm}, 400},
		{"10 kB ZITADEL org", "POST", "/management/v1/orgs/me/_deactivate", "{}", []string{adm, "x-zitadel-orgid: " + long, "Content-Type: application/json"}, 400},
		{"bad limit", "GET", "/v1/orgs?limit=0", "", []string{adm}, 400},
		{"bad confirm timeout", "POST", "/v1/orgs/1/deactivate", "", []string{adm, "X-Deact-Confirm-Timeout: -1s"}, 400},
		{"huge confirm timeout", "POST", "/v1/orgs/1/deactivate?confirmTimeout=1h", "", []string{adm}, 400},
		{"no token", "POST", "/v1/orgs/1/deactivate", "", nil, 401},
		{"bad token", "POST", "/v1/orgs/1/deactivate", "", []string{bearer("wrong-token-wrong-token")}, 401},
		{"read-only token writes", "POST", "/v1/orgs/1/deactivate", "", []string{ro}, 403},
		{"read-only token creates a token", "POST", "/v1/tokens", `{"allOrgs":true}`, []string{ro}, 403},
		{"bad token role", "POST", "/v1/tokens", `{"allOrgs":true,"role":"root"}`, []string{adm}, 400},
		{"token without scope", "POST", "/v1/tokens", `{"role":"admin"}`, []string{adm}, 400},
		{"reactivate unknown org", "POST", "/v1/orgs/1/reactivate", "", []string{adm}, 409},
		{"reactivate unknown app", "POST", "/v1/projects/p/apps/a/reactivate", "", []string{adm}, 404},
		{"get unknown org", "GET", "/v1/orgs/1", "", []string{adm}, 404},
		{"delete unknown token", "DELETE", "/v1/tokens/" + strings.Repeat("0", 64), "", []string{adm}, 404},
		{"delete bad token hash", "DELETE", "/v1/tokens/xyz", "", []string{adm}, 400},
		{"bad import line", "POST", "/v1/import", `{"nothing":{}}`, []string{adm}, 400},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := e.revision()
			r := e.do(c.method, c.path, c.body, c.headers...)
			if r.status != c.status {
				t.Errorf("got %d %s, want %d", r.status, r.body, c.status)
			}
			if len(r.body) == 0 || (strings.HasPrefix(c.path, "/v1/") && !json.Valid([]byte(r.body))) {
				t.Errorf("body %q is not a JSON explanation", r.body)
			}
			if after := e.revision(); after != before {
				t.Errorf("etcd revision moved %d -> %d", before, after)
			}
		})
	}
	if msgs := e.errors.take(); len(msgs) > 0 {
		t.Errorf("error-level logs: %q", msgs)
	}
}

func TestAuthFailureRateLimit(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{config: func(c *admin.Config) { c.AuthFailureBurst = 3; c.AuthFailureRate = 0.001 }})
	for i := range 3 {
		if r := e.do("GET", "/v1/orgs", "", bearer("guess-guess-guess-"+fmt.Sprint(i))); r.status != 401 {
			t.Fatalf("guess %d: %d %s", i, r.status, r.body)
		}
	}
	// The address has spent its budget: its failures get 429, the ZITADEL API says so its way; a good token
	// from the same address is still accepted.
	if r := e.do("GET", "/v1/orgs", "", bearer("guess-guess-guess-3")); r.status != 429 {
		t.Fatalf("after the burst: %d %s", r.status, r.body)
	}
	r := e.do("POST", "/management/v1/orgs/me/_deactivate", "{}", bearer("guess-again-guess-again"), "Content-Type: application/json")
	if r.status != 429 || !strings.Contains(r.body, `"code":8`) {
		t.Fatalf("ZITADEL after the burst: %d %s", r.status, r.body)
	}
	if r := e.do("GET", "/v1/orgs", "", bearer(bootstrapToken)); r.status != 200 {
		t.Fatalf("good token after the burst: %d %s", r.status, r.body)
	}
}
