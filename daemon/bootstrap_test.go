package daemon_test

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/deact/deact/daemon"
	"github.com/deact/deact/internal/wait"
	"github.com/deact/deact/state"
)

// request sends an authenticated admin request and returns the status and body.
func request(t *testing.T, method, url, secret, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+secret)
	req.Header.Set("Content-Type", "application/json")
	a := wait.Response(t, http.DefaultClient, req)
	return a.Status, a.Body
}

// TestRevokedBootstrapTokenStaysRevoked: the bootstrap token, given by flag or generated into the data dir,
// is revoked through the admin API; deactd restarts on the same data with the same flag or file, and the token
// is still refused, while the token created before the revocation keeps working.
func TestRevokedBootstrapTokenStaysRevoked(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name string
		flag bool
	}{{"from --admin-token", true}, {"generated into the data dir", false}} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			cfg := func(cfg *daemon.Config) {
				cfg.DataDir, cfg.Role = dir, daemon.AdminNode
				if !c.flag {
					cfg.AdminToken = ""
				}
			}
			d := start(t, cfg)
			secret := token
			if !c.flag {
				b, err := os.ReadFile(filepath.Join(dir, "admin-token"))
				if err != nil {
					t.Fatal(err)
				}
				secret = strings.TrimSpace(string(b))
				if !strings.Contains(d.banner, "shown once") || !strings.Contains(d.banner, secret) {
					t.Fatalf("banner does not show the new token once:\n%s", d.banner)
				}
			}
			base := "http://" + d.AdminAddr
			code, body := request(t, "POST", base+"/v1/tokens", secret, `{"name":"ops","allOrgs":true,"role":"admin"}`)
			if code != http.StatusCreated {
				t.Fatalf("create token: %d %s", code, body)
			}
			var created struct{ Token string }
			if err := json.Unmarshal([]byte(body), &created); err != nil {
				t.Fatal(err)
			}
			if code, body := request(t, "DELETE", base+"/v1/tokens/"+state.HashToken(secret), created.Token, ""); code != 200 {
				t.Fatalf("revoke: %d %s", code, body)
			}
			if err := d.stop(); err != nil {
				t.Fatal(err)
			}

			d = start(t, cfg)
			if !strings.Contains(d.banner, "was revoked and stays revoked") || strings.Contains(d.banner, secret) {
				t.Errorf("banner after restart:\n%s", d.banner)
			}
			base = "http://" + d.AdminAddr
			if code, body := request(t, "GET", base+"/v1/orgs", secret, ""); code != http.StatusUnauthorized {
				t.Errorf("revoked bootstrap token after restart: %d %s", code, body)
			}
			if code, body := request(t, "GET", base+"/v1/orgs", created.Token, ""); code != 200 {
				t.Errorf("the other admin token after restart: %d %s", code, body)
			}
		})
	}
}
