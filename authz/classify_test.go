package authz

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/deact/deact/state"
)

// Deactivated fixtures for snapshot-only tests: org 666 (everything off, domain evil.example), app 668 of
// project 300 (client 668@dead), account 669 of org 666, project 670 of org 100.
func deadRecords() []state.Record {
	return []state.Record{
		{Org: &state.Org{ID: "666", Disabled: state.OpsAll, Domains: []string{"evil.example"}}},
		{App: &state.App{ID: "668", ProjectID: projMain, OrgID: orgAcme, ClientIDs: []string{"668@dead"}, State: state.Deactivated}},
		{Account: &state.Account{ID: "669", OrgID: "666"}},
		{Project: &state.Project{ID: "670", OrgID: orgAcme, State: state.Deactivated}},
		{Org: &state.Org{ID: "671", Disabled: state.OpBackup}},
	}
}

func testSnapshot(tb testing.TB) *state.Snapshot {
	tb.Helper()
	snap, err := state.BuildSnapshot(42, append(fixtureRecords(tb), deadRecords()...)...)
	if err != nil {
		tb.Fatal(err)
	}
	return snap
}

// testAuthorizer decides against a fixed snapshot with a fixed staleness.
func testAuthorizer(tb testing.TB, cfg Config, snap *state.Snapshot, staleness time.Duration) *Authorizer {
	tb.Helper()
	if cfg.Logger == nil {
		cfg.Logger = quietLogger()
	}
	a, err := newAuthorizer(cfg, func() *state.Snapshot { return snap }, func(time.Time) time.Duration { return staleness })
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(a.Close)
	return a
}

func TestPattern(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		pat   string
		fold  bool
		path  string
		match bool
		caps  []string
	}{
		{"/oauth/v2/token", false, "/oauth/v2/token", true, nil},
		{"/oauth/v2/token", false, "/oauth/v2/token/", true, nil},
		{"/oauth/v2/token", false, "//oauth//v2/token", true, nil},
		{"/oauth/v2/token", false, "/oauth/v2/Token", false, nil},
		{"/oauth/v2/token", false, "/oauth/v2/token/x", false, nil},
		{"/oauth/v2/token", false, "/oauth/v2", false, nil},
		{"/ui/login/**", false, "/ui/login", true, nil},
		{"/ui/login/**", false, "/ui/login/loginname/x", true, nil},
		{"/ui/login/**", false, "/ui/loginx", false, nil},
		{"/**/Login", true, "/webconsole/api/login", true, nil},
		{"/**/Login", true, "/Login", true, nil},
		{"/**/Login", true, "/webconsole/api/LoginX", false, nil},
		{"/**/action/backup", true, "/SearchSvc/CVWebService.svc/Subclient/12/Action/Backup", true, nil},
		{"/a/**/b", false, "/a/b", true, nil},
		{"/a/**/b", false, "/a/x/y/b", true, nil},
		{"/a/x/**/x/b", false, "/a/x/b", false, nil}, // prefix and suffix may not share a segment
		{"/zitadel.*/*", false, "/zitadel.management.v1.ManagementService/ListOrgs", true, nil},
		{"/zitadel.*/*", false, "/zitadelx/ListOrgs", false, nil},
		{"/zitadel.session.v2*.SessionService/*", false, "/zitadel.session.v2beta.SessionService/CreateSession", true, nil},
		{"/orgs/{org}/apps/{app}", false, "/orgs/100/apps/400", true, []string{"100", "400"}},
		{"/orgs/{org}/*", false, "/orgs/100", false, nil},
		{"/**/orgs/{org}", true, "/x/ORGS/7", true, []string{"7"}},
	} {
		p, err := compilePattern(tc.pat, tc.fold)
		if err != nil {
			t.Fatalf("%s: %v", tc.pat, err)
		}
		var m match
		if got := p.match(tc.path, &m); got != tc.match {
			t.Errorf("%s ~ %s = %v, want %v", tc.pat, tc.path, got, tc.match)
			continue
		}
		for i, c := range tc.caps {
			if m.caps[i] != c {
				t.Errorf("%s ~ %s: capture %d = %q, want %q", tc.pat, tc.path, i, m.caps[i], c)
			}
		}
	}
	for _, bad := range []string{"", "x", "/**/a/**", "/{a}/{a}", "/a{b}", "/{}", "/a*b*c", "/{a}/{b}/{c}/{d}/{e}/{f}/{g}/{h}/{i}"} {
		if _, err := compilePattern(bad, false); err == nil {
			t.Errorf("pattern %q compiled", bad)
		}
	}
}

