package caddy_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/deact/deact/daemon"
	"github.com/deact/deact/deploy/caddy"
)

const token = "caddy-e2e-token-0123456789"

// caddyBinary finds caddy; outside CI a missing caddy skips, under CI=true it fails. CI uses Debian's package
// (caddy 2.6.2, which has forward_auth): nothing to build, and the binary operators install.
func caddyBinary(t *testing.T) string {
	t.Helper()
	if path, err := exec.LookPath("caddy"); err == nil {
		return path
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("caddy is not installed, and CI=true requires this test to run (.ci/run installs it: apt-get install -y caddy)")
	}
	t.Skip("caddy not installed: skipping the Caddy end-to-end test (apt-get install -y caddy to run it)")
	return ""
}

func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// startCaddy renders the Caddyfile, validates it with caddy itself and runs caddy until cleanup, its home,
// config and data directories in a temporary directory.
func startCaddy(t *testing.T, o caddy.Options) string {
	t.Helper()
	bin := caddyBinary(t)
	dir := t.TempDir()
	listen := freePort(t)
	_, port, _ := net.SplitHostPort(listen)
	o.Site, o.Bind, o.Admin = "http://:"+port, "127.0.0.1", "off"
	var conf bytes.Buffer
	if err := caddy.Render(&conf, o); err != nil {
		t.Fatal(err)
	}
	confPath := filepath.Join(dir, "Caddyfile")
	if err := os.WriteFile(confPath, conf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	env := append(os.Environ(), "HOME="+dir, "XDG_CONFIG_HOME="+filepath.Join(dir, "config"), "XDG_DATA_HOME="+filepath.Join(dir, "data"))
	validate := exec.Command(bin, "validate", "--adapter", "caddyfile", "--config", confPath)
	validate.Env = env
	if out, err := validate.CombinedOutput(); err != nil {
		t.Fatalf("caddy validate: %v\n%s\n%s", err, out, conf.String())
	}
	cmd := exec.Command(bin, "run", "--adapter", "caddyfile", "--config", confPath)
	cmd.Env = env
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("caddy stderr:\n%s", stderr.String())
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		if c, err := net.Dial("tcp", listen); err == nil {
			c.Close()
			return "http://" + listen
		}
		if time.Now().After(deadline) {
			t.Fatalf("caddy does not listen on %s: %s", listen, stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

type reply struct {
	status int
	body   string
	header http.Header
}

func do(t *testing.T, method, url string, hdr map[string]string, body string) reply {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		if k == "Host" {
			req.Host = v
			continue
		}
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return reply{resp.StatusCode, string(b), resp.Header}
}

// startDeactd starts a real deactd (embedded etcd, admin API and /check) and waits until it is ready.
func startDeactd(t *testing.T) *daemon.Daemon {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	d, err := daemon.Start(ctx, daemon.Config{
		DataDir: t.TempDir(), NodeID: "edge", AdminToken: token,
		AuthzAddr: "127.0.0.1:0", HTTPCheckAddr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0",
		EtcdLogLevel: "fatal", Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Out: io.Discard,
	})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); _ = d.Wait() })
	for deadline := time.Now().Add(10 * time.Second); ; {
		if r, err := http.Get("http://" + d.AdminAddr + "/readyz"); err == nil {
			r.Body.Close()
			if r.StatusCode == 200 {
				return d
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("deactd not ready")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestCaddyEndToEnd: real Caddy (forward_auth) in front of a small upstream, deciding through a real deactd's
// /check, with writes through deact's ZITADEL- and Commvault-compatible admin APIs.
func TestCaddyEndToEnd(t *testing.T) {
	caddyBinary(t)
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "upstream ok %s %s body=%q", r.Method, r.URL.EscapedPath(), b)
	}))
	t.Cleanup(upstream.Close)
	d := startDeactd(t)
	admin := "http://" + d.AdminAddr
	edge := startCaddy(t, caddy.Options{
		Upstream: strings.TrimPrefix(upstream.URL, "http://"),
		Deact:    d.HTTPCheckAddr,
		Tenants:  []caddy.Tenant{{Host: "tenant7.backup.test", OrgID: "7"}},
	})

	bearer := map[string]string{"Authorization": "Bearer " + token, "Content-Type": "application/json"}
	if r := do(t, "PUT", admin+"/v1/projects/p1/apps/a1", bearer, `{"orgId":"500","clientIds":["cli-1@proj"]}`); r.status != 200 {
		t.Fatalf("register app: %d %s", r.status, r.body)
	}
	basic := map[string]string{
		"Authorization": "Basic Y2xpLTFAcHJvajpzZWNyZXQ=", // cli-1@proj:secret
		"Content-Type":  "application/x-www-form-urlencoded",
	}
	form := "grant_type=client_credentials&scope=openid"
	if r := do(t, "POST", edge+"/oauth/v2/token", basic, form); r.status != 200 || r.body != `upstream ok POST /oauth/v2/token body="`+form+`"` {
		t.Fatalf("token request of an active org (the upstream must get the body): %d %s", r.status, r.body)
	}

	zitadel := map[string]string{"Authorization": "Bearer " + token, "x-zitadel-orgid": "500", "Content-Type": "application/json"}
	if r := do(t, "POST", admin+"/management/v1/orgs/me/_deactivate", zitadel, "{}"); r.status != 200 || r.header.Get("X-Deact-Confirmed") != "1/1" {
		t.Fatalf("ZITADEL deactivate: %d %s confirmed=%q", r.status, r.body, r.header.Get("X-Deact-Confirmed"))
	}

	// deact's deny reaches the client as deact gave it: status, OAuth error body, reason header.
	r := do(t, "POST", edge+"/oauth/v2/token", basic, form)
	if r.status != 403 || !strings.Contains(r.body, `"error"`) || strings.Contains(r.body, "upstream ok") || r.header.Get("X-Deact-Reason") != "org_deactivated" {
		t.Fatalf("token request of a deactivated org: %d %v %s", r.status, r.header, r.body)
	}

	// Another spelling of the path, and headers a client sends to describe another request or to state route
	// facts: deact classifies the raw X-Forwarded-Uri Caddy sends, and Caddy drops or replaces the rest.
	spoof := map[string]string{
		"X-Original-URI": "/elsewhere", "X-Original-Method": "GET",
		"X-Forwarded-Uri": "/elsewhere", "X-Forwarded-Method": "GET", "X-Forwarded-Host": "other.test",
		"X-Deact-Op": "other", "X-Deact-Org-Id": "1", "X-Deact-Client-Id": "someone-else",
	}
	for _, path := range []string{"/oauth/v2/token", "/oauth/v2/%74oken", "/oauth//v2/token", "/oauth/v2/./token", "/x/../oauth/v2/token"} {
		for name, extra := range map[string]map[string]string{"plain": nil, "spoofed headers": spoof} {
			h := map[string]string{}
			for k, v := range basic {
				h[k] = v
			}
			for k, v := range extra {
				h[k] = v
			}
			if r := do(t, "POST", edge+path, h, form); r.status != 403 || strings.Contains(r.body, "upstream ok") {
				t.Errorf("POST %s (%s) of a deactivated client: %d %s", path, name, r.status, r.body)
			}
		}
	}
	// An absolute-form request target names the same path.
	host := strings.TrimPrefix(edge, "http://")
	code, rbody := rawRequest(t, edge, "POST http://"+host+"/oauth/v2/token HTTP/1.1\r\nHost: "+host+
		"\r\nAuthorization: "+basic["Authorization"]+"\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: "+
		fmt.Sprint(len(form))+"\r\nConnection: close\r\n\r\n"+form)
	if code != 403 || strings.Contains(rbody, "upstream ok") {
		t.Errorf("absolute-form token request of a deactivated client: %d %s", code, rbody)
	}
	// Were client-sent facts passed on, this request (naming the deactivated org 500 for a token op) would be
	// denied.
	if r := do(t, "GET", edge+"/elsewhere", map[string]string{"X-Deact-Op": "token", "X-Deact-Org-Id": "500", "X-Original-URI": "/oauth/v2/token", "X-Original-Method": "POST"}, ""); r.status != 200 {
		t.Fatalf("client-sent X-Deact-* or X-Original-* headers reached deact: %d %s", r.status, r.body)
	}

	// A token of org 500 at the resource API: 401 with deact's RFC 6750 challenge.
	jwt := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"RS256","typ":"JWT"}`)) + "." +
		base64.RawURLEncoding.EncodeToString([]byte(`{"sub":"u1","urn:zitadel:iam:user:resourceowner:id":"500","exp":4102444800}`)) + ".c2ln"
	r = do(t, "GET", edge+"/v2/users/me", map[string]string{"Authorization": "Bearer " + jwt}, "")
	if r.status != 401 || !strings.Contains(r.header.Get("WWW-Authenticate"), `error="invalid_token"`) || strings.Contains(r.body, "upstream ok") {
		t.Fatalf("API call with a token of a deactivated org: %d %q %s", r.status, r.header.Get("WWW-Authenticate"), r.body)
	}

	// Commvault: backup disabled for the tenant Caddy maps from tenant7.backup.test; the fact is Caddy's, so a
	// client naming another org does not lift the deny.
	cv := map[string]string{"Authtoken": "QSDK " + token, "Content-Type": "application/xml", "Accept": "application/xml"}
	body := `<Api_DeactivateOrganizationRequest> <deactivateOptions disableLogin="0" disableBackup="1" disableRestore="0"/>
</Api_DeactivateOrganizationRequest>`
	if r := do(t, "POST", admin+"/webconsole/api/organization/7/action/deactivate", cv, body); r.status != 200 || !strings.Contains(r.body, `errorCode="0"`) {
		t.Fatalf("Commvault deactivate: %d %s", r.status, r.body)
	}
	tenant := map[string]string{"Host": "tenant7.backup.test", "Authtoken": "QSDK opaque", "Content-Type": "application/json", "X-Deact-Org-Id": "8"}
	for _, path := range []string{"/webconsole/api/Subclient/5/action/backup", "/webconsole/api/subclient/5/ACTION/Backup", "/webconsole/api/CreateTask"} {
		if r := do(t, "POST", edge+path, tenant, "{}"); r.status != 403 || strings.Contains(r.body, "upstream ok") || !strings.Contains(r.body, "errorCode") {
			t.Errorf("POST %s of a backup-disabled org: %d %s", path, r.status, r.body)
		}
	}
	// Other spellings of the tenant's host name still name the tenant.
	for _, host := range []string{"TENANT7.Backup.Test", "tenant7.backup.test.", "tenant7.backup.test:443"} {
		h := map[string]string{"Host": host, "Authtoken": "QSDK opaque"}
		if r := do(t, "POST", edge+"/webconsole/api/Subclient/5/action/backup", h, "{}"); r.status != 403 || strings.Contains(r.body, "upstream ok") {
			t.Errorf("backup of a backup-disabled org through host %q: %d %s", host, r.status, r.body)
		}
	}
	if r := do(t, "POST", edge+"/webconsole/api/Subclient/5/action/restore", tenant, "{}"); r.status != 200 {
		t.Fatalf("restore of a backup-disabled org: %d %s", r.status, r.body)
	}
	other := map[string]string{"Host": "tenant8.backup.test", "Authtoken": "QSDK opaque", "X-Deact-Org-Id": "7"}
	if r := do(t, "POST", edge+"/webconsole/api/Subclient/5/action/backup", other, "{}"); r.status != 200 {
		t.Fatalf("backup of another tenant naming org 7 itself: %d %s", r.status, r.body)
	}

	// Reactivation lets everything through again.
	if r := do(t, "POST", admin+"/management/v1/orgs/me/_reactivate", zitadel, "{}"); r.status != 200 {
		t.Fatalf("ZITADEL reactivate: %d %s", r.status, r.body)
	}
	if r := do(t, "POST", admin+"/webconsole/api/organization/7/action/activate", cv, ""); r.status != 200 {
		t.Fatalf("Commvault activate: %d %s", r.status, r.body)
	}
	if r := do(t, "POST", edge+"/oauth/v2/token", basic, form); r.status != 200 {
		t.Fatalf("token request after reactivation: %d %s", r.status, r.body)
	}
	if r := do(t, "GET", edge+"/v2/users/me", map[string]string{"Authorization": "Bearer " + jwt}, ""); r.status != 200 {
		t.Fatalf("API call after reactivation: %d %s", r.status, r.body)
	}
	if r := do(t, "POST", edge+"/webconsole/api/Subclient/5/action/backup", tenant, "{}"); r.status != 200 {
		t.Fatalf("backup after activation: %d %s", r.status, r.body)
	}
}

// TestCaddyDeactUnavailable: with deactd unreachable Caddy answers an error, never the upstream.
func TestCaddyDeactUnavailable(t *testing.T) {
	caddyBinary(t)
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "upstream ok") }))
	t.Cleanup(upstream.Close)
	edge := startCaddy(t, caddy.Options{Upstream: strings.TrimPrefix(upstream.URL, "http://"), Deact: freePort(t)})
	if r := do(t, "GET", edge+"/v2/users/me", nil, ""); r.status < 500 || strings.Contains(r.body, "upstream ok") {
		t.Fatalf("deact down: %d %s", r.status, r.body)
	}
}

// rawRequest sends one request as written (absolute-form targets, spellings net/http would not send) and
// returns the status code and body.
func rawRequest(t *testing.T, base, raw string) (int, string) {
	t.Helper()
	c, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}
