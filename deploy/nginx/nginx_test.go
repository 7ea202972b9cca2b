package nginx_test

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/deact/deact/deploy/internal/proxytest"
	"github.com/deact/deact/deploy/nginx"
)

const token = "nginx-e2e-token-0123456789"

// nginxBinary finds nginx; outside CI a missing nginx skips, under CI=true it fails.
func nginxBinary(t *testing.T) string {
	t.Helper()
	return proxytest.Binary(t, "nginx", "nginx", "/usr/sbin/nginx")
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
	o.Listen = proxytest.FreePort(t)
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
	proxytest.Run(t, "nginx", cmd, o.Listen, func() string {
		log, _ := os.ReadFile(filepath.Join(prefix, "error.log"))
		return "error.log:\n" + string(log)
	})
	return "http://" + o.Listen
}

// TestNginxEndToEnd: real nginx in front of a small upstream, deciding through deactd's /check, with writes
// through deact's ZITADEL- and Commvault-compatible admin APIs.
func TestNginxEndToEnd(t *testing.T) {
	upstream := proxytest.Upstream(t)

	d := proxytest.StartDeactd(t, token)
	admin := "http://" + d.AdminAddr

	edge := startNginx(t, nginx.Options{
		Upstream: strings.TrimPrefix(upstream.URL, "http://"),
		Deact:    d.HTTPCheckAddr,
		Tenants:  []nginx.Tenant{{Host: "tenant7.backup.test", OrgID: "7"}},
	})

	// An OAuth client of org 500, found by its client ID (HTTP Basic auth: nginx does not forward bodies).
	bearer := map[string]string{"Authorization": "Bearer " + token, "Content-Type": "application/json"}
	if r := proxytest.Do(t, "PUT", admin+"/v1/projects/p1/apps/a1", bearer, `{"orgId":"500","clientIds":["cli-1@proj"]}`); r.Status != 200 {
		t.Fatalf("register app: %d %s", r.Status, r.Body)
	}
	tokenReq := func() proxytest.Reply {
		return proxytest.Do(t, "POST", edge+"/oauth/v2/token", map[string]string{
			"Authorization": "Basic Y2xpLTFAcHJvajpzZWNyZXQ=", // cli-1@proj:secret
			"Content-Type":  "application/x-www-form-urlencoded",
		}, "grant_type=client_credentials&scope=openid")
	}
	if r := tokenReq(); r.Status != 200 || !strings.Contains(r.Body, "upstream ok POST /oauth/v2/token") {
		t.Fatalf("token request of an active org: %d %s", r.Status, r.Body)
	}

	zitadel := map[string]string{"Authorization": "Bearer " + token, "x-zitadel-orgid": "500", "Content-Type": "application/json"}
	if r := proxytest.Do(t, "POST", admin+"/management/v1/orgs/me/_deactivate", zitadel, "{}"); r.Status != 200 || r.Header.Get("X-Deact-Confirmed") != "1/1" {
		t.Fatalf("ZITADEL deactivate: %d %s confirmed=%q", r.Status, r.Body, r.Header.Get("X-Deact-Confirmed"))
	}
	r := tokenReq()
	if r.Status < 400 || r.Status >= 500 || !strings.Contains(r.Body, `"error"`) || strings.Contains(r.Body, "upstream ok") {
		t.Fatalf("token request of a deactivated org: %d %s", r.Status, r.Body)
	}
	if r.Header.Get("X-Deact-Reason") == "" {
		t.Errorf("deny without a reason header: %v", r.Header)
	}

	// X-Deact-* headers are nginx's to set: a client's own never reach deact. Were they passed on, this request
	// (naming the deactivated org 500 for a token op) would be denied.
	if r := proxytest.Do(t, "GET", edge+"/elsewhere", map[string]string{"X-Deact-Op": "token", "X-Deact-Org-Id": "500"}, ""); r.Status != 200 {
		t.Fatalf("client-sent X-Deact-* headers reached deact: %d %s", r.Status, r.Body)
	}
	// An absolute-form request target names the same path.
	host := strings.TrimPrefix(edge, "http://")
	form := "grant_type=client_credentials"
	raw := proxytest.SendRaw(t, edge, "POST http://"+host+"/oauth/v2/token HTTP/1.1\r\nHost: "+host+
		"\r\nAuthorization: Basic Y2xpLTFAcHJvajpzZWNyZXQ=\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: "+
		fmt.Sprint(len(form))+"\r\nConnection: close\r\n\r\n"+form)
	if raw.Status != 403 || strings.Contains(raw.Body, "upstream ok") {
		t.Errorf("absolute-form token request of a deactivated client: %d %s", raw.Status, raw.Body)
	}
	// Nor can a client's X-Forwarded-* (the forward-auth family, which deact reads only without X-Original-URI)
	// describe another request: nginx always sets X-Original-URI and -Method.
	spoofed := proxytest.Do(t, "POST", edge+"/oauth/v2/token", map[string]string{
		"Authorization": "Basic Y2xpLTFAcHJvajpzZWNyZXQ=", "Content-Type": "application/x-www-form-urlencoded",
		"X-Forwarded-Uri": "/elsewhere", "X-Forwarded-Method": "GET", "X-Forwarded-Host": "other.test",
	}, "grant_type=client_credentials")
	if spoofed.Status != 403 || strings.Contains(spoofed.Body, "upstream ok") {
		t.Fatalf("token request with client-sent X-Forwarded-*: %d %s", spoofed.Status, spoofed.Body)
	}

	// An access token issued to org 500 before its deactivation is refused at the resource API (op api), as a
	// revoked token: 401 with an RFC 6750 challenge. deact reads the JWT's payload; the upstream verifies it.
	jwt := proxytest.OrgJWT("500")
	r = proxytest.Do(t, "GET", edge+"/v2/users/me", map[string]string{"Authorization": "Bearer " + jwt}, "")
	if r.Status != 401 || !strings.Contains(r.Header.Get("WWW-Authenticate"), `error="invalid_token"`) || strings.Contains(r.Body, "upstream ok") {
		t.Fatalf("API call with a token of a deactivated org: %d %q %s", r.Status, r.Header.Get("WWW-Authenticate"), r.Body)
	}
	if strings.Contains(r.Body, jwt) {
		t.Fatal("the deny echoes the token")
	}

	// Commvault: disable backup only, for the tenant served as tenant7.backup.test.
	cv := map[string]string{"Authtoken": "QSDK " + token, "Content-Type": "application/xml", "Accept": "application/xml"}
	body := `<Api_DeactivateOrganizationRequest> <deactivateOptions disableLogin="0" disableBackup="1" disableRestore="0"/>
</Api_DeactivateOrganizationRequest>`
	if r := proxytest.Do(t, "POST", admin+"/webconsole/api/organization/7/action/deactivate", cv, body); r.Status != 200 || !strings.Contains(r.Body, `errorCode="0"`) {
		t.Fatalf("Commvault deactivate: %d %s", r.Status, r.Body)
	}
	tenant := map[string]string{"Host": "tenant7.backup.test", "Authtoken": "QSDK opaque", "Content-Type": "application/json"}
	if r := proxytest.Do(t, "POST", edge+"/webconsole/api/Subclient/5/action/backup", tenant, "{}"); r.Status != 403 || strings.Contains(r.Body, "upstream ok") || !strings.Contains(r.Body, "errorCode") {
		t.Fatalf("backup of a backup-disabled org: %d %s", r.Status, r.Body)
	}
	// Other spellings of the tenant's host name still name the tenant ($host is lower case, without the dot).
	for _, host := range []string{"TENANT7.Backup.Test", "tenant7.backup.test.", "tenant7.backup.test:443"} {
		h := map[string]string{"Host": host, "Authtoken": "QSDK opaque"}
		if r := proxytest.Do(t, "POST", edge+"/webconsole/api/Subclient/5/action/backup", h, "{}"); r.Status != 403 || strings.Contains(r.Body, "upstream ok") {
			t.Errorf("backup of a backup-disabled org through host %q: %d %s", host, r.Status, r.Body)
		}
	}
	if r := proxytest.Do(t, "POST", edge+"/webconsole/api/Login", tenant, `{"username":"alice","password":"x"}`); r.Status != 200 || !strings.Contains(r.Body, "upstream ok") {
		t.Fatalf("login of a backup-disabled org: %d %s", r.Status, r.Body)
	}
	if r := proxytest.Do(t, "POST", edge+"/webconsole/api/Subclient/5/action/restore", tenant, "{}"); r.Status != 200 {
		t.Fatalf("restore of a backup-disabled org: %d %s", r.Status, r.Body)
	}

	// Reactivation lets both through again.
	if r := proxytest.Do(t, "POST", admin+"/management/v1/orgs/me/_reactivate", zitadel, "{}"); r.Status != 200 {
		t.Fatalf("ZITADEL reactivate: %d %s", r.Status, r.Body)
	}
	if r := proxytest.Do(t, "POST", admin+"/webconsole/api/organization/7/action/activate", cv, ""); r.Status != 200 {
		t.Fatalf("Commvault activate: %d %s", r.Status, r.Body)
	}
	if r := tokenReq(); r.Status != 200 {
		t.Fatalf("token request after reactivation: %d %s", r.Status, r.Body)
	}
	if r := proxytest.Do(t, "GET", edge+"/v2/users/me", map[string]string{"Authorization": "Bearer " + jwt}, ""); r.Status != 200 {
		t.Fatalf("API call after reactivation: %d %s", r.Status, r.Body)
	}
	if r := proxytest.Do(t, "POST", edge+"/webconsole/api/Subclient/5/action/backup", tenant, "{}"); r.Status != 200 {
		t.Fatalf("backup after activation: %d %s", r.Status, r.Body)
	}
}

