package authz

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/deact/deact/state"
)

// forwardedFromCheck turns a CheckRequest into what a forward-auth proxy sends to /check: a GET with the
// original method, URI and host in X-Forwarded-Method/-Uri/-Host and the original headers; Caddy's
// forward_auth sends no body, Traefik's ForwardAuth with forwardBody sends it with the GET.
func forwardedFromCheck(t *testing.T, base string, cr *authv3.CheckRequest, body bool) *http.Request {
	t.Helper()
	h := cr.GetAttributes().GetRequest().GetHttp()
	var rd io.Reader
	if body {
		b := h.GetBody()
		if raw := h.GetRawBody(); len(raw) > 0 {
			b = string(raw)
		}
		rd = strings.NewReader(b)
	}
	req, err := http.NewRequest("GET", base+"/check", rd)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range h.GetHeaders() {
		if !strings.HasPrefix(k, ":") {
			req.Header.Set(k, v)
		}
	}
	req.Header.Set(HeaderForwardedURI, h.GetPath())
	req.Header.Set(HeaderForwardedMethod, h.GetMethod())
	req.Header.Set(HeaderForwardedHost, h.GetHost())
	req.Header.Set("X-Forwarded-Proto", "https")
	for k, v := range cr.GetAttributes().GetContextExtensions() {
		req.Header.Set("X-Deact-"+strings.ReplaceAll(k, "_", "-"), v)
	}
	return req
}

// TestHTTPHandlerForwarded runs the Check table through /check as Caddy (no body) and Traefik (forwardBody)
// describe requests: every deny the gRPC path gives, the forwarded form gives too.
func TestHTTPHandlerForwarded(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{Rules: []Rule{{
		Name: "tenant-backup", Method: "POST", Path: "/api/tenants/{tenant}/backups", Op: "backup",
		Subjects: []SubjectSource{{Kind: "org", From: "path", Name: "tenant"}},
	}}})
	srv := httptest.NewServer(e.az.HTTPHandler())
	defer srv.Close()
	send := func(t *testing.T, req *http.Request) (*http.Response, string) { return sendCheck(t, srv, req) }
	for _, mode := range []struct {
		name string
		body bool
	}{{"caddy", false}, {"traefik", true}} {
		for _, tc := range checkCases() {
			if !httpCase(tc, !mode.body) {
				continue
			}
			t.Run(mode.name+"/"+tc.name, func(t *testing.T) {
				vars := map[string]string{"BASIC_CLI": basicCLI, "BASIC_PORTAL": basicPortal}
				for k, c := range tc.tokens {
					vars[k] = e.sign(t, c)
				}
				cr := checkRequest(t, fill(tc.req, vars))
				if resp, body := send(t, forwardedFromCheck(t, srv.URL, cr, mode.body)); resp.StatusCode != 200 {
					t.Fatalf("before the change: %d %s", resp.StatusCode, body)
				}
				e.applied(t, tc.change.do(t, e.store))
				defer func() { e.applied(t, tc.change.undo(t, e.store)) }()
				resp, body := send(t, forwardedFromCheck(t, srv.URL, cr, mode.body))
				want := 403
				if tc.status == 401 {
					want = 401
				}
				if resp.StatusCode != want || resp.Header.Get(HeaderReason) != string(tc.reason) {
					t.Errorf("denied: %d %q, want %d %q; body %s", resp.StatusCode, resp.Header.Get(HeaderReason), want, tc.reason, body)
				}
				for _, sub := range tc.body {
					if !strings.Contains(body, sub) {
						t.Errorf("body %s does not contain %s", body, sub)
					}
				}
			})
		}
	}
}