func TestPresetsCompile(t *testing.T) {
	t.Parallel()
	// presetRoute panics on a bad constant pattern; building them is the test.
	if n := len(zitadelRoutes()) + len(commvaultRoutes()); n == 0 {
		t.Fatal("no preset routes")
	}
}

func TestCanonicalPath(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"/oauth/v2/token":       "/oauth/v2/token",
		"/oauth/v2/%74oken":     "/oauth/v2/token",
		"/oauth/v2/./token":     "/oauth/v2/token",
		"/x/../oauth/v2/token":  "/oauth/v2/token",
		"//oauth//v2/token":     "/oauth/v2/token",
		"oauth/v2/token":        "/oauth/v2/token",
		"":                      "/",
		"/%zz/x":                "/%zz/x",
		"/oauth%2Fv2%2Ftoken":   "/oauth/v2/token",
		"/management/v1/orgs/1": "/management/v1/orgs/1",
	} {
		if got := canonicalPath(in); got != want {
			t.Errorf("canonicalPath(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestClassify(t *testing.T) {
	t.Parallel()
	a := testAuthorizer(t, Config{Rules: []Rule{{Path: "/tenants/{t}/restore", Op: "restore",
		Subjects: []SubjectSource{{Kind: "org", From: "path", Name: "t"}, {Kind: "login", From: "header", Name: "X-User"},
			{Kind: "project", From: "query", Name: "p"}, {Kind: "app", From: "form", Name: "app"}, {Kind: "account", From: "jwt", Name: "act"}}}}},
		testSnapshot(t), 0)
	sub := func(k SubjectKind, id string) Subject { return Subject{k, id} }
	for _, tc := range []struct {
		name string
		req  Request
		op   Action
		subs []Subject
	}{
		{"unknown path is other", Request{Method: "GET", Path: "/healthz"}, ActionOther, nil},
		{"other ignores headers", Request{Method: "GET", Path: "/.well-known/openid-configuration",
			Headers: map[string]string{"x-zitadel-orgid": "666"}}, ActionOther, nil},
		{"route facts", Request{Method: "GET", Path: "/x", Route: map[string]string{"op": "Login", "org_id": "1, 2",
			"project_id": "3", "app_id": "4", "client_id": "5"}, Headers: map[string]string{"x-zitadel-orgid": "6"}},
			ActionLogin, []Subject{sub(SubjectOrg, "1"), sub(SubjectOrg, "2"), sub(SubjectProject, "3"), sub(SubjectApp, "4"),
				sub(SubjectClient, "5"), sub(SubjectOrg, "6")}},
		{"token form, basic, scopes", Request{Method: "POST", Path: "/oauth/v2/token",
			Headers: map[string]string{"content-type": "application/x-www-form-urlencoded", "authorization": "Basic " + basicCLI},
			Body:    "grant_type=client_credentials&scope=openid+urn%3Azitadel%3Aiam%3Aorg%3Aid%3A77+urn:zitadel:iam:org:domain:primary:Evil.Example+urn:zitadel:iam:org:project:id:300:aud&client%5Fid=c1"},
			ActionToken, []Subject{sub(SubjectOrg, "77"), sub(SubjectDomain, "evil.example"), sub(SubjectProject, "300"),
				sub(SubjectClient, "c1"), sub(SubjectClient, "401@acme-cli")}},
		{"form body ignored without form content type", Request{Method: "POST", Path: "/oauth/v2/token",
			Headers: map[string]string{"content-type": "application/json"}, Body: "client_id=c1"}, ActionToken, nil},
		{"authorize query and login_hint", Request{Method: "GET", Path: "/oauth/v2/authorize",
			Query: "client_id=c2&login_hint=bob%40Acme.example&scope=openid"},
			ActionLogin, []Subject{sub(SubjectClient, "c2"), sub(SubjectDomain, "acme.example")}},
		{"encoded path still classified", Request{Method: "POST", Path: "/oauth/v2/%74oken", Query: "client_id=c3"},
			ActionToken, []Subject{sub(SubjectClient, "c3")}},
		{"custom rule sources", Request{Method: "POST", Path: "/tenants/9/restore", Query: "p=8",
			Headers: map[string]string{"x-user": `CORP\alice`, "content-type": "application/x-www-form-urlencoded"}, Body: "app=7"},
			ActionRestore, []Subject{sub(SubjectOrg, "9"), sub(SubjectDomain, "corp"), sub(SubjectProject, "8"), sub(SubjectApp, "7")}},
		{"commvault login header and body domain", Request{Method: "POST", Path: "/webconsole/api/Login",
			Headers: map[string]string{"username": "bob@Tenant9", "content-type": "application/json"},
			Body:    `{"domain":"Tenant9.example","username":"bob","password":"x"}`},
			ActionLogin, []Subject{sub(SubjectDomain, "tenant9"), sub(SubjectDomain, "tenant9.example")}},
		{"commvault create task without body", Request{Method: "POST", Path: "/webconsole/api/CreateTask",
			Route: map[string]string{"org_id": "900"}}, ActionBackup, []Subject{sub(SubjectOrg, "900")}},
		{"commvault create task, numeric restore subtask", Request{Method: "POST", Path: "/webconsole/api/CreateTask",
			Body: `{"taskInfo":{"subTasks":[{"subTask":{"subTaskType":3,"operationType":1001}}]}}`}, ActionRestore, nil},
		{"commvault create task, admin subtask", Request{Method: "POST", Path: "/webconsole/api/CreateTask",
			Body: `{"taskInfo":{"subTasks":[{"subTask":{"subTaskType":"ADMIN"}}]}}`}, ActionOther, nil},
		{"route op overrides preset", Request{Method: "GET", Path: "/oidc/v1/userinfo", Route: map[string]string{"op": "other"},
			Headers: map[string]string{"x-zitadel-orgid": "666"}}, ActionOther, nil},
		{"jwt-bearer assertion", Request{Method: "POST", Path: "/oauth/v2/token",
			Headers: map[string]string{"content-type": "application/x-www-form-urlencoded"},
			Body:    "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion=" + unsigned(`{"iss":"669","sub":"669"}`)},
			ActionToken, []Subject{sub(SubjectAccount, "669")}},
		{"private_key_jwt client assertion", Request{Method: "POST", Path: "/oauth/v2/introspect",
			Headers: map[string]string{"content-type": "application/x-www-form-urlencoded"},
			Body:    "client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer&client_assertion=" + unsigned(`{"iss":"668@dead","sub":"668@dead"}`) + "&token=abc"},
			ActionToken, []Subject{sub(SubjectClient, "668@dead")}},
		{"bearer JWT claims, ZITADEL mapping", Request{Method: "GET", Path: "/v2/users/me",
			Headers: map[string]string{"authorization": "Bearer " + unsigned(`{"iss":"i","sub":"2002","aud":["300","c"],"azp":"c","urn:zitadel:iam:user:resourceowner:id":"100","urn:zitadel:iam:org:id":123456789012345678,"act":"669"}`)}},
			ActionAPI, []Subject{sub(SubjectOrg, "100"), sub(SubjectOrg, "123456789012345678"), sub(SubjectClient, "c"),
				sub(SubjectProject, "300"), sub(SubjectProject, "c"), sub(SubjectAccount, "2002")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			op, subs := a.Classify(&tc.req)
			if op != tc.op || !slices.Equal(subs, tc.subs) {
				t.Errorf("Classify = %s %v, want %s %v", op, subs, tc.op, tc.subs)
			}
		})
	}
}

// unsigned makes a JWT with an empty signature: deact does not verify, so it reads the same as a signed one.
func unsigned(payload string) string {
	return "eyJhbGciOiJub25lIn0." + b64url(payload) + "."
}

func TestDecideSnapshot(t *testing.T) {
	t.Parallel()
	a := testAuthorizer(t, Config{}, testSnapshot(t), 0)
	for _, tc := range []struct {
		name   string
		req    Request
		allow  bool
		reason Reason
		subj   Subject
		via    Subject
	}{
		{"client of a deactivated app", Request{Method: "POST", Path: "/oauth/v2/token", Query: "client_id=668%40dead"},
			false, ReasonAppDeactivated, Subject{SubjectApp, "668"}, Subject{SubjectClient, "668@dead"}},
		{"account of a deactivated org", Request{Method: "GET", Path: "/x", Route: map[string]string{"op": "token"},
			Headers: map[string]string{"authorization": "Bearer " + unsigned(`{"sub":"669"}`)}},
			false, ReasonOrgDeactivated, Subject{SubjectOrg, "666"}, Subject{SubjectAccount, "669"}},
		{"domain of a deactivated org", Request{Method: "GET", Path: "/oauth/v2/authorize", Query: "login_hint=eve%40EVIL.example"},
			false, ReasonOrgDeactivated, Subject{SubjectOrg, "666"}, Subject{SubjectDomain, "evil.example"}},
		{"deactivated project named by scope", Request{Method: "GET", Path: "/oauth/v2/authorize", Query: "scope=urn%3Azitadel%3Aiam%3Aorg%3Aproject%3Aid%3A670%3Aaud"},
			false, ReasonProjectDeactivated, Subject{SubjectProject, "670"}, Subject{SubjectProject, "670"}},
		{"app deactivation does not stop backups", Request{Method: "POST", Path: "/webconsole/api/Subclient/1/action/backup",
			Route: map[string]string{"app_id": "668"}}, true, "", Subject{}, Subject{}},
		{"backup-only org passes login", Request{Method: "GET", Path: "/x", Route: map[string]string{"op": "login", "org_id": "671"}},
			true, "", Subject{}, Subject{}},
		{"backup-only org fails backup", Request{Method: "GET", Path: "/x", Route: map[string]string{"op": "backup", "org_id": "671"}},
			false, ReasonOrgDeactivated, Subject{SubjectOrg, "671"}, Subject{SubjectOrg, "671"}},
		{"unknown subjects pass", Request{Method: "GET", Path: "/x", Route: map[string]string{"op": "login", "org_id": "nobody"}},
			true, "", Subject{}, Subject{}},
		{"oversized jwt-bearer assertion is denied, not parsed", Request{Method: "POST", Path: "/oauth/v2/token",
			Headers: map[string]string{"content-type": "application/x-www-form-urlencoded"},
			Body:    "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion=" + unsigned(`{"sub":"2001","pad":"`+strings.Repeat("x", 40<<10)+`"}`)},
			false, ReasonTokenTooLarge, Subject{}, Subject{}},
		{"bad op fails closed", Request{Method: "GET", Path: "/x", Route: map[string]string{"op": "delete"}},
			false, ReasonBadRouteFact, Subject{}, Subject{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, err := a.Decide(&tc.req)
			if err != nil {
				t.Fatal(err)
			}
			if d.Allow != tc.allow || d.Reason != tc.reason || d.Subject != tc.subj || d.Via != tc.via {
				t.Errorf("Decide = %+v, want allow=%v %s %v via %v", d, tc.allow, tc.reason, tc.subj, tc.via)
			}
			if d.Revision != 42 {
				t.Errorf("revision %d", d.Revision)
			}
		})
	}
}

func TestStalenessPolicy(t *testing.T) {
	t.Parallel()
	p, err := ParseStalenessPolicy("login=deny-after:30s, token=serve-last-known,api=DENY-AFTER:1m")
	if err != nil {
		t.Fatal(err)
	}
	if len(p) != 2 || p[ActionLogin] != 30*time.Second || p[ActionAPI] != time.Minute {
		t.Fatalf("parsed %v", p)
	}
	if s := p.String(); s != "login=deny-after:30s,api=deny-after:1m0s" {
		t.Fatalf("String = %q", s)
	}
	if p, err = ParseStalenessPolicy("all=deny-after:5s,restore=serve-last-known"); err != nil || len(p) != 4 || p[ActionRestore] != 0 {
		t.Fatalf("all: %v %v", p, err)
	}
	for _, bad := range []string{"login", "login=deny-after:", "login=deny-after:-1s", "login=deny-after:x",
		"logn=serve-last-known", "other=deny-after:1s", "login=fail-open"} {
		if _, err := ParseStalenessPolicy(bad); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}

	snap := testSnapshot(t)
	stale := testAuthorizer(t, Config{Staleness: StalenessPolicy{ActionLogin: time.Second}}, snap, time.Minute)
	fresh := testAuthorizer(t, Config{Staleness: StalenessPolicy{ActionLogin: time.Second}}, snap, time.Millisecond)
	login := &Request{Method: "GET", Path: "/oauth/v2/authorize", Query: "client_id=x"}
	token := &Request{Method: "POST", Path: "/oauth/v2/token"}
	if d, _ := stale.Decide(login); d.Allow || d.Reason != ReasonStale {
		t.Errorf("stale login: %+v", d)
	}
	if d, _ := stale.Decide(token); !d.Allow {
		t.Errorf("stale token (serve last known): %+v", d)
	}
	if d, _ := fresh.Decide(login); !d.Allow {
		t.Errorf("fresh login: %+v", d)
	}
	if _, err := newAuthorizer(Config{Staleness: StalenessPolicy{ActionOther: time.Second}}, nil, nil); err == nil {
		t.Error("policy for op other accepted")
	}
}

func TestRulesFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("rules.yaml", `
rules:
  - name: tenant-backup
    method: POST, PUT
    path: /api/tenants/{org}/backup
    op: backup
    surface: commvault
    subjects:
      - {kind: org, from: path, name: org}
      - {kind: client, from: header, name: X-Client}
`)
	snap := testSnapshot(t)
	a := testAuthorizer(t, Config{RulesFile: good, Presets: []string{}}, snap, 0)
	d, _ := a.Decide(&Request{Method: "PUT", Path: "/api/tenants/671/backup"})
	if d.Allow || d.Route != "tenant-backup" || d.Surface != SurfaceCommvault {
		t.Errorf("rule from YAML: %+v", d)
	}
	js := write("rules.json", `{"rules":[{"path":"/a","op":"login","subjects":[{"kind":"org","from":"query","name":"o"}]}]}`)
	a = testAuthorizer(t, Config{RulesFile: js}, snap, 0)
	if d, _ := a.Decide(&Request{Method: "GET", Path: "/a", Query: "o=666"}); d.Allow || d.Route != "rule-0" {
		t.Errorf("rule from JSON: %+v", d)
	}

	for _, tc := range []struct{ body, want string }{
		{`rules: [{path: /a, op: bakup}]`, "rule 0: op: unknown op"},
		{`rules: [{path: /a, op: login}, {path: a, op: login}]`, `rule 1: path "a"`},
		{`rules: [{name: x, op: login}]`, "rule 0 (x): path: required"},
		{`rules: [{path: /a}]`, "rule 0: op: required"},
		{`rules: [{path: /a, op: login, method: "GE T"}]`, "rule 0: method"},
		{`rules: [{path: /a, op: login, surface: soap}]`, "rule 0: surface: unknown surface"},
		{`rules: [{path: /a, op: login, subjects: [{kind: user, from: path, name: x}]}]`, "rule 0: subjects[0]: kind: unknown kind"},
		{`rules: [{path: /a, op: login, subjects: [{kind: org, from: cookie, name: x}]}]`, "rule 0: subjects[0]: from:"},
		{`rules: [{path: /a, op: login, subjects: [{kind: org, from: path, name: x}]}]`, "rule 0: subjects[0]: name: the path has no capture {x}"},
		{`rules: [{path: /a, op: login, subjects: [{kind: org, from: query}]}]`, "rule 0: subjects[0]: name: required"},
		{`rules: [{path: /a, op: login, extra: 1}]`, "unknown field"},
		{`rules: {`, "rules file"},
	} {
		_, err := newAuthorizer(Config{RulesFile: write("bad.yaml", tc.body)}, nil, nil)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want it to contain %q", tc.body, err, tc.want)
		}
	}
	if _, err := newAuthorizer(Config{RulesFile: filepath.Join(dir, "missing.yaml")}, nil, nil); err == nil {
		t.Error("missing rules file accepted")
	}
}