func TestRenderRejectsBadInput(t *testing.T) {
	var b bytes.Buffer
	if err := nginx.Render(&b, nginx.Options{Upstream: "nohostport"}); err == nil {
		t.Error("bad upstream accepted")
	}
	for _, tn := range []nginx.Tenant{
		{Host: "x; evil", OrgID: "1"}, {Host: "#x", OrgID: "7"}, {Host: "x", OrgID: "$host"}, {Host: "x\r", OrgID: "7"},
		{Host: "", OrgID: "7"}, {Host: "x", OrgID: ""}, {Host: "x", OrgID: "7#"},
	} {
		if err := nginx.Render(&b, nginx.Options{Upstream: "a:1", Tenants: []nginx.Tenant{tn}}); err == nil {
			t.Errorf("tenant %q → %q accepted", tn.Host, tn.OrgID)
		}
	}
}

// rawRequest sends one HTTP/1.1 request exactly as written (a backslash in the path, repeated headers), which
// net/http would normalize, and returns the status and body.
func rawRequest(t *testing.T, base, method, target string, headers [][2]string, body string) proxytest.Reply {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: tenant7.backup.test\r\nConnection: close\r\nContent-Length: %d\r\n", method, target, len(body))
	for _, h := range headers {
		fmt.Fprintf(&b, "%s: %s\r\n", h[0], h[1])
	}
	b.WriteString("\r\n" + body)
	return proxytest.SendRaw(t, base, b.String())
}

