package authz

import (
	"context"
	"encoding/base64"
	"fmt"
	"strings"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/golang-jwt/jwt/v5"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/deact/deact/state"
)

// change is a state change a case makes and undoes; it returns the revision to wait for.
type change struct {
	do, undo func(t *testing.T, s *state.Store) int64
}

func orgOff(id string, ops state.Ops, exact bool) change {
	return change{
		do: func(t *testing.T, s *state.Store) int64 {
			return must(t)(s.DeactivateOrg(context.Background(), id, ops, exact, state.Change{Actor: "test"}))
		},
		undo: func(t *testing.T, s *state.Store) int64 {
			return must(t)(s.ReactivateOrg(context.Background(), id, state.Change{Actor: "test"}))
		},
	}
}

func appOff(project, app string) change {
	set := func(off bool) func(t *testing.T, s *state.Store) int64 {
		return func(t *testing.T, s *state.Store) int64 {
			return must(t)(s.SetAppState(context.Background(), project, app, orgAcme, off, state.Change{Actor: "test"}))
		}
	}
	return change{do: set(true), undo: set(false)}
}

func projectOff(project string) change {
	set := func(off bool) func(t *testing.T, s *state.Store) int64 {
		return func(t *testing.T, s *state.Store) int64 {
			return must(t)(s.SetProjectState(context.Background(), project, orgAcme, off, state.Change{Actor: "test"}))
		}
	}
	return change{do: set(true), undo: set(false)}
}

func must(t *testing.T) func(state.Result, error) int64 {
	return func(r state.Result, err error) int64 {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return r.Revision
	}
}

// checkCase is a real CheckRequest, as Envoy sends it (protojson), that is allowed, denied after change.do,
// and allowed again after change.undo.
type checkCase struct {
	name   string
	req    string                   // CheckRequest JSON; {{NAME}} is replaced by vars or a token signed from tokens
	tokens map[string]jwt.MapClaims // JWTs to sign into the request
	change change
	// The denied response.
	status int
	reason Reason
	body   []string          // substrings of the body
	header map[string]string // headers that must have these value prefixes
	// passes are other requests that must still be allowed while the change is in force.
	passes []string
}

var basicCLI = base64.StdEncoding.EncodeToString([]byte("401%40acme-cli:s3cret"))
var basicPortal = base64.StdEncoding.EncodeToString([]byte("400%40acme-portal:s3cret"))

// httpReq wraps the http part of a CheckRequest in the envelope Envoy sends.
func httpReq(http, extra string) string {
	if extra != "" {
		extra = "," + extra
	}
	return `{"attributes":{
		"source":{"address":{"socket_address":{"address":"192.0.2.7","port_value":51234}}},
		"destination":{"address":{"socket_address":{"address":"192.0.2.1","port_value":443}}},
		"request":{"time":"2026-11-25T10:00:00Z","http":` + http + `}` + extra + `}}`
}