func TestConfigErrors(t *testing.T) {
	t.Parallel()
	for _, cfg := range []Config{
		{Presets: []string{"keycloak"}},
		{Presets: []string{"zitadel", "ZITADEL"}},
		{Claims: []ClaimMapping{{Issuer: "a"}}},
		{Claims: []ClaimMapping{{Org: []string{"o"}}, {Org: []string{"p"}}}},
		{Claims: []ClaimMapping{{Issuer: "a", Org: []string{""}}}},
	} {
		if a, err := newAuthorizer(cfg, nil, nil); err == nil {
			a.Close()
			t.Errorf("%+v accepted", cfg)
		}
	}
	if _, err := New(Config{}); err == nil {
		t.Error("Config without Replica accepted")
	}
}

func TestClaimMappingPerIssuer(t *testing.T) {
	t.Parallel()
	a := testAuthorizer(t, Config{Claims: []ClaimMapping{
		{Issuer: "https://other-idp", Org: []string{"tenant"}, Client: []string{"cid"}},
	}}, testSnapshot(t), 0)
	req := func(payload string) *Request {
		return &Request{Method: "GET", Path: "/v2/x", Headers: map[string]string{"authorization": "Bearer " + unsigned(payload)}}
	}
	if d, _ := a.Decide(req(`{"iss":"https://other-idp","tenant":"666"}`)); d.Allow {
		t.Error("issuer mapping ignored")
	}
	if d, _ := a.Decide(req(`{"iss":"https://other-idp","urn:zitadel:iam:user:resourceowner:id":"666"}`)); !d.Allow {
		t.Error("default mapping applied to a mapped issuer")
	}
	if d, _ := a.Decide(req(`{"iss":"https://zitadel","urn:zitadel:iam:user:resourceowner:id":"666"}`)); d.Allow {
		t.Error("default mapping not applied")
	}
}