// TestNginxOtherSpellings (issue 14 items 2 and 3) through real nginx: Commvault routes spelled with
// ";jsessionid=…" path parameters, ";x" inside a segment, '\' and "%5C" separators are denied for a tenant
// whose restores (and logins) are disabled while its backups pass, and a JWT of a deactivated org next to a
// second Authorization header never reaches the upstream, whichever comes first.
func TestNginxOtherSpellings(t *testing.T) {
	upstream := proxytest.Upstream(t)
	d := proxytest.StartDeactd(t, token)
	admin := "http://" + d.AdminAddr
	edge := startNginx(t, nginx.Options{
		Upstream: strings.TrimPrefix(upstream.URL, "http://"),
		Deact:    d.HTTPCheckAddr,
		Tenants:  []nginx.Tenant{{Host: "tenant7.backup.test", OrgID: "7"}},
	})
	cv := map[string]string{"Authtoken": "QSDK " + token, "Content-Type": "application/xml"}
	body := `<Api_DeactivateOrganizationRequest><deactivateOptions disableLogin="1" disableBackup="0" disableRestore="1"/></Api_DeactivateOrganizationRequest>`
	if r := proxytest.Do(t, "POST", admin+"/webconsole/api/organization/7/action/deactivate", cv, body); r.Status != 200 {
		t.Fatalf("Commvault deactivate: %d %s", r.Status, r.Body)
	}
	zitadel := map[string]string{"Authorization": "Bearer " + token, "x-zitadel-orgid": "500", "Content-Type": "application/json"}
	if r := proxytest.Do(t, "POST", admin+"/management/v1/orgs/me/_deactivate", zitadel, "{}"); r.Status != 200 {
		t.Fatalf("ZITADEL deactivate: %d %s", r.Status, r.Body)
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
		if r.Status != 403 || strings.Contains(r.Body, "upstream ok") || !strings.Contains(r.Body, "errorCode") {
			t.Errorf("%s of a restore- and login-disabled tenant: %d %s", target, r.Status, r.Body)
		}
	}
	// Backups stay allowed, whatever the spelling.
	for _, target := range []string{"/webconsole/api/Subclient/5/action/backup;jsessionid=1", `/webconsole\api\Subclient\5\action\backup`} {
		if r := rawRequest(t, edge, "POST", target, accept, "{}"); r.Status != 200 || !strings.Contains(r.Body, "upstream ok") {
			t.Errorf("%s of a backup-enabled tenant: %d %s", target, r.Status, r.Body)
		}
	}

	jwt := proxytest.OrgJWT("500")
	for name, auth := range map[string][]string{
		"the JWT first":  {"Bearer " + jwt, "Bearer a.b.c"},
		"the JWT second": {"Bearer opaque", "Bearer " + jwt},
	} {
		r := rawRequest(t, edge, "GET", "/v2/users/me", [][2]string{{"Authorization", auth[0]}, {"Authorization", auth[1]}}, "")
		// nginx itself refuses a repeated Authorization (400, "client sent duplicate header line"); deact's
		// /check would answer 401 (authz TestTrustRepeatedHeaders). Either way it never reaches the upstream.
		if r.Status < 400 || strings.Contains(r.Body, "upstream ok") {
			t.Errorf("two Authorization headers, %s: %d %s", name, r.Status, r.Body)
		}
	}
}