// TestHTTPHandlerHeaderFamilies: the URI and the method come from one family of headers. A client's
// X-Forwarded-* cannot change what nginx's X-Original-* describe, and the host is only taken with the
// forwarded URI.
func TestHTTPHandlerHeaderFamilies(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{Rules: []Rule{{
		Name: "host-org", Method: "GET", Path: "/hosted/**", Op: "api",
		Subjects: []SubjectSource{{Kind: "org", From: "header", Name: "host"}},
	}}})
	srv := httptest.NewServer(e.az.HTTPHandler())
	defer srv.Close()
	e.applied(t, orgOff("500", state.OpToken, false).do(t, e.store))
	cases := []struct {
		name   string
		header map[string]string
		status int
	}{
		{"forwarded host is the host", map[string]string{
			HeaderForwardedURI: "/hosted/x", HeaderForwardedMethod: "GET", HeaderForwardedHost: "500"}, 401},
		{"forwarded method decides the route", map[string]string{
			HeaderForwardedURI: "/hosted/x", HeaderForwardedMethod: "POST", HeaderForwardedHost: "500"}, 200},
		{"nginx URI with a client's forwarded method", map[string]string{
			HeaderOriginalURI: "/hosted/x", HeaderOriginalMethod: "GET", HeaderForwardedMethod: "POST"}, 200},
		{"nginx URI with a client's forwarded URI and host", map[string]string{
			HeaderOriginalURI: "/elsewhere", HeaderOriginalMethod: "GET",
			HeaderForwardedURI: "/hosted/x", HeaderForwardedHost: "500"}, 200},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest("GET", srv.URL+"/check", nil)
			for k, v := range tc.header {
				req.Header.Set(k, v)
			}
			resp, body := sendCheck(t, srv, req)
			if resp.StatusCode != tc.status {
				t.Fatalf("got %d %s, want %d", resp.StatusCode, body, tc.status)
			}
		})
	}
}

func sendCheck(t *testing.T, srv *httptest.Server, req *http.Request) (*http.Response, string) {
	t.Helper()
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// FuzzHTTPHeaderFamilies: a client's X-Forwarded-* headers never change what an nginx-style request (with
// X-Original-URI/-Method) decides, and a request described with X-Forwarded-* decides as the same request
// described with X-Original-*. Seeded from the Check table.
func FuzzHTTPHeaderFamilies(f *testing.F) {
	a := testAuthorizer(f, Config{}, testSnapshot(f), 0)
	for _, s := range tableSeeds(f) {
		f.Add(s.method, s.path, s.query, s.headers, s.op, s.orgID, "/elsewhere", "GET", "other.test")
	}
	h := a.HTTPHandler()
	decide := func(t *testing.T, hdr map[string]string, set map[string]string) (int, string) {
		req := httptest.NewRequest("GET", "/check", nil)
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		for k, v := range set {
			req.Header.Set(k, v)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec.Code, rec.Header().Get(HeaderReason)
	}
	f.Fuzz(func(t *testing.T, method, path, query, headers, op, orgID, fURI, fMethod, fHost string) {
		if method == "" || path == "" || !validHeaderValue(method+path+query+op+orgID+fURI+fMethod+fHost) {
			return
		}
		hdr := map[string]string{}
		for k, v := range parseHeaders(headers) {
			lk := strings.ToLower(k)
			if !validHeaderValue(k+v) || k == "" || strings.HasPrefix(lk, "x-original-") || strings.HasPrefix(lk, "x-forwarded-") || strings.ContainsAny(k, " :\t") {
				continue
			}
			hdr[k] = v
		}
		hdr[HeaderOp], hdr[HeaderOrgID] = op, orgID
		uri := path
		if query != "" {
			uri += "?" + query
		}
		nginx := map[string]string{HeaderOriginalURI: uri, HeaderOriginalMethod: method}
		code, reason := decide(t, hdr, nginx)
		spoofed := map[string]string{HeaderOriginalURI: uri, HeaderOriginalMethod: method,
			HeaderForwardedURI: fURI, HeaderForwardedMethod: fMethod, HeaderForwardedHost: fHost}
		if c, r := decide(t, hdr, spoofed); c != code || r != reason {
			t.Fatalf("client X-Forwarded-* changed the decision: %d %q, want %d %q", c, r, code, reason)
		}
		fwd := map[string]string{HeaderForwardedURI: uri, HeaderForwardedMethod: method, HeaderForwardedHost: "example.test"}
		if c, r := decide(t, hdr, fwd); c != code || r != reason {
			t.Fatalf("X-Forwarded-* form decides %d %q, X-Original-* form %d %q", c, r, code, reason)
		}
	})
}

// validHeaderValue reports whether s can be sent as a header value as is (no control characters, no leading or
// trailing space the transport would trim).
func validHeaderValue(s string) bool {
	for _, c := range s {
		if c < 0x20 || c == 0x7f || c >= 0x80 {
			return false
		}
	}
	return strings.TrimSpace(s) == s
}
