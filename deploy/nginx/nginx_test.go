package nginx_test

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
	"github.com/deact/deact/deploy/nginx"
)

const token = "nginx-e2e-token-0123456789"

// nginxBinary finds nginx; outside CI a missing nginx skips, under CI=true it fails.
func nginxBinary(t *testing.T) string {
	t.Helper()
	for _, p := range []string{"nginx", "/usr/sbin/nginx"} {
		if path, err := exec.LookPath(p); err == nil {
			return path
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("nginx is not installed, and CI=true requires this test to run (.ci/run installs it: apt-get install -y nginx)")
	}
	t.Skip("nginx not installed: skipping the nginx end-to-end test (apt-get install -y nginx to run it)")
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

// startNginx renders the configuration into a temporary prefix and runs nginx in the foreground until cleanup.
func startNginx(t *testing.T, o nginx.Options) string {
	t.Helper()
	bin := nginxBinary(t)
	prefix := t.TempDir()
	for _, d := range []string{"tmp/body", "tmp/proxy", "tmp/fastcgi", "tmp/uwsgi", "tmp/scgi"} {
		if err := os.MkdirAll(filepath.Join(prefix, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	o.Prefix = prefix
	o.Listen = freePort(t)
	if os.Geteuid() == 0 {
		o.User = "root" // workers must reach the temp prefix, which belongs to root
	}
	var conf bytes.Buffer
	if err := nginx.Render(&conf, o); err != nil {
		t.Fatal(err)
	}
	confPath := filepath.Join(prefix, "nginx.conf")
	if err := os.WriteFile(confPath, conf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(bin, "-t", "-p", prefix, "-c", confPath).CombinedOutput(); err != nil {
		t.Fatalf("nginx -t: %v\n%s\n%s", err, out, conf.String())
	}
	cmd := exec.Command(bin, "-p", prefix, "-c", confPath, "-g", "daemon off;")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		_ = cmd.Wait()
		if t.Failed() {
			log, _ := os.ReadFile(filepath.Join(prefix, "error.log"))
			t.Logf("nginx stderr:\n%s\nerror.log:\n%s", stderr.String(), log)
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		if c, err := net.Dial("tcp", o.Listen); err == nil {
			c.Close()
			return "http://" + o.Listen
		}
		if time.Now().After(deadline) {
			t.Fatalf("nginx does not listen on %s: %s", o.Listen, stderr.String())
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

// startDeactd starts a deactd (embedded etcd, all listeners on free ports) and waits until it is ready: synced
// and registered, so that from then on the admin API waits for it before it answers a write.
func startDeactd(t *testing.T) (*daemon.Daemon, string) {
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
	admin := "http://" + d.AdminAddr
	// Ready means synced and registered: from then on the admin waits for this node before it answers.
	for deadline := time.Now().Add(10 * time.Second); ; {
		if r, err := http.Get(admin + "/readyz"); err == nil {
			r.Body.Close()
			if r.StatusCode == 200 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("deactd not ready")
		}
		time.Sleep(10 * time.Millisecond)
	}

	return d, admin
}

// TestNginxEndToEnd: real nginx in front of a small upstream, deciding through deactd's /check, with writes
// through deact's ZITADEL- and Commvault-compatible admin APIs.
func TestNginxEndToEnd(t *testing.T) {
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "upstream ok %s %s", r.Method, r.URL.Path)
	}))
	t.Cleanup(upstream.Close)

	d, admin := startDeactd(t)

	edge := startNginx(t, nginx.Options{
		Upstream: strings.TrimPrefix(upstream.URL, "http://"),
		Deact:    d.HTTPCheckAddr,
		Tenants:  []nginx.Tenant{{Host: "tenant7.backup.test", OrgID: "7"}},
	})

	// An OAuth client of org 500, found by its client ID (HTTP Basic auth: nginx does not forward bodies).
	bearer := map[string]string{"Authorization": "Bearer " + token, "Content-Type": "application/json"}
	if r := do(t, "PUT", admin+"/v1/projects/p1/apps/a1", bearer, `{"orgId":"500","clientIds":["cli-1@proj"]}`); r.status != 200 {
		t.Fatalf("register app: %d %s", r.status, r.body)
	}
	tokenReq := func() reply {
		return do(t, "POST", edge+"/oauth/v2/token", map[string]string{
			"Authorization": "Basic Y2xpLTFAcHJvajpzZWNyZXQ=", // cli-1@proj:secret
			"Content-Type":  "application/x-www-form-urlencoded",
		}, "grant_type=client_credentials&scope=openid")
	}
	if r := tokenReq(); r.status != 200 || !strings.Contains(r.body, "upstream ok POST /oauth/v2/token") {
		t.Fatalf("token request of an active org: %d %s", r.status, r.body)
	}

	zitadel := map[string]string{"Authorization": "Bearer " + token, "x-zitadel-orgid": "500", "Content-Type": "application/json"}
	if r := do(t, "POST", admin+"/management/v1/orgs/me/_deactivate", zitadel, "{}"); r.status != 200 || r.header.Get("X-Deact-Confirmed") != "1/1" {
		t.Fatalf("ZITADEL deactivate: %d %s confirmed=%q", r.status, r.body, r.header.Get("X-Deact-Confirmed"))
	}
	r := tokenReq()
	if r.status < 400 || r.status >= 500 || !strings.Contains(r.body, `"error"`) || strings.Contains(r.body, "upstream ok") {
		t.Fatalf("token request of a deactivated org: %d %s", r.status, r.body)
	}
	if r.header.Get("X-Deact-Reason") == "" {
		t.Errorf("deny without a reason header: %v", r.header)
	}

	// X-Deact-* headers are nginx's to set: a client's own never reach deact. Were they passed on, this request
	// (naming the deactivated org 500 for a token op) would be denied.
	if r := do(t, "GET", edge+"/elsewhere", map[string]string{"X-Deact-Op": "token", "X-Deact-Org-Id": "500"}, ""); r.status != 200 {
		t.Fatalf("client-sent X-Deact-* headers reached deact: %d %s", r.status, r.body)
	}

	// An access token issued to org 500 before its deactivation is refused at the resource API (op api), as a
	// revoked token: 401 with an RFC 6750 challenge. deact reads the JWT's payload; the upstream verifies it.
	jwt := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"RS256","typ":"JWT"}`)) + "." +
		base64.RawURLEncoding.EncodeToString([]byte(`{"sub":"u1","urn:zitadel:iam:user:resourceowner:id":"500","exp":4102444800}`)) + ".c2ln"
	r = do(t, "GET", edge+"/v2/users/me", map[string]string{"Authorization": "Bearer " + jwt}, "")
	if r.status != 401 || !strings.Contains(r.header.Get("WWW-Authenticate"), `error="invalid_token"`) || strings.Contains(r.body, "upstream ok") {
		t.Fatalf("API call with a token of a deactivated org: %d %q %s", r.status, r.header.Get("WWW-Authenticate"), r.body)
	}
	if strings.Contains(r.body, jwt) {
		t.Fatal("the deny echoes the token")
	}

	// Commvault: disable backup only, for the tenant served as tenant7.backup.test.
	cv := map[string]string{"Authtoken": "QSDK " + token, "Content-Type": "application/xml", "Accept": "application/xml"}
	body := `<Api_DeactivateOrganizationRequest> <deactivateOptions disableLogin="0" disableBackup="1" disableRestore="0"/>
</Api_DeactivateOrganizationRequest>`
	if r := do(t, "POST", admin+"/webconsole/api/organization/7/action/deactivate", cv, body); r.status != 200 || !strings.Contains(r.body, `errorCode="0"`) {
		t.Fatalf("Commvault deactivate: %d %s", r.status, r.body)
	}
	tenant := map[string]string{"Host": "tenant7.backup.test", "Authtoken": "QSDK opaque", "Content-Type": "application/json"}
	if r := do(t, "POST", edge+"/webconsole/api/Subclient/5/action/backup", tenant, "{}"); r.status != 403 || strings.Contains(r.body, "upstream ok") || !strings.Contains(r.body, "errorCode") {
		t.Fatalf("backup of a backup-disabled org: %d %s", r.status, r.body)
	}
	if r := do(t, "POST", edge+"/webconsole/api/Login", tenant, `{"username":"alice","password":"x"}`); r.status != 200 || !strings.Contains(r.body, "upstream ok") {
		t.Fatalf("login of a backup-disabled org: %d %s", r.status, r.body)
	}
	if r := do(t, "POST", edge+"/webconsole/api/Subclient/5/action/restore", tenant, "{}"); r.status != 200 {
		t.Fatalf("restore of a backup-disabled org: %d %s", r.status, r.body)
	}

	// Reactivation lets both through again.
	if r := do(t, "POST", admin+"/management/v1/orgs/me/_reactivate", zitadel, "{}"); r.status != 200 {
		t.Fatalf("ZITADEL reactivate: %d %s", r.status, r.body)
	}
	if r := do(t, "POST", admin+"/webconsole/api/organization/7/action/activate", cv, ""); r.status != 200 {
		t.Fatalf("Commvault activate: %d %s", r.status, r.body)
	}
	if r := tokenReq(); r.status != 200 {
		t.Fatalf("token request after reactivation: %d %s", r.status, r.body)
	}
	if r := do(t, "GET", edge+"/v2/users/me", map[string]string{"Authorization": "Bearer " + jwt}, ""); r.status != 200 {
		t.Fatalf("API call after reactivation: %d %s", r.status, r.body)
	}
	if r := do(t, "POST", edge+"/webconsole/api/Subclient/5/action/backup", tenant, "{}"); r.status != 200 {
		t.Fatalf("backup after activation: %d %s", r.status, r.body)
	}
}

func TestRenderRejectsBadInput(t *testing.T) {
	var b bytes.Buffer
	if err := nginx.Render(&b, nginx.Options{Upstream: "nohostport"}); err == nil {
		t.Error("bad upstream accepted")
	}
	if err := nginx.Render(&b, nginx.Options{Upstream: "a:1", Tenants: []nginx.Tenant{{Host: "x; evil", OrgID: "1"}}}); err == nil {
		t.Error("tenant with ';' accepted")
	}
}

// rawRequest sends one HTTP/1.1 request exactly as written (a backslash in the path, repeated headers), which
// net/http would normalize, and returns the status and body.
func rawRequest(t *testing.T, base, method, target string, headers [][2]string, body string) reply {
	t.Helper()
	c, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: tenant7.backup.test\r\nConnection: close\r\nContent-Length: %d\r\n", method, target, len(body))
	for _, h := range headers {
		fmt.Fprintf(&b, "%s: %s\r\n", h[0], h[1])
	}
	b.WriteString("\r\n" + body)
	if _, err := io.WriteString(c, b.String()); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	rb, _ := io.ReadAll(resp.Body)
	return reply{resp.StatusCode, string(rb), resp.Header}
}

// TestNginxOtherSpellings (issue 14 items 2 and 3) through real nginx: Commvault routes spelled with
// ";jsessionid=…" path parameters, ";x" inside a segment, '\' and "%5C" separators are denied for a tenant
// whose restores (and logins) are disabled while its backups pass, and a JWT of a deactivated org next to a
// second Authorization header never reaches the upstream, whichever comes first.
func TestNginxOtherSpellings(t *testing.T) {
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "upstream ok %s %s", r.Method, r.URL.Path)
	}))
	t.Cleanup(upstream.Close)
	d, admin := startDeactd(t)
	edge := startNginx(t, nginx.Options{
		Upstream: strings.TrimPrefix(upstream.URL, "http://"),
		Deact:    d.HTTPCheckAddr,
		Tenants:  []nginx.Tenant{{Host: "tenant7.backup.test", OrgID: "7"}},
	})
	cv := map[string]string{"Authtoken": "QSDK " + token, "Content-Type": "application/xml"}
	body := `<Api_DeactivateOrganizationRequest><deactivateOptions disableLogin="1" disableBackup="0" disableRestore="1"/></Api_DeactivateOrganizationRequest>`
	if r := do(t, "POST", admin+"/webconsole/api/organization/7/action/deactivate", cv, body); r.status != 200 {
		t.Fatalf("Commvault deactivate: %d %s", r.status, r.body)
	}
	zitadel := map[string]string{"Authorization": "Bearer " + token, "x-zitadel-orgid": "500", "Content-Type": "application/json"}
	if r := do(t, "POST", admin+"/management/v1/orgs/me/_deactivate", zitadel, "{}"); r.status != 200 {
		t.Fatalf("ZITADEL deactivate: %d %s", r.status, r.body)
	}

	accept := [][2]string{{"Accept", "application/json"}}
	for _, target := range []string{
		"/webconsole/api/retrieveToClient;jsessionid=0123ABCD",
		"/webconsole/api/retrieveToClient;x",
		"/webconsole;x/api/retrieveToClient",
		`/webconsole\api\retrieveToClient`,
		"/webconsole/api%5CretrieveToClient",
		"/webconsole/api/Subclient/5/action/restore;jsessionid=1",
		`/webconsole/api/Subclient/5/action\restore`,
		"/webconsole/api/Subclient/5/action%5Crestore",
		"/webconsole/api/..;/api/retrieveToClient",
		"/webconsole/api/Login;jsessionid=1",
		`/webconsole\api\Login`,
	} {
		r := rawRequest(t, edge, "POST", target, accept, "{}")
		if r.status != 403 || strings.Contains(r.body, "upstream ok") || !strings.Contains(r.body, "errorCode") {
			t.Errorf("%s of a restore- and login-disabled tenant: %d %s", target, r.status, r.body)
		}
	}
	// Backups stay allowed, whatever the spelling.
	for _, target := range []string{"/webconsole/api/Subclient/5/action/backup;jsessionid=1", `/webconsole\api\Subclient\5\action\backup`} {
		if r := rawRequest(t, edge, "POST", target, accept, "{}"); r.status != 200 || !strings.Contains(r.body, "upstream ok") {
			t.Errorf("%s of a backup-enabled tenant: %d %s", target, r.status, r.body)
		}
	}

	jwt := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"RS256","typ":"JWT"}`)) + "." +
		base64.RawURLEncoding.EncodeToString([]byte(`{"sub":"u1","urn:zitadel:iam:user:resourceowner:id":"500","exp":4102444800}`)) + ".c2ln"
	for name, auth := range map[string][]string{
		"the JWT first":  {"Bearer " + jwt, "Bearer a.b.c"},
		"the JWT second": {"Bearer opaque", "Bearer " + jwt},
	} {
		r := rawRequest(t, edge, "GET", "/v2/users/me", [][2]string{{"Authorization", auth[0]}, {"Authorization", auth[1]}}, "")
		// nginx itself refuses a repeated Authorization (400, "client sent duplicate header line"); deact's
		// /check would answer 401 (authz TestTrustRepeatedHeaders). Either way it never reaches the upstream.
		if r.status < 400 || strings.Contains(r.body, "upstream ok") {
			t.Errorf("two Authorization headers, %s: %d %s", name, r.status, r.body)
		}
	}
}