func TestTokenCacheTTL(t *testing.T) {
	t.Parallel()
	tc, err := newTokenCache(100, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	defer tc.close()
	now := time.Now()
	tc.put("soon", &claims{exp: now.Add(3 * time.Second).Unix()})
	tc.put("later", &claims{exp: now.Add(48 * time.Hour).Unix()})
	tc.put("expired", &claims{exp: now.Add(-time.Second).Unix()})
	tc.put("bad", notJWT)
	tc.c.Wait()
	for key, max := range map[string]time.Duration{"soon": 3 * time.Second, "later": time.Hour, "bad": time.Minute} {
		ttl, ok := tc.c.GetTTL(key)
		if !ok || ttl <= 0 || ttl > max {
			t.Errorf("%s: ttl %v %v, want (0, %v]", key, ttl, ok, max)
		}
	}
	if _, ok := tc.get("expired"); ok {
		t.Error("expired token cached")
	}
}

func TestDenyShapes(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		d       Decision
		headers map[string]string
		status  int
		ctype   string
		body    string
	}{
		{"oauth token", Decision{Action: ActionToken, Reason: ReasonAppDeactivated, Surface: SurfaceOAuthToken}, nil, 400, "application/json",
			`{"error":"unauthorized_client","error_description":"The application is deactivated."}`},
		{"oauth authorize", Decision{Action: ActionLogin, Reason: ReasonOrgDeactivated, Surface: SurfaceOAuthAuthorize}, nil, 403, "application/json",
			`{"error":"access_denied","error_description":"The organization is deactivated: login is disabled."}`},
		{"zitadel", Decision{Action: ActionLogin, Reason: ReasonProjectDeactivated, Surface: SurfaceZITADEL}, nil, 403, "application/json",
			`{"code":7,"message":"The project is deactivated.","details":[{"@type":"type.googleapis.com/zitadel.v1.ErrorDetail","id":"DEACT-PRJ01","message":"The project is deactivated."}]}`},
		{"zitadel api", Decision{Action: ActionAPI, Reason: ReasonOrgDeactivated, Surface: SurfaceZITADEL}, nil, 401, "application/json",
			`{"code":16,"message":"The organization is deactivated: its tokens are no longer accepted.","details":[{"@type":"type.googleapis.com/zitadel.v1.ErrorDetail","id":"DEACT-ORG01","message":"The organization is deactivated: its tokens are no longer accepted."}]}`},
		{"zitadel grpc", Decision{Action: ActionAPI, Reason: ReasonOrgDeactivated, Surface: SurfaceZITADEL},
			map[string]string{"content-type": "application/grpc+proto"}, 401, "text/plain; charset=utf-8",
			`The organization is deactivated: its tokens are no longer accepted.`},
		{"commvault json", Decision{Action: ActionRestore, Reason: ReasonOrgDeactivated, Surface: SurfaceCommvault}, nil, 403, "application/json",
			`{"errorCode":1,"errorMessage":"The organization is deactivated: restore is disabled."}`},
		{"commvault xml by content type", Decision{Action: ActionBackup, Reason: ReasonOrgDeactivated, Surface: SurfaceCommvault},
			map[string]string{"content-type": "application/xml"}, 403, "application/xml",
			`<?xml version="1.0" encoding="UTF-8"?>` + "\n" + `<EVGui_GenericResp errorCode="1" errorMessage="The organization is deactivated: backup is disabled."></EVGui_GenericResp>`},
		{"commvault json by accept", Decision{Action: ActionBackup, Reason: ReasonOrgDeactivated, Surface: SurfaceCommvault},
			map[string]string{"content-type": "application/xml", "accept": "application/json"}, 403, "application/json",
			`{"errorCode":1,"errorMessage":"The organization is deactivated: backup is disabled."}`},
		{"generic api", Decision{Action: ActionAPI, Reason: ReasonAppDeactivated}, nil, 401, "application/json",
			`{"error":"invalid_token","error_description":"The application is deactivated: its tokens are no longer accepted."}`},
		{"stale", Decision{Action: ActionToken, Reason: ReasonStale, Surface: SurfaceOAuthToken}, nil, 503, "application/json",
			`{"error":"temporarily_unavailable","error_description":"Authorization state is temporarily unavailable, try again later."}`},
		{"token too large", Decision{Action: ActionLogin, Reason: ReasonTokenTooLarge, Surface: SurfaceZITADEL}, nil, 401, "application/json",
			`{"code":16,"message":"The access token is too large.","details":[{"@type":"type.googleapis.com/zitadel.v1.ErrorDetail","id":"DEACT-TOK01","message":"The access token is too large."}]}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dn := shape(&tc.d, &Request{Headers: tc.headers})
			got := map[string]string{}
			for _, h := range dn.headers {
				got[h[0]] = h[1]
			}
			if dn.status != tc.status || got["content-type"] != tc.ctype || dn.body != tc.body {
				t.Errorf("got %d %q %s\nwant %d %q %s", dn.status, got["content-type"], dn.body, tc.status, tc.ctype, tc.body)
			}
			if got[HeaderReason] != string(tc.d.Reason) || got["cache-control"] != "no-store" {
				t.Errorf("headers %v", got)
			}
			if _, ok := got["www-authenticate"]; ok != (tc.status == 401) {
				t.Errorf("www-authenticate %q on status %d", got["www-authenticate"], tc.status)
			}
			if dn.body[0] == '{' && !json.Valid([]byte(dn.body)) {
				t.Errorf("invalid JSON %s", dn.body)
			}
		})
	}
}

// syncBuffer is a log sink safe for the gRPC server's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestDenyLogAndMetrics(t *testing.T) {
	t.Parallel()
	var logs syncBuffer
	reg := prometheus.NewRegistry()
	a := testAuthorizer(t, Config{
		Logger:   slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Registry: reg,
	}, testSnapshot(t), 0)
	tok := unsigned(`{"azp":"668@dead","secret":"do-not-log"}`)
	client := serveGRPC(t, a)
	for _, js := range []string{
		httpReq(`{"method":"GET","path":"/v2/users/me","headers":{"authorization":"Bearer `+tok+`"}}`, ""),
		httpReq(`{"method":"GET","path":"/v2/users/me","headers":{"authorization":"Bearer opaque"}}`, ""),
		httpReq(`{"method":"GET","path":"/healthz","headers":{}}`, ""),
	} {
		if _, err := client.Check(context.Background(), checkRequest(t, js)); err != nil {
			t.Fatal(err)
		}
	}
	out := logs.String()
	t.Run("one deny line", func(t *testing.T) {
		var line map[string]any
		if err := json.Unmarshal([]byte(strings.TrimSpace(out)), &line); err != nil {
			t.Fatalf("want exactly one deny line, got %q", out)
		}
		want := map[string]any{"level": "INFO", "op": "api", "reason": "app_deactivated", "subject_kind": "app",
			"subject_id": "668", "via_kind": "client", "via_id": "668@dead", "route": "zitadel-v2-api"}
		for k, v := range want {
			if line[k] != v {
				t.Errorf("log %s = %v, want %v", k, line[k], v)
			}
		}
	})
	t.Run("no secret in the log", func(t *testing.T) {
		for _, secret := range []string{tok, "Bearer", "do-not-log", "opaque"} {
			if strings.Contains(out, secret) {
				t.Errorf("log contains %q", secret)
			}
		}
	})
	t.Run("metrics", func(t *testing.T) { checkMetrics(t, reg) })
}

// checkMetrics checks the counters and latency observations of TestDenyLogAndMetrics's three checks.
func checkMetrics(t *testing.T, reg *prometheus.Registry) {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	counts := map[string]float64{}
	var observed uint64
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			switch mf.GetName() {
			case "deact_authz_checks_total":
				counts[label(m, "op")+"/"+label(m, "decision")] = m.GetCounter().GetValue()
			case "deact_authz_check_duration_seconds":
				if label(m, "transport") == "grpc" {
					observed = m.GetHistogram().GetSampleCount()
				}
			}
		}
	}
	if counts["api/deny"] != 1 || counts["api/allow"] != 1 || counts["other/allow"] != 1 || observed != 3 {
		t.Errorf("metrics %v, %d observations", counts, observed)
	}
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

func b64url(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

// TestDecideOrgsOfAppAndProject: an app checks its own org and its project's org, which usually are one org
// (looked up once) and may differ: a deactivation of either denies, by app ID and by client ID alike.
func TestDecideOrgsOfAppAndProject(t *testing.T) {
	t.Parallel()
	snap, err := state.BuildSnapshot(1,
		state.Record{Org: &state.Org{ID: "1"}},
		state.Record{Org: &state.Org{ID: "2", Disabled: state.OpsAll}},
		state.Record{Project: &state.Project{ID: "10", OrgID: "1", State: state.Active}},
		state.Record{Project: &state.Project{ID: "20", OrgID: "2", State: state.Active}},
		state.Record{App: &state.App{ID: "101", ProjectID: "10", OrgID: "1", ClientIDs: []string{"c-same"}, State: state.Active}},
		state.Record{App: &state.App{ID: "102", ProjectID: "10", OrgID: "2", ClientIDs: []string{"c-app-org-off"}, State: state.Active}},
		state.Record{App: &state.App{ID: "201", ProjectID: "20", OrgID: "1", ClientIDs: []string{"c-project-org-off"}, State: state.Active}},
		state.Record{App: &state.App{ID: "202", ProjectID: "20", OrgID: "2", ClientIDs: []string{"c-both-off"}, State: state.Active}},
	)
	if err != nil {
		t.Fatal(err)
	}
	a := testAuthorizer(t, Config{}, snap, 0)
	for _, tc := range []struct {
		name, app, client string
		allow             bool
	}{
		{"one active org", "101", "c-same", true},
		{"the app's org is off", "102", "c-app-org-off", false},
		{"the project's org is off", "201", "c-project-org-off", false},
		{"both are the deactivated org", "202", "c-both-off", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, route := range []map[string]string{
				{FactOp: "login", FactAppID: tc.app},
				{FactOp: "login", FactClientID: tc.client},
				{FactOp: "token", FactProjectID: "10", FactAppID: tc.app},
			} {
				d, err := a.Decide(&Request{Method: "GET", Path: "/x", Route: route})
				if err != nil || d.Allow != tc.allow {
					t.Errorf("%v: %+v, %v; want allow=%v", route, d, err, tc.allow)
				}
				if !tc.allow && (d.Reason != ReasonOrgDeactivated || d.Subject != (Subject{SubjectOrg, "2"})) {
					t.Errorf("%v: deny %s by %v, want org_deactivated by org 2", route, d.Reason, d.Subject)
				}
			}
		})
	}
}
