package authz

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/deact/deact/state"
)

// httpFromCheck turns a CheckRequest into the request the HTTP check endpoint gets: from nginx auth_request
// (X-Original-URI/-Method, no body) or from Envoy's HTTP ext_authz with path_prefix /check (own method, path and
// body). Context extensions become X-Deact-* headers, as the proxy's configuration would set them.
func httpFromCheck(t *testing.T, base string, cr *authv3.CheckRequest, nginx bool) *http.Request {
	t.Helper()
	h := cr.GetAttributes().GetRequest().GetHttp()
	body := h.GetBody()
	if raw := h.GetRawBody(); len(raw) > 0 {
		body = string(raw)
	}
	var req *http.Request
	var err error
	if nginx {
		req, err = http.NewRequest("GET", base+"/check", nil)
		if err == nil {
			req.Header.Set(HeaderOriginalURI, h.GetPath())
			req.Header.Set(HeaderOriginalMethod, h.GetMethod())
		}
	} else {
		req, err = http.NewRequest(h.GetMethod(), base+"/check"+h.GetPath(), strings.NewReader(body))
	}
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range h.GetHeaders() {
		if !strings.HasPrefix(k, ":") {
			req.Header.Set(k, v)
		}
	}
	for k, v := range cr.GetAttributes().GetContextExtensions() {
		req.Header.Set("X-Deact-"+strings.ReplaceAll(k, "_", "-"), v)
	}
	return req
}

// httpCase reports whether a gRPC case can be carried over HTTP in this mode: jwt_authn metadata has no HTTP
// equivalent, and nginx forwards no body.
func httpCase(tc checkCase, nginx bool) bool {
	if strings.Contains(tc.req, "metadata_context") {
		return false
	}
	return !nginx || !strings.Contains(tc.req, `"body"`) && !strings.Contains(tc.req, `"raw_body"`)
}