func checkCases() []checkCase {
	return []checkCase{
		{
			name: "zitadel token, client_credentials with client_id in form body, app deactivated",
			req: httpReq(`{"id":"1","method":"POST","path":"/oauth/v2/token","host":"id.example.com","scheme":"https",
				"protocol":"HTTP/1.1","size":"78",
				"headers":{":method":"POST",":path":"/oauth/v2/token","content-type":"application/x-www-form-urlencoded"},
				"body":"grant_type=client_credentials&client_id=400%40acme-portal&client_secret=s3cret&scope=openid"}`, ""),
			change: appOff(projMain, appPortal),
			status: 400, reason: ReasonAppDeactivated,
			body: []string{`"error":"unauthorized_client"`, "application is deactivated"},
			passes: []string{httpReq(`{"method":"POST","path":"/oauth/v2/token",
				"headers":{"content-type":"application/x-www-form-urlencoded","authorization":"Basic {{BASIC_CLI}}"},
				"body":"grant_type=client_credentials"}`, "")},
		},
		{
			name: "zitadel token, refresh_token with Basic client auth and raw_body, org deactivated",
			req: httpReq(`{"method":"POST","path":"/oauth/v2/token",
				"headers":{"content-type":"application/x-www-form-urlencoded; charset=utf-8","authorization":"Basic {{BASIC_CLI}}"},
				"raw_body":"`+base64.StdEncoding.EncodeToString([]byte("grant_type=refresh_token&refresh_token=opaque-refresh"))+`"}`, ""),
			change: orgOff(orgAcme, state.OpLogin|state.OpToken, false),
			status: 400, reason: ReasonOrgDeactivated,
			body: []string{`"error":"unauthorized_client"`, "organization is deactivated"},
		},
		{
			name: "zitadel token, jwt-bearer grant for a service account, org deactivated",
			req: httpReq(`{"method":"POST","path":"/oauth/v2/token",
				"headers":{"content-type":"application/x-www-form-urlencoded"},
				"body":"grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&scope=openid&assertion={{ASSERTION}}"}`, ""),
			tokens: map[string]jwt.MapClaims{"ASSERTION": {"iss": svcAccount, "sub": svcAccount, "aud": "https://id.example.com",
				"iat": time.Now().Unix(), "exp": time.Now().Add(time.Hour).Unix()}},
			change: orgOff(orgAcme, state.OpToken, false),
			status: 400, reason: ReasonOrgDeactivated,
		},
		{
			name: "zitadel token, token exchange with a subject_token of a deactivated project",
			req: httpReq(`{"method":"POST","path":"/oauth/v2/token",
				"headers":{"content-type":"application/x-www-form-urlencoded","authorization":"Basic {{BASIC_CLI}}"},
				"body":"grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Atoken-exchange&subject_token_type=urn%3Aietf%3Aparams%3Aoauth%3Atoken-type%3Ajwt&subject_token={{SUBJECT}}"}`, ""),
			tokens: map[string]jwt.MapClaims{"SUBJECT": zitadelClaims(orgOther, "other-client", projRep)},
			change: projectOff(projRep),
			status: 400, reason: ReasonProjectDeactivated,
		},
		{
			name: "zitadel authorize with org scope, org deactivated",
			req: httpReq(`{"method":"GET",
				"path":"/oauth/v2/authorize?client_id=402%40reports&response_type=code&redirect_uri=https%3A%2F%2Fapp.example%2Fcb&scope=openid%20profile%20urn%3Azitadel%3Aiam%3Aorg%3Aid%3A101",
				"headers":{":method":"GET","accept":"text/html"}}`, ""),
			change: orgOff(orgOther, state.OpLogin|state.OpToken, false),
			status: 403, reason: ReasonOrgDeactivated,
			body:   []string{`"error":"access_denied"`},
			passes: []string{httpReq(`{"method":"GET","path":"/oauth/v2/authorize?client_id=402%40reports&scope=openid","headers":{}}`, "")},
		},
		{
			name:   "zitadel authorize, client app deactivated",
			req:    httpReq(`{"method":"GET","path":"/oauth/v2/authorize?client_id=402%40reports&response_type=code&scope=openid","headers":{}}`, ""),
			change: appOff(projRep, appRep),
			status: 403, reason: ReasonAppDeactivated,
		},
		{
			name: "zitadel introspection by a deactivated client app",
			req: httpReq(`{"method":"POST","path":"/oauth/v2/introspect",
				"headers":{"content-type":"application/x-www-form-urlencoded","authorization":"Basic {{BASIC_CLI}}"},
				"body":"token=some-opaque-access-token"}`, ""),
			change: appOff(projMain, appCLI),
			status: 400, reason: ReasonAppDeactivated,
			passes: []string{httpReq(`{"method":"POST","path":"/oauth/v2/introspect",
				"headers":{"content-type":"application/x-www-form-urlencoded","authorization":"Basic {{BASIC_PORTAL}}"},
				"body":"token=x"}`, "")},
		},
		{
			name: "zitadel introspection by a client of a deactivated org",
			req: httpReq(`{"method":"POST","path":"/oauth/v2/introspect",
				"headers":{"content-type":"application/x-www-form-urlencoded"},
				"body":"client_id=402%40reports&client_secret=x&token=some-opaque-access-token"}`, ""),
			change: orgOff(orgAcme, state.OpToken, false),
			status: 400, reason: ReasonOrgDeactivated,
		},
		{
			name: "login with x-zitadel-orgid header and context extension op",
			req: httpReq(`{"method":"POST","path":"/ui/login/loginname",
				"headers":{"x-zitadel-orgid":"101","content-type":"application/x-www-form-urlencoded"}}`,
				`"context_extensions":{"op":"login"}`),
			change: orgOff(orgOther, state.OpLogin, false),
			status: 403, reason: ReasonOrgDeactivated,
			body: []string{`"code":7`, `"@type":"type.googleapis.com/zitadel.v1.ErrorDetail"`, "login is disabled"},
		},
		{
			name: "zitadel session with a login name of an org domain",
			req: httpReq(`{"method":"POST","path":"/v2/sessions",
				"headers":{"content-type":"application/json"},
				"body":"{\"checks\":{\"user\":{\"loginName\":\"alice@Acme.Example\"}}}"}`, ""),
			change: orgOff(orgAcme, state.OpLogin|state.OpToken, false),
			status: 403, reason: ReasonOrgDeactivated,
		},
		{
			name: "commvault login, JSON body with domain\\user",
			req: httpReq(`{"method":"POST","path":"/webconsole/api/Login",
				"headers":{"content-type":"application/json","accept":"application/json"},
				"body":"{\"username\":\"tenant9\\\\bob\",\"password\":\"cGFzcw==\"}"}`, ""),
			change: orgOff(orgTenant, state.OpLogin, true),
			status: 403, reason: ReasonOrgDeactivated,
			body: []string{`"errorCode":1`, `"errorMessage":"The organization is deactivated: login is disabled."`},
		},
		{
			name: "commvault login, XML body with user@domain, XML error",
			req: httpReq(`{"method":"POST","path":"/SearchSvc/CVWebService.svc/login",
				"headers":{"content-type":"application/xml","accept":"application/xml"},
				"body":"<DM2ContentIndexing_CheckCredentialReq username=\"bob@TENANT9.example\" password=\"cGFzcw==\" commserver=\"\"/>"}`, ""),
			change: orgOff(orgTenant, state.OpLogin|state.OpBackup|state.OpRestore, true),
			status: 403, reason: ReasonOrgDeactivated,
			body: []string{`<EVGui_GenericResp errorCode="1" errorMessage="The organization is deactivated: login is disabled."></EVGui_GenericResp>`},
		},
		{
			name: "commvault subclient backup of a backup-disabled tenant; its restore passes",
			req: httpReq(`{"method":"POST","path":"/webconsole/api/Subclient/12/action/backup?backupLevel=Incremental",
				"headers":{"accept":"application/json","authtoken":"QSDK 3856801"}}`,
				`"context_extensions":{"org_id":"900"}`),
			change: orgOff(orgTenant, state.OpBackup, true),
			status: 403, reason: ReasonOrgDeactivated,
			body: []string{"backup is disabled"},
			passes: []string{
				httpReq(`{"method":"POST","path":"/webconsole/api/retrieveToClient","headers":{}}`, `"context_extensions":{"org_id":"900"}`),
				httpReq(`{"method":"POST","path":"/webconsole/api/CreateTask","headers":{"content-type":"application/json"},
					"body":"{\"taskInfo\":{\"subTasks\":[{\"subTask\":{\"subTaskType\":\"RESTORE\",\"operationType\":\"RESTORE\"}}]}}"}`,
					`"context_extensions":{"org_id":"900"}`),
			},
		},
		{
			name: "commvault CreateTask with a backup subtask",
			req: httpReq(`{"method":"POST","path":"/webconsole/api/createtask","headers":{"content-type":"application/xml"},
				"body":"<TMMsg_CreateTaskReq><taskInfo><subTasks><subTask subTaskType=\"BACKUP\" operationType=\"BACKUP\"/></subTasks></taskInfo></TMMsg_CreateTaskReq>"}`,
				`"context_extensions":{"org_id":"900"}`),
			change: orgOff(orgTenant, state.OpBackup, true),
			status: 403, reason: ReasonOrgDeactivated,
			body: []string{`<EVGui_GenericResp errorCode="1"`},
		},
		{
			name: "commvault restore of a restore-disabled tenant",
			req: httpReq(`{"method":"POST","path":"/webconsole/api/retrieveToClient","headers":{"accept":"application/json"}}`,
				`"context_extensions":{"org_id":"900"}`),
			change: orgOff(orgTenant, state.OpRestore, true),
			status: 403, reason: ReasonOrgDeactivated,
			body: []string{"restore is disabled"},
		},
		{
			name: "API request with a JWT of a deactivated org",
			req: httpReq(`{"method":"GET","path":"/management/v1/projects/300",
				"headers":{"authorization":"Bearer {{AT}}","accept":"application/json"}}`, ""),
			tokens: map[string]jwt.MapClaims{"AT": zitadelClaims(orgAcme, clientPortal, projMain, clientPortal)},
			change: orgOff(orgAcme, state.OpLogin|state.OpToken, false),
			status: 401, reason: ReasonOrgDeactivated,
			body:   []string{`"code":16`, "organization is deactivated: its tokens are no longer accepted"},
			header: map[string]string{"www-authenticate": `Bearer error="invalid_token", error_description="`},
		},
		{
			name: "API request with a JWT whose client app is deactivated; another app of the org passes",
			req: httpReq(`{"method":"POST","path":"/zitadel.management.v1.ManagementService/ListProjects",
				"headers":{"authorization":"Bearer {{AT}}","content-type":"application/grpc"}}`, ""),
			tokens: map[string]jwt.MapClaims{
				"AT":  zitadelClaims(orgAcme, clientPortal, projMain, clientPortal),
				"AT2": zitadelClaims(orgAcme, clientCLI, projMain, clientCLI),
			},
			change: appOff(projMain, appPortal),
			status: 401, reason: ReasonAppDeactivated,
			body: []string{"The application is deactivated: its tokens are no longer accepted."},
			passes: []string{httpReq(`{"method":"POST","path":"/zitadel.management.v1.ManagementService/ListProjects",
				"headers":{"authorization":"Bearer {{AT2}}","content-type":"application/grpc"}}`, "")},
		},
		{
			name:   "userinfo with a JWT whose audience project is deactivated",
			req:    httpReq(`{"method":"GET","path":"/oidc/v1/userinfo","headers":{"authorization":"bearer {{AT}}"}}`, ""),
			tokens: map[string]jwt.MapClaims{"AT": zitadelClaims(orgOther, "not-registered", projRep, "not-registered")},
			change: projectOff(projRep),
			status: 401, reason: ReasonProjectDeactivated,
			body: []string{`"error":"invalid_token"`},
		},
		{
			name: "API route by context extension with verified claims from jwt_authn metadata",
			req: httpReq(`{"method":"GET","path":"/api/orders","headers":{"authorization":"Bearer opaque-or-already-verified"}}`,
				`"context_extensions":{"op":"api"},
				 "metadata_context":{"filter_metadata":{"envoy.filters.http.jwt_authn":{"verified":{
					"iss":"https://id.example.com","sub":"2002","azp":"401@acme-cli","urn:zitadel:iam:user:resourceowner:id":"100"}}}}`),
			change: appOff(projMain, appCLI),
			status: 401, reason: ReasonAppDeactivated,
			body: []string{`"error":"invalid_token"`},
		},
		{
			name:   "custom rule: tenant backup with the org in the path",
			req:    httpReq(`{"method":"POST","path":"/api/tenants/900/backups","headers":{}}`, ""),
			change: orgOff(orgTenant, state.OpBackup, true),
			status: 403, reason: ReasonOrgDeactivated,
			body: []string{`"error":"access_denied"`},
		},
	}
}

