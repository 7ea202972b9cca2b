package authz

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"google.golang.org/protobuf/types/known/structpb"
)

// TestDecisionsDoNotAllocate holds the package doc's promise: a decision whose subjects come from route facts,
// headers (the query and a form body too, where their values need no decoding) or a cached token allocates
// nothing, allow or deny, through every entry: decideNow on the Request each transport builds, and Check for
// each surface (an allow's CheckResponse is shared per revision; gRPC's own marshalling is not ours). A deny's
// response (shape) and the HTTP handler's conversion of an http.Request allocate, and are not measured.
//
// Not parallel: testing.AllocsPerRun counts the process's allocations, and refuses to run in a parallel test.
func TestDecisionsDoNotAllocate(t *testing.T) {
	snap := testSnapshot(t)
	a := gatewayAuthorizer(t, Config{RevisionHeader: true}, snap) // a fence and a deny-after bound: one clock read
	plain := testAuthorizer(t, Config{}, snap, 0)                 // no fence, no bound: no clock read at all

	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tok := signJWT(t, key, zitadelClaims(orgAcme, clientPortal, projMain, clientPortal))
	var warm Decision
	_ = a.decideNow(&Request{Method: "GET", Path: "/v2/users/me", Headers: map[string]string{"authorization": "Bearer " + tok}}, &warm)
	a.cache.c.Wait()
	if _, ok := a.cache.get(tok); !ok {
		t.Fatal("token not cached")
	}
	claims, err := structpb.NewStruct(map[string]any{"https://id.example.com": map[string]any{
		"iss": "https://id.example.com", "sub": user, "urn:zitadel:iam:user:resourceowner:id": orgAcme, "azp": clientPortal}})
	if err != nil {
		t.Fatal(err)
	}
	nginx := httptest.NewRequest("GET", "/check", nil)
	nginx.Header.Set(HeaderOriginalURI, "/ui/login/loginname?client_id="+clientPortal)
	nginx.Header.Set(HeaderOriginalMethod, "GET")
	nginx.Header.Set(HeaderOrgID, orgOther)
	nginx.Header.Set("X-Zitadel-Orgid", orgAcme)
	envoyHTTP := httptest.NewRequest("POST", "/check/oauth/v2/token?client_id="+clientCLI, strings.NewReader("grant_type=client_credentials&scope=openid"))
	envoyHTTP.Header.Set("Content-Type", "application/x-www-form-urlencoded")

	decisions := []struct {
		name  string
		a     *Authorizer
		req   *Request
		http  *http.Request // the /check request the Request is built from, instead of req
		allow bool
	}{
		{name: "route facts", a: a, allow: true, req: &Request{Method: "GET", Path: "/x", Route: map[string]string{
			FactOp: "login", FactOrgID: orgOther, FactProjectID: projMain, FactAppID: appPortal, FactClientID: clientCLI}}},
		{name: "route facts, no fence or bound", a: plain, allow: true, req: &Request{Method: "GET", Path: "/x",
			Route: map[string]string{FactOp: "token", FactOrgID: orgOther, FactClientID: clientCLI}}},
		{name: "org headers, repeated values", a: a, allow: true, req: &Request{Method: "GET", Path: "/x",
			Headers: map[string]string{"x-zitadel-orgid": orgAcme + ", " + orgOther, "grpc-metadata-x-zitadel-orgid": orgTenant},
			Route:   map[string]string{FactOp: "api"}}},
		{name: "login route without its body (nginx)", a: a, allow: true, req: headerRequest()},
		{name: "authorize query", a: a, allow: true, req: &Request{Method: "GET", Path: "/oauth/v2/authorize",
			Query: "response_type=code&client_id=" + clientPortal + "&login_hint=alice@acme.example&scope=openid"}},
		{name: "token form body", a: a, allow: true, req: &Request{Method: "POST", Path: "/oauth/v2/token",
			Headers: map[string]string{"content-type": "application/x-www-form-urlencoded", "content-length": "66"},
			Body:    "grant_type=client_credentials&client_id=" + clientCLI + "&scope=openid&x=" + strings.Repeat("y", 5)}},
		{name: "cached bearer JWT", a: a, allow: true, req: &Request{Method: "GET", Path: "/management/v1/projects/300",
			Headers: map[string]string{"authorization": "Bearer " + tok, "accept": "application/json"}}},
		{name: "jwt_authn metadata", a: a, allow: true, req: &Request{Method: "GET", Path: "/v2/users/me", JWTMetadata: claims}},
		{name: "deny by route fact", a: a, allow: false, req: &Request{Method: "POST", Path: "/webconsole/api/Subclient/1/action/backup",
			Route: map[string]string{FactOrgID: "671"}}},
		{name: "deny by org header", a: a, allow: false, req: &Request{Method: "GET", Path: "/x",
			Headers: map[string]string{"x-zitadel-orgid": "666"}, Route: map[string]string{FactOp: "login"}}},
		{name: "deny by client of a deactivated app", a: a, allow: false, req: &Request{Method: "GET", Path: "/oauth/v2/authorize",
			Query: "client_id=668@dead"}},
		{name: "/check from nginx auth_request", a: a, allow: true, http: nginx},
		{name: "/check in Envoy's HTTP mode", a: a, allow: true, http: envoyHTTP},
	}
	for _, tc := range decisions {
		t.Run("decide/"+tc.name, func(t *testing.T) {
			req := tc.req
			if tc.http != nil {
				req = new(Request)
				rest, _ := strings.CutPrefix(tc.http.URL.EscapedPath(), "/check")
				if err := tc.a.requestFromHTTP(tc.http, rest, req); err != nil {
					t.Fatal(err)
				}
			}
			var d Decision
			if err := tc.a.decideNow(req, &d); err != nil || d.Allow != tc.allow || d.Action == ActionOther {
				t.Fatalf("decision %+v, %v; want allow=%v and an op that reads state", d, err, tc.allow)
			}
			if n := testing.AllocsPerRun(200, func() { _ = tc.a.decideNow(req, &d) }); n != 0 {
				t.Errorf("%v allocations per decision, want 0", n)
			}
		})
	}

	checks := []struct {
		surface Surface
		req     string
	}{
		{SurfaceOAuthToken, httpReq(`{"method":"POST","path":"/oauth/v2/token",
			"headers":{"content-type":"application/x-www-form-urlencoded","x-request-id":"abc"},
			"body":"grant_type=client_credentials&client_id=`+clientCLI+`&scope=openid"}`, "")},
		{SurfaceOAuthAuthorize, httpReq(`{"method":"GET","path":"/oauth/v2/authorize","query":"",
			"headers":{":path":"/oauth/v2/authorize?client_id=`+clientPortal+`&response_type=code"}}`, "")},
		{SurfaceZITADEL, httpReq(`{"method":"GET","path":"/management/v1/projects/300",
			"headers":{"authorization":"Bearer `+tok+`","x-zitadel-orgid":"`+orgAcme+`"}}`, "")},
		{SurfaceCommvault, httpReq(`{"method":"POST","path":"/webconsole/api/Subclient/1/action/backup",
			"headers":{"authtoken":"QSDK abc","accept":"application/json"}}`, `"context_extensions":{"org_id":"`+orgTenant+`"}`)},
		{SurfaceGeneric, httpReq(`{"method":"GET","path":"/x","headers":{"x-zitadel-orgid":"`+orgOther+`"}}`,
			`"context_extensions":{"op":"api","org_id":"`+orgAcme+`"}`)},
	}
	ctx := context.Background()
	for _, tc := range checks {
		t.Run("check/"+tc.surface.String(), func(t *testing.T) {
			cr := checkRequest(t, tc.req)
			var req Request
			requestFromCheck(cr, &req)
			var d Decision
			if err := a.decideNow(&req, &d); err != nil || !d.Allow || d.Surface != tc.surface || d.Action == ActionOther {
				t.Fatalf("decision %+v, %v; want an allow on surface %s", d, err, tc.surface)
			}
			if _, err := a.Check(ctx, cr); err != nil {
				t.Fatal(err)
			}
			if n := testing.AllocsPerRun(200, func() { _, _ = a.Check(ctx, cr) }); n != 0 {
				t.Errorf("%v allocations per Check, want 0", n)
			}
		})
	}
}
