package traefik_test

import (
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"path"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/deact/deact/deploy/internal/proxytest"
	"github.com/deact/deact/deploy/traefik"
)

// Traefik v3 cannot be built here (go install refuses its replace directives; a build in its own module needs
// modules the proxy refuses), so this test runs the generated configuration through traefikLike: a stand-in
// that does what Traefik v3.7.13 documents and implements (pkg/middlewares/auth/forward.go ServeHTTP and
// writeHeader with trustForwardHeader false; pkg/middlewares/headers customRequestHeaders; router priority;
// path sanitizing), against a real deactd.
type traefikLike struct {
	t      *testing.T
	cfg    *traefik.Config
	client *http.Client
}

func (p *traefikLike) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	// Traefik v3 sanitizes the path (sanitizePath, default true) before routing; matchers see the decoded path.
	routePath := path.Clean(req.URL.Path)
	var best *traefik.Router
	for name, r := range p.cfg.HTTP.Routers {
		if p.match(r.Rule, req.Host, routePath) && (best == nil || r.Priority > best.Priority) {
			r := p.cfg.HTTP.Routers[name]
			best = &r
		}
	}
	if best == nil {
		http.NotFound(w, req)
		return
	}
	for _, name := range best.Middlewares {
		mw := p.cfg.HTTP.Middlewares[name]
		switch {
		case mw.Headers != nil:
			for k, v := range mw.Headers.CustomRequestHeaders {
				if v == "" {
					req.Header.Del(k)
				} else {
					req.Header.Set(k, v)
				}
			}
		case mw.ForwardAuth != nil:
			if !p.forwardAuth(w, req, mw.ForwardAuth) {
				return
			}
		default:
			p.t.Errorf("middleware %s: unknown kind", name)
		}
	}
	u, _ := url.Parse(p.cfg.HTTP.Services[best.Service].LoadBalancer.Servers[0].URL)
	httputil.NewSingleHostReverseProxy(u).ServeHTTP(w, req)
}

func (p *traefikLike) match(rule, host, routePath string) bool {
	// Traefik matches hosts by their canonical form: lower case, without the port, a trailing dot allowed.
	host, _, _ = strings.Cut(host, ":")
	host = strings.TrimSuffix(host, ".")
	term := regexp.MustCompile("^(PathPrefix|Host|PathRegexp)\\(`([^`]*)`\\)$")
	for _, part := range strings.Split(rule, " && ") {
		m := term.FindStringSubmatch(part)
		if m == nil {
			p.t.Fatalf("rule %q: term %q not understood", rule, part)
		}
		switch m[1] {
		case "PathPrefix":
			if !strings.HasPrefix(routePath, m[2]) {
				return false
			}
		case "Host":
			if !strings.EqualFold(host, m[2]) {
				return false
			}
		case "PathRegexp":
			if !regexp.MustCompile(m[2]).MatchString(routePath) {
				return false
			}
		}
	}
	return true
}