func TestCheckGRPC(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{Rules: []Rule{{
		Name: "tenant-backup", Method: "POST", Path: "/api/tenants/{tenant}/backups", Op: "backup",
		Subjects: []SubjectSource{{Kind: "org", From: "path", Name: "tenant"}},
	}}})
	for _, tc := range checkCases() {
		t.Run(tc.name, func(t *testing.T) {
			vars := map[string]string{"BASIC_CLI": basicCLI, "BASIC_PORTAL": basicPortal}
			for k, c := range tc.tokens {
				vars[k] = e.sign(t, c)
			}
			req := checkRequest(t, fill(tc.req, vars))
			passes := make([]*authv3.CheckRequest, len(tc.passes))
			for i, p := range tc.passes {
				passes[i] = checkRequest(t, fill(p, vars))
			}

			wantAllow(t, e.check(t, req), "before the change")
			e.applied(t, tc.change.do(t, e.store))
			resp := e.check(t, req)
			wantDeny(t, resp, tc, vars)
			for i, p := range passes {
				wantAllow(t, e.check(t, p), "pass %d while the change is in force", i)
			}
			e.applied(t, tc.change.undo(t, e.store))
			wantAllow(t, e.check(t, req), "after undoing the change")
		})
	}
}

func (e *env) check(t *testing.T, req *authv3.CheckRequest) *authv3.CheckResponse {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := e.client.Check(ctx, req)
	if err != nil {
		t.Fatalf("Check: %v", err)
	}
	return resp
}