func TestHTTPHandler(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{RevisionHeader: true, Rules: []Rule{{
		Name: "tenant-backup", Method: "POST", Path: "/api/tenants/{tenant}/backups", Op: "backup",
		Subjects: []SubjectSource{{Kind: "org", From: "path", Name: "tenant"}},
	}}})
	srv := httptest.NewServer(e.az.HTTPHandler())
	defer srv.Close()

	for _, mode := range []struct {
		name  string
		nginx bool
	}{{"nginx", true}, {"envoy-http", false}} {
		for _, tc := range checkCases() {
			if !httpCase(tc, mode.nginx) {
				continue
			}
			t.Run(mode.name+"/"+tc.name, func(t *testing.T) {
				vars := map[string]string{"BASIC_CLI": basicCLI, "BASIC_PORTAL": basicPortal}
				for k, c := range tc.tokens {
					vars[k] = e.sign(t, c)
				}
				cr := checkRequest(t, fill(tc.req, vars))
				send := func(cr *authv3.CheckRequest) (*http.Response, string) {
					resp, err := srv.Client().Do(httpFromCheck(t, srv.URL, cr, mode.nginx))
					if err != nil {
						t.Fatal(err)
					}
					defer resp.Body.Close()
					b, _ := io.ReadAll(resp.Body)
					return resp, string(b)
				}
				if resp, body := send(cr); resp.StatusCode != 200 || resp.Header.Get(HeaderRevision) == "" {
					t.Fatalf("before the change: %d %s, revision %q", resp.StatusCode, body, resp.Header.Get(HeaderRevision))
				}
				e.applied(t, tc.change.do(t, e.store))
				resp, body := send(cr)
				want := 403
				if tc.status == 401 {
					want = 401
				}
				if resp.StatusCode != want || resp.Header.Get(HeaderReason) != string(tc.reason) {
					t.Errorf("denied: %d %s=%q, want %d %q; body %s", resp.StatusCode, HeaderReason,
						resp.Header.Get(HeaderReason), want, tc.reason, body)
				}
				for _, sub := range tc.body {
					if !strings.Contains(body, sub) {
						t.Errorf("body %s does not contain %s", body, sub)
					}
				}
				for k, v := range tc.header {
					if !strings.HasPrefix(resp.Header.Get(k), v) {
						t.Errorf("header %s = %q, want prefix %q", k, resp.Header.Get(k), v)
					}
				}
				for k, v := range vars {
					if strings.Contains(body, v) {
						t.Errorf("body echoes %s", k)
					}
				}
				for i, p := range tc.passes {
					pr := checkRequest(t, fill(p, vars))
					if !mode.nginx || !strings.Contains(p, `"body"`) {
						if resp, body := send(pr); resp.StatusCode != 200 {
							t.Errorf("pass %d: %d %s", i, resp.StatusCode, body)
						}
					}
				}
				e.applied(t, tc.change.undo(t, e.store))
				if resp, body := send(cr); resp.StatusCode != 200 {
					t.Fatalf("after undoing the change: %d %s", resp.StatusCode, body)
				}
			})
		}
	}

	t.Run("nginx client_id from X-Deact-Client-Id", func(t *testing.T) {
		req, _ := http.NewRequest("GET", srv.URL+"/check", nil)
		req.Header.Set(HeaderOriginalURI, "/token")
		req.Header.Set(HeaderOp, "token")
		req.Header.Set(HeaderClientID, clientRep)
		e.applied(t, appOff(projRep, appRep).do(t, e.store))
		defer func() { e.applied(t, appOff(projRep, appRep).undo(t, e.store)) }()
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 403 || resp.Header.Get(HeaderReason) != string(ReasonAppDeactivated) {
			t.Fatalf("got %d %q", resp.StatusCode, resp.Header.Get(HeaderReason))
		}
	})
	// A body over MaxBodyBytes is decided as a prefix: refused where the body decides (the token route reads
	// its form), allowed where it does not matter. /check answers 403 (nginx passes only 401 and 403 on) with
	// the reason.
	over := strings.Repeat("a", 1<<20) + "&client_id=" + clientRep
	t.Run("body over the limit on a body route is refused", func(t *testing.T) {
		resp, err := srv.Client().Post(srv.URL+"/check/oauth/v2/token", "application/x-www-form-urlencoded", strings.NewReader(over))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 403 || resp.Header.Get(HeaderReason) != string(ReasonBodyIncomplete) {
			t.Fatalf("got %d %q", resp.StatusCode, resp.Header.Get(HeaderReason))
		}
	})
	t.Run("body over the limit without Content-Length on a body route is refused", func(t *testing.T) {
		req, _ := http.NewRequest("POST", srv.URL+"/check/oauth/v2/token", io.MultiReader(strings.NewReader(over), strings.NewReader("b")))
		req.ContentLength = -1
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 403 || resp.Header.Get(HeaderReason) != string(ReasonBodyIncomplete) {
			t.Fatalf("got %d %q", resp.StatusCode, resp.Header.Get(HeaderReason))
		}
	})
	t.Run("body over the limit where the body does not matter passes", func(t *testing.T) {
		resp, err := srv.Client().Post(srv.URL+"/check/x", "application/octet-stream", strings.NewReader(over))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("got %d", resp.StatusCode)
		}
	})
	t.Run("other paths are 404", func(t *testing.T) {
		resp, err := srv.Client().Get(srv.URL + "/checkx")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 404 {
			t.Fatalf("got %d", resp.StatusCode)
		}
	})
	t.Run("unknown X-Deact-Op fails closed", func(t *testing.T) {
		req, _ := http.NewRequest("GET", srv.URL+"/check", nil)
		req.Header.Set(HeaderOriginalURI, "/x")
		req.Header.Set(HeaderOp, "bakup")
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 403 || resp.Header.Get(HeaderReason) != string(ReasonBadRouteFact) {
			t.Fatalf("got %d %q", resp.StatusCode, resp.Header.Get(HeaderReason))
		}
	})
}

func TestHTTPHandlerNotReady(t *testing.T) {
	t.Parallel()
	az, err := New(Config{Replica: state.NewReplica(state.ReplicaConfig{Logger: quietLogger()})})
	if err != nil {
		t.Fatal(err)
	}
	defer az.Close()
	rec := httptest.NewRecorder()
	req := httptest.NewRequestWithContext(context.Background(), "GET", "/check", nil)
	req.Header.Set(HeaderOriginalURI, "/oauth/v2/authorize?client_id=x")
	az.HTTPHandler().ServeHTTP(rec, req)
	if rec.Code != http.StatusServiceUnavailable {
		t.Fatalf("got %d, want 503", rec.Code)
	}
}
