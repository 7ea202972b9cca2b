package caddy_test

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/deact/deact/deploy/caddy"
	"github.com/deact/deact/deploy/internal/proxytest"
)

const token = "caddy-e2e-token-0123456789"

// caddyBinary finds caddy; outside CI a missing caddy skips, under CI=true it fails. CI uses Debian's package
// (caddy 2.6.2, which has forward_auth): nothing to build, and the binary operators install.
func caddyBinary(t *testing.T) string {
	t.Helper()
	return proxytest.Binary(t, "Caddy", "caddy")
}

// startCaddy renders the Caddyfile, validates it with caddy itself and runs caddy until cleanup, its home,
// config and data directories in a temporary directory.
func startCaddy(t *testing.T, o caddy.Options) string {
	t.Helper()
	bin := caddyBinary(t)
	dir := t.TempDir()
	listen := proxytest.FreePort(t)
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
	proxytest.Run(t, "caddy", cmd, listen, nil)
	return "http://" + listen
}

// TestCaddyEndToEnd: real Caddy (forward_auth) in front of a small upstream, deciding through a real deactd's
// /check, with writes through deact's ZITADEL- and Commvault-compatible admin APIs.
func TestCaddyEndToEnd(t *testing.T) {
	caddyBinary(t)
	upstream := proxytest.Upstream(t)
	d := proxytest.StartDeactd(t, token)
	admin := "http://" + d.AdminAddr
	edge := startCaddy(t, caddy.Options{
		Upstream: strings.TrimPrefix(upstream.URL, "http://"),
		Deact:    d.HTTPCheckAddr,
		Tenants:  []caddy.Tenant{{Host: "tenant7.backup.test", OrgID: "7"}},
	})

	bearer := map[string]string{"Authorization": "Bearer " + token, "Content-Type": "application/json"}
	if r := proxytest.Do(t, "PUT", admin+"/v1/projects/p1/apps/a1", bearer, `{"orgId":"500","clientIds":["cli-1@proj"]}`); r.Status != 200 {
		t.Fatalf("register app: %d %s", r.Status, r.Body)
	}
	basic := map[string]string{
		"Authorization": "Basic Y2xpLTFAcHJvajpzZWNyZXQ=", // cli-1@proj:secret
		"Content-Type":  "application/x-www-form-urlencoded",
	}
	form := "grant_type=client_credentials&scope=openid"
	if r := proxytest.Do(t, "POST", edge+"/oauth/v2/token", basic, form); r.Status != 200 || r.Body != `upstream ok POST /oauth/v2/token body="`+form+`"` {
		t.Fatalf("token request of an active org (the upstream must get the body): %d %s", r.Status, r.Body)
	}

	zitadel := map[string]string{"Authorization": "Bearer " + token, "x-zitadel-orgid": "500", "Content-Type": "application/json"}
	if r := proxytest.Do(t, "POST", admin+"/management/v1/orgs/me/_deactivate", zitadel, "{}"); r.Status != 200 || r.Header.Get("X-Deact-Confirmed") != "1/1" {
		t.Fatalf("ZITADEL deactivate: %d %s confirmed=%q", r.Status, r.Body, r.Header.Get("X-Deact-Confirmed"))
	}

	// deact's deny reaches the client as deact gave it: status, OAuth error body, reason header.
	r := proxytest.Do(t, "POST", edge+"/oauth/v2/token", basic, form)
	if r.Status != 403 || !strings.Contains(r.Body, `"error"`) || strings.Contains(r.Body, "upstream ok") || r.Header.Get("X-Deact-Reason") != "org_deactivated" {
		t.Fatalf("token request of a deactivated org: %d %v %s", r.Status, r.Header, r.Body)
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
			if r := proxytest.Do(t, "POST", edge+path, h, form); r.Status != 403 || strings.Contains(r.Body, "upstream ok") {
				t.Errorf("POST %s (%s) of a deactivated client: %d %s", path, name, r.Status, r.Body)
			}
		}
	}
	// An absolute-form request target names the same path.
	host := strings.TrimPrefix(edge, "http://")
	raw := proxytest.SendRaw(t, edge, "POST http://"+host+"/oauth/v2/token HTTP/1.1\r\nHost: "+host+
		"\r\nAuthorization: "+basic["Authorization"]+"\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: "+
		fmt.Sprint(len(form))+"\r\nConnection: close\r\n\r\n"+form)
	if raw.Status != 403 || strings.Contains(raw.Body, "upstream ok") {
		t.Errorf("absolute-form token request of a deactivated client: %d %s", raw.Status, raw.Body)
	}
	// Were client-sent facts passed on, this request (naming the deactivated org 500 for a token op) would be
	// denied.
	if r := proxytest.Do(t, "GET", edge+"/elsewhere", map[string]string{"X-Deact-Op": "token", "X-Deact-Org-Id": "500", "X-Original-URI": "/oauth/v2/token", "X-Original-Method": "POST"}, ""); r.Status != 200 {
		t.Fatalf("client-sent X-Deact-* or X-Original-* headers reached deact: %d %s", r.Status, r.Body)
	}

	// A token of org 500 at the resource API: 401 with deact's RFC 6750 challenge.
	jwt := proxytest.OrgJWT("500")
	r = proxytest.Do(t, "GET", edge+"/v2/users/me", map[string]string{"Authorization": "Bearer " + jwt}, "")
	if r.Status != 401 || !strings.Contains(r.Header.Get("WWW-Authenticate"), `error="invalid_token"`) || strings.Contains(r.Body, "upstream ok") {
		t.Fatalf("API call with a token of a deactivated org: %d %q %s", r.Status, r.Header.Get("WWW-Authenticate"), r.Body)
	}

	// Commvault: backup disabled for the tenant Caddy maps from tenant7.backup.test; the fact is Caddy's, so a
	// client naming another org does not lift the deny.
	cv := map[string]string{"Authtoken": "QSDK " + token, "Content-Type": "application/xml", "Accept": "application/xml"}
	body := `<Api_DeactivateOrganizationRequest> <deactivateOptions disableLogin="0" disableBackup="1" disableRestore="0"/>
</Api_DeactivateOrganizationRequest>`
	if r := proxytest.Do(t, "POST", admin+"/webconsole/api/organization/7/action/deactivate", cv, body); r.Status != 200 || !strings.Contains(r.Body, `errorCode="0"`) {
		t.Fatalf("Commvault deactivate: %d %s", r.Status, r.Body)
	}
	tenant := map[string]string{"Host": "tenant7.backup.test", "Authtoken": "QSDK opaque", "Content-Type": "application/json", "X-Deact-Org-Id": "8"}
	for _, path := range []string{"/webconsole/api/Subclient/5/action/backup", "/webconsole/api/subclient/5/ACTION/Backup", "/webconsole/api/CreateTask"} {
		if r := proxytest.Do(t, "POST", edge+path, tenant, "{}"); r.Status != 403 || strings.Contains(r.Body, "upstream ok") || !strings.Contains(r.Body, "errorCode") {
			t.Errorf("POST %s of a backup-disabled org: %d %s", path, r.Status, r.Body)
		}
	}
	// Other spellings of the tenant's host name still name the tenant.
	for _, host := range []string{"TENANT7.Backup.Test", "tenant7.backup.test.", "tenant7.backup.test:443"} {
		h := map[string]string{"Host": host, "Authtoken": "QSDK opaque"}
		if r := proxytest.Do(t, "POST", edge+"/webconsole/api/Subclient/5/action/backup", h, "{}"); r.Status != 403 || strings.Contains(r.Body, "upstream ok") {
			t.Errorf("backup of a backup-disabled org through host %q: %d %s", host, r.Status, r.Body)
		}
	}
	if r := proxytest.Do(t, "POST", edge+"/webconsole/api/Subclient/5/action/restore", tenant, "{}"); r.Status != 200 {
		t.Fatalf("restore of a backup-disabled org: %d %s", r.Status, r.Body)
	}
	other := map[string]string{"Host": "tenant8.backup.test", "Authtoken": "QSDK opaque", "X-Deact-Org-Id": "7"}
	if r := proxytest.Do(t, "POST", edge+"/webconsole/api/Subclient/5/action/backup", other, "{}"); r.Status != 200 {
		t.Fatalf("backup of another tenant naming org 7 itself: %d %s", r.Status, r.Body)
	}

	// Reactivation lets everything through again.
	if r := proxytest.Do(t, "POST", admin+"/management/v1/orgs/me/_reactivate", zitadel, "{}"); r.Status != 200 {
		t.Fatalf("ZITADEL reactivate: %d %s", r.Status, r.Body)
	}
	if r := proxytest.Do(t, "POST", admin+"/webconsole/api/organization/7/action/activate", cv, ""); r.Status != 200 {
		t.Fatalf("Commvault activate: %d %s", r.Status, r.Body)
	}
	if r := proxytest.Do(t, "POST", edge+"/oauth/v2/token", basic, form); r.Status != 200 {
		t.Fatalf("token request after reactivation: %d %s", r.Status, r.Body)
	}
	if r := proxytest.Do(t, "GET", edge+"/v2/users/me", map[string]string{"Authorization": "Bearer " + jwt}, ""); r.Status != 200 {
		t.Fatalf("API call after reactivation: %d %s", r.Status, r.Body)
	}
	if r := proxytest.Do(t, "POST", edge+"/webconsole/api/Subclient/5/action/backup", tenant, "{}"); r.Status != 200 {
		t.Fatalf("backup after activation: %d %s", r.Status, r.Body)
	}
}

// TestCaddyDeactUnavailable: with deactd unreachable Caddy answers an error, never the upstream.
func TestCaddyDeactUnavailable(t *testing.T) {
	caddyBinary(t)
	upstream := proxytest.Upstream(t)
	edge := startCaddy(t, caddy.Options{Upstream: strings.TrimPrefix(upstream.URL, "http://"), Deact: proxytest.FreePort(t)})
	if r := proxytest.Do(t, "GET", edge+"/v2/users/me", nil, ""); r.Status < 500 || strings.Contains(r.Body, "upstream ok") {
		t.Fatalf("deact down: %d %s", r.Status, r.Body)
	}
}