func checkRequest(t testing.TB, js string) *authv3.CheckRequest {
	t.Helper()
	var req authv3.CheckRequest
	if err := protojson.Unmarshal([]byte(js), &req); err != nil {
		t.Fatalf("CheckRequest JSON: %v\n%s", err, js)
	}
	return &req
}

func fill(s string, vars map[string]string) string {
	for k, v := range vars {
		s = strings.ReplaceAll(s, "{{"+k+"}}", v)
	}
	return s
}

func wantAllow(t *testing.T, resp *authv3.CheckResponse, format string, args ...any) {
	t.Helper()
	if c := resp.GetStatus().GetCode(); c != int32(codes.OK) {
		t.Fatalf("want allow "+format+", got status %d %q, denied body %q", append(args, c,
			resp.GetStatus().GetMessage(), resp.GetDeniedResponse().GetBody())...)
	}
}

func wantDeny(t *testing.T, resp *authv3.CheckResponse, tc checkCase, vars map[string]string) {
	t.Helper()
	if c := resp.GetStatus().GetCode(); c != int32(codes.PermissionDenied) {
		t.Fatalf("want PERMISSION_DENIED, got status %d", c)
	}
	dr := resp.GetDeniedResponse()
	if dr == nil {
		t.Fatal("deny without denied_response")
	}
	if got := int(dr.GetStatus().GetCode()); got != tc.status {
		t.Errorf("HTTP status = %d, want %d (body %s)", got, tc.status, dr.GetBody())
	}
	headers := map[string]string{}
	for _, h := range dr.GetHeaders() {
		headers[h.GetHeader().GetKey()] = h.GetHeader().GetValue()
	}
	if got := headers[HeaderReason]; got != string(tc.reason) {
		t.Errorf("%s = %q, want %q (body %s)", HeaderReason, got, tc.reason, dr.GetBody())
	}
	for k, v := range tc.header {
		if !strings.HasPrefix(headers[k], v) {
			t.Errorf("header %s = %q, want prefix %q", k, headers[k], v)
		}
	}
	for _, sub := range tc.body {
		if !strings.Contains(dr.GetBody(), sub) {
			t.Errorf("body %s does not contain %s", dr.GetBody(), sub)
		}
	}
	// Nothing from the request's credentials may come back.
	for k, v := range vars {
		for hk, hv := range headers {
			if strings.Contains(hv, v) {
				t.Errorf("header %s echoes %s", hk, k)
			}
		}
		if strings.Contains(dr.GetBody(), v) {
			t.Errorf("body echoes %s", k)
		}
	}
}