// forwardAuth is Traefik's ForwardAuth.ServeHTTP: GET to the address, the body up to maxBodySize when
// forwardBody (401 beyond it), the client's headers without X-Forwarded-*, then Traefik's own X-Forwarded-*;
// a non-2xx answer goes to the client with its headers and body.
func (p *traefikLike) forwardAuth(w http.ResponseWriter, req *http.Request, fa *traefik.ForwardAuth) bool {
	fwd, _ := http.NewRequestWithContext(req.Context(), http.MethodGet, fa.Address, nil)
	if fa.ForwardBody {
		max := int64(-1)
		if fa.MaxBodySize != nil {
			max = *fa.MaxBodySize
		}
		var body []byte
		var err error
		if max < 0 {
			body, err = io.ReadAll(req.Body)
		} else {
			buf := make([]byte, max+1)
			n, rerr := io.ReadFull(req.Body, buf)
			switch {
			case errors.Is(rerr, io.EOF):
			case errors.Is(rerr, io.ErrUnexpectedEOF):
				body = buf[:n]
			case rerr != nil:
				err = rerr
			default:
				w.WriteHeader(http.StatusUnauthorized) // body too large
				return false
			}
		}
		if err != nil {
			w.WriteHeader(http.StatusInternalServerError)
			return false
		}
		if body != nil {
			req.Body = io.NopCloser(bytes.NewReader(body))
			fwd.Body = io.NopCloser(bytes.NewReader(body))
			fwd.ContentLength = int64(len(body))
		}
	}
	if fa.TrustForwardHeader == nil || *fa.TrustForwardHeader {
		p.t.Fatal("the configuration must state trustForwardHeader: false")
	}
	for k, vs := range req.Header {
		if strings.HasPrefix(k, "X-Forwarded-") || k == "X-Real-Ip" || k == "Connection" {
			continue
		}
		fwd.Header[k] = append([]string(nil), vs...)
	}
	clientIP, _, _ := net.SplitHostPort(req.RemoteAddr)
	fwd.Header.Set("X-Forwarded-For", clientIP)
	fwd.Header.Set("X-Forwarded-Method", req.Method)
	fwd.Header.Set("X-Forwarded-Proto", "http")
	fwd.Header.Set("X-Forwarded-Host", req.Host)
	fwd.Header.Set("X-Forwarded-Uri", req.URL.RequestURI())
	resp, err := p.client.Do(fwd)
	if err != nil {
		w.WriteHeader(http.StatusInternalServerError)
		return false
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode < 200 || resp.StatusCode >= 300 {
		for k, vs := range resp.Header {
			w.Header()[k] = vs
		}
		w.WriteHeader(resp.StatusCode)
		_, _ = w.Write(b)
		return false
	}
	return true
}

const token = "traefik-e2e-token-0123456789"

// TestTraefikEndToEnd: the generated dynamic configuration, as Traefik v3 applies it, in front of a small
// upstream, deciding through a real deactd's /check.
func TestTraefikEndToEnd(t *testing.T) {
	upstream := proxytest.Upstream(t)
	d := proxytest.StartDeactd(t, token)
	admin := "http://" + d.AdminAddr
	cfg, err := traefik.Build(traefik.Options{
		Upstream: upstream.URL, Deact: d.HTTPCheckAddr,
		Tenants: []traefik.Tenant{{Host: "tenant7.backup.test", OrgID: "7"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	// What Traefik's file provider reads is the YAML: run the stand-in on the YAML read back, strictly.
	y, err := traefik.YAML(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var back traefik.Config
	if err := yaml.UnmarshalStrict(y, &back); err != nil {
		t.Fatalf("%v\n%s", err, y)
	}
	edgeSrv := httptest.NewServer(&traefikLike{t: t, cfg: &back, client: &http.Client{Timeout: 5 * time.Second}})
	t.Cleanup(edgeSrv.Close)
	edge := edgeSrv.URL

	bearer := map[string]string{"Authorization": "Bearer " + token, "Content-Type": "application/json"}
	if r := proxytest.Do(t, "PUT", admin+"/v1/projects/p1/apps/a1", bearer, `{"orgId":"500","clientIds":["cli-1@proj"]}`); r.Status != 200 {
		t.Fatalf("register app: %d %s", r.Status, r.Body)
	}
	formHdr := map[string]string{"Content-Type": "application/x-www-form-urlencoded"}
	// A public client (PKCE) names itself only in the form body: deact must see it through forwardBody.
	form := "grant_type=authorization_code&code=abc&code_verifier=xyz&client_id=cli-1%40proj"
	if r := proxytest.Do(t, "POST", edge+"/oauth/v2/token", formHdr, form); r.Status != 200 || r.Body != `upstream ok POST /oauth/v2/token body="`+form+`"` {
		t.Fatalf("token request of an active org (the upstream must get the body): %d %s", r.Status, r.Body)
	}

	zitadel := map[string]string{"Authorization": "Bearer " + token, "x-zitadel-orgid": "500", "Content-Type": "application/json"}
	if r := proxytest.Do(t, "POST", admin+"/management/v1/orgs/me/_deactivate", zitadel, "{}"); r.Status != 200 || r.Header.Get("X-Deact-Confirmed") != "1/1" {
		t.Fatalf("ZITADEL deactivate: %d %s", r.Status, r.Body)
	}
	spoof := map[string]string{
		"X-Original-URI": "/elsewhere", "X-Original-Method": "GET",
		"X-Forwarded-Uri": "/elsewhere", "X-Forwarded-Method": "GET", "X-Forwarded-Host": "other.test",
		"X-Deact-Op": "other", "X-Deact-Org-Id": "1", "X-Deact-Client-Id": "someone-else",
	}
	for _, p := range []string{"/oauth/v2/token", "/oauth/v2/%74oken", "/oauth//v2/token", "/x/../oauth/v2/token"} {
		for name, extra := range map[string]map[string]string{"plain": nil, "spoofed headers": spoof} {
			h := map[string]string{}
			for k, v := range formHdr {
				h[k] = v
			}
			for k, v := range extra {
				h[k] = v
			}
			r := proxytest.Do(t, "POST", edge+p, h, form)
			if r.Status != 403 || strings.Contains(r.Body, "upstream ok") || !strings.Contains(r.Body, `"error"`) || r.Header.Get("X-Deact-Reason") != "org_deactivated" {
				t.Errorf("POST %s (%s) by a deactivated public client: %d %v %s", p, name, r.Status, r.Header, r.Body)
			}
		}
	}
	if r := proxytest.Do(t, "GET", edge+"/elsewhere", map[string]string{"X-Deact-Op": "token", "X-Deact-Org-Id": "500", "X-Original-URI": "/oauth/v2/token", "X-Original-Method": "POST"}, ""); r.Status != 200 {
		t.Fatalf("client-sent X-Deact-* or X-Original-* headers reached deact: %d %s", r.Status, r.Body)
	}
	// A body over maxBodySize is refused by Traefik itself (401), never forwarded unseen.
	if r := proxytest.Do(t, "POST", edge+"/oauth/v2/token", formHdr, form+"&pad="+strings.Repeat("a", 64<<10)); r.Status != 401 || strings.Contains(r.Body, "upstream ok") {
		t.Fatalf("oversized token request: %d %s", r.Status, r.Body)
	}
	// Requests off the body routes are not bounded by maxBodySize.
	if r := proxytest.Do(t, "PUT", edge+"/assets/big", nil, strings.Repeat("a", 128<<10)); r.Status != 200 {
		t.Fatalf("large upload elsewhere: %d %.100s", r.Status, r.Body)
	}

	// Commvault: backup disabled for the tenant mapped from its host; CreateTask's body decides the op.
	cv := map[string]string{"Authtoken": "QSDK " + token, "Content-Type": "application/xml", "Accept": "application/xml"}
	body := `<Api_DeactivateOrganizationRequest> <deactivateOptions disableLogin="0" disableBackup="1" disableRestore="0"/>
</Api_DeactivateOrganizationRequest>`
	if r := proxytest.Do(t, "POST", admin+"/webconsole/api/organization/7/action/deactivate", cv, body); r.Status != 200 {
		t.Fatalf("Commvault deactivate: %d %s", r.Status, r.Body)
	}
	tenant := map[string]string{"Host": "tenant7.backup.test", "Authtoken": "QSDK opaque", "Content-Type": "application/json", "X-Deact-Org-Id": "8"}
	backupTask := `{"taskInfo":{"subTasks":[{"subTask":{"subTaskType":"BACKUP","operationType":"BACKUP"}}]}}`
	restoreTask := `{"taskInfo":{"subTasks":[{"subTask":{"subTaskType":"RESTORE","operationType":"RESTORE"}}]}}`
	for _, c := range []struct{ path, body string }{
		{"/webconsole/api/Subclient/5/action/backup", "{}"},
		{"/webconsole/api/subclient/5/ACTION/Backup", "{}"},
		{"/webconsole/api/CreateTask", backupTask},
	} {
		if r := proxytest.Do(t, "POST", edge+c.path, tenant, c.body); r.Status != 403 || strings.Contains(r.Body, "upstream ok") || !strings.Contains(r.Body, "errorCode") {
			t.Errorf("POST %s of a backup-disabled org: %d %s", c.path, r.Status, r.Body)
		}
	}
	// Other spellings of the tenant's host name still name the tenant.
	for _, host := range []string{"TENANT7.Backup.Test", "tenant7.backup.test.", "tenant7.backup.test:443"} {
		h := map[string]string{"Host": host, "Authtoken": "QSDK opaque"}
		if r := proxytest.Do(t, "POST", edge+"/webconsole/api/Subclient/5/action/backup", h, "{}"); r.Status != 403 || strings.Contains(r.Body, "upstream ok") {
			t.Errorf("backup of a backup-disabled org through host %q: %d %s", host, r.Status, r.Body)
		}
	}
	for _, c := range []struct{ path, body string }{
		{"/webconsole/api/Subclient/5/action/restore", "{}"},
		{"/webconsole/api/CreateTask", restoreTask},
	} {
		if r := proxytest.Do(t, "POST", edge+c.path, tenant, c.body); r.Status != 200 {
			t.Errorf("POST %s (restore) of a backup-disabled org: %d %s", c.path, r.Status, r.Body)
		}
	}

	if r := proxytest.Do(t, "POST", admin+"/management/v1/orgs/me/_reactivate", zitadel, "{}"); r.Status != 200 {
		t.Fatalf("ZITADEL reactivate: %d %s", r.Status, r.Body)
	}
	if r := proxytest.Do(t, "POST", edge+"/oauth/v2/token", formHdr, form); r.Status != 200 {
		t.Fatalf("token request after reactivation: %d %s", r.Status, r.Body)
	}
}

func TestBuildRejectsBadInput(t *testing.T) {
	cases := []struct {
		name string
		o    traefik.Options
	}{
		{"upstream without port", traefik.Options{Upstream: "nohostport"}},
		{"deact without port", traefik.Options{Upstream: "a:1", Deact: "deact"}},
		{"unbounded body", traefik.Options{Upstream: "a:1", MaxBodySize: -1}},
		{"tenant host with a backquote", traefik.Options{Upstream: "a:1", Tenants: []traefik.Tenant{{Host: "x`) || PathPrefix(`/", OrgID: "1"}}}},
		{"tenant twice", traefik.Options{Upstream: "a:1", Tenants: []traefik.Tenant{{Host: "x", OrgID: "1"}, {Host: "X", OrgID: "2"}}}},
		{"empty org", traefik.Options{Upstream: "a:1", Tenants: []traefik.Tenant{{Host: "x"}}}},
		{"tenant host with a comment", traefik.Options{Upstream: "a:1", Tenants: []traefik.Tenant{{Host: "#x", OrgID: "7"}}}},
		{"tenant org outside deact's IDs", traefik.Options{Upstream: "a:1", Tenants: []traefik.Tenant{{Host: "x", OrgID: "7$"}}}},
		{"unknown preset", traefik.Options{Upstream: "a:1", Presets: []string{"keycloak"}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if c, err := traefik.Build(tc.o); err == nil {
				t.Fatalf("accepted: %+v", c)
			}
		})
	}
}

// TestBuildShape: every router strips the client's facts before anything else and asks deact before the
// service; body routes are bounded.
func TestBuildShape(t *testing.T) {
	c, err := traefik.Build(traefik.Options{Upstream: "zitadel:8080", Tenants: []traefik.Tenant{{Host: "t.example", OrgID: "7"}}})
	if err != nil {
		t.Fatal(err)
	}
	names := make([]string, 0, len(c.HTTP.Routers))
	for n := range c.HTTP.Routers {
		names = append(names, n)
	}
	sort.Strings(names)
	if want := []string{"deact", "deact-body", "deact-tenant-0", "deact-tenant-0-body"}; strings.Join(names, " ") != strings.Join(want, " ") {
		t.Fatalf("routers %v, want %v", names, want)
	}
	for n, r := range c.HTTP.Routers {
		if r.Middlewares[0] != traefik.MiddlewareFacts {
			t.Errorf("router %s: first middleware %s", n, r.Middlewares[0])
		}
		last := c.HTTP.Middlewares[r.Middlewares[len(r.Middlewares)-1]].ForwardAuth
		if last == nil {
			t.Errorf("router %s does not end with a forwardAuth", n)
		} else if last.ForwardBody && (last.MaxBodySize == nil || *last.MaxBodySize != 64<<10) {
			t.Errorf("router %s: forwardBody without deact's bound", n)
		}
	}
}