// TestCheckTokens covers issue 9's token cases that need no state change in between.
func TestCheckTokens(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{RevisionHeader: true})
	api := func(tok string) *authv3.CheckRequest {
		return checkRequest(t, httpReq(`{"method":"GET","path":"/v2/users/me","headers":{"authorization":"Bearer `+tok+`"}}`, ""))
	}
	e.applied(t, must(t)(e.store.DeactivateOrg(context.Background(), orgOther, state.OpToken, false, state.Change{Actor: "test"})))

	t.Run("expired but otherwise valid token passes", func(t *testing.T) {
		c := zitadelClaims(orgAcme, clientPortal, projMain)
		c["exp"] = time.Now().Add(-time.Hour).Unix()
		resp := e.check(t, api(e.sign(t, c)))
		wantAllow(t, resp, "for an expired token")
		hs := resp.GetOkResponse().GetHeaders()
		if len(hs) != 1 || hs[0].GetHeader().GetKey() != HeaderRevision || hs[0].GetHeader().GetValue() == "" {
			t.Errorf("allow headers = %v, want %s", hs, HeaderRevision)
		}
	})
	t.Run("expired token of a deactivated org is denied", func(t *testing.T) {
		c := zitadelClaims(orgOther, "x", "y")
		c["exp"] = time.Now().Add(-time.Hour).Unix()
		resp := e.check(t, api(e.sign(t, c)))
		wantDeny(t, resp, checkCase{status: 401, reason: ReasonOrgDeactivated}, nil)
		var rev string
		for _, h := range resp.GetDeniedResponse().GetHeaders() {
			if h.GetHeader().GetKey() == HeaderRevision {
				rev = h.GetHeader().GetValue()
			}
		}
		if rev == "" || rev == "0" {
			t.Errorf("deny headers lack %s: %v", HeaderRevision, resp.GetDeniedResponse().GetHeaders())
		}
	})
	t.Run("opaque token passes", func(t *testing.T) {
		wantAllow(t, e.check(t, api("zitadel-opaque-token-abc")), "for an opaque token")
	})
	valid := e.sign(t, zitadelClaims(orgOther, "x", "y"))
	parts := strings.Split(valid, ".")
	malformed := map[string]string{
		"bad base64 payload":     parts[0] + ".%%%." + parts[2],
		"payload not JSON":       parts[0] + "." + base64.RawURLEncoding.EncodeToString([]byte("not json")) + "." + parts[2],
		"payload JSON array":     parts[0] + "." + base64.RawURLEncoding.EncodeToString([]byte(`["100"]`)) + "." + parts[2],
		"four segments":          valid + ".x",
		"empty segments":         "..",
		"truncated JSON":         parts[0] + "." + base64.RawURLEncoding.EncodeToString([]byte(`{"urn:zitadel:iam:org:id":"101"`)) + "." + parts[2],
		"claims of wrong types":  parts[0] + "." + base64.RawURLEncoding.EncodeToString([]byte(`{"aud":{"a":1},"azp":[[1]],"exp":"soon"}`)) + "." + parts[2],
		"unsigned (alg none)":    parts[0] + "." + parts[1] + ".",
		"padding in the payload": parts[0] + "." + parts[1] + "==." + parts[2],
	}
	for name, tok := range malformed {
		t.Run("malformed: "+name, func(t *testing.T) {
			resp := e.check(t, api(tok))
			// A token that names the deactivated org 101 in a readable payload is denied; unreadable ones pass.
			if resp.GetStatus().GetCode() != int32(codes.OK) && resp.GetStatus().GetCode() != int32(codes.PermissionDenied) {
				t.Fatalf("status %d", resp.GetStatus().GetCode())
			}
			if strings.Contains(resp.GetDeniedResponse().GetBody(), tok) {
				t.Error("deny echoes the token")
			}
		})
	}
	t.Run("unsigned token naming a deactivated org is denied", func(t *testing.T) {
		wantDeny(t, e.check(t, api(parts[0]+"."+parts[1]+".")), checkCase{status: 401, reason: ReasonOrgDeactivated}, nil)
	})
	t.Run("oversized token is denied, not parsed", func(t *testing.T) {
		c := zitadelClaims(orgAcme, clientPortal, projMain)
		c["pad"] = strings.Repeat("x", 40<<10)
		wantDeny(t, e.check(t, api(e.sign(t, c))), checkCase{status: 401, reason: ReasonTokenTooLarge}, nil)
	})
	t.Run("oversized opaque token passes", func(t *testing.T) {
		wantAllow(t, e.check(t, api(strings.Repeat("o", 40<<10))), "for a large opaque token")
	})
}

func TestCheckNotReady(t *testing.T) {
	t.Parallel()
	// A replica that never ran has no state: never an allow.
	r := state.NewReplica(state.ReplicaConfig{Logger: quietLogger()})
	az, err := New(Config{Replica: r})
	if err != nil {
		t.Fatal(err)
	}
	defer az.Close()
	client := serveGRPC(t, az)
	_, err = client.Check(context.Background(), checkRequest(t, httpReq(`{"method":"GET","path":"/oauth/v2/authorize"}`, "")))
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("Check on a replica that is not ready: %v, want Unavailable", err)
	}
	if _, err := az.Decide(&Request{Method: "GET", Path: "/"}); err != ErrNotReady {
		t.Fatalf("Decide: %v, want ErrNotReady", err)
	}
}

// TestCheckConcurrent sends checks from several goroutines while an org flips between active and deactivated:
// every answer is an allow or the right deny, the shared allow responses are race-free, and the last answer,
// after the final reactivation, is an allow.
func TestCheckConcurrent(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{RevisionHeader: true})
	req := checkRequest(t, httpReq(`{"method":"GET","path":"/x","headers":{}}`, `"context_extensions":{"op":"login","org_id":"100"}`))
	stop := make(chan struct{})
	errs := make(chan error, 4)
	for range 4 {
		go func() {
			for {
				select {
				case <-stop:
					errs <- nil
					return
				default:
				}
				resp, err := e.client.Check(context.Background(), req)
				if err != nil {
					errs <- err
					return
				}
				switch resp.GetStatus().GetCode() {
				case int32(codes.OK):
				case int32(codes.PermissionDenied):
					if resp.GetStatus().GetMessage() != string(ReasonOrgDeactivated) {
						errs <- fmt.Errorf("deny %q", resp.GetStatus().GetMessage())
						return
					}
				default:
					errs <- fmt.Errorf("status %v", resp.GetStatus())
					return
				}
			}
		}()
	}
	flip := orgOff(orgAcme, state.OpLogin, false)
	for range 5 {
		e.applied(t, flip.do(t, e.store))
		e.applied(t, flip.undo(t, e.store))
	}
	close(stop)
	for range 4 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	wantAllow(t, e.check(t, req), "after the last reactivation")
}
