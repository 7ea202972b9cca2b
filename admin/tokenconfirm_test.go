package admin_test

import (
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/deact/deact/admin"
	"github.com/deact/deact/admin/adminapi"
	"github.com/prometheus/client_golang/prometheus"
)

// TestTokenWritesNeedNoGatewayConfirmation (issue 14, B12): gateways hold no tokens (their replicas watch only
// the state prefix), so /v1/tokens create and delete are answered at once, marked X-Deact-Confirmed:
// not-needed, instead of waiting the whole confirm timeout for gateways that will never report them and saying
// 0/N. A revocation takes effect at once on the admin node that made it and within the token cache TTL on
// another admin node that had the token cached.
func TestTokenWritesNeedNoGatewayConfirmation(t *testing.T) {
	t.Parallel()
	const timeout = 5 * time.Second
	e := newEnv(t, envOpts{nodes: 2, config: func(c *admin.Config) { c.ConfirmTimeout = timeout }})
	adm := bearer(bootstrapToken)
	// A second admin node on the same etcd, with the default token cache.
	other, err := admin.New(admin.Config{Store: e.store, Fanout: e.fanout, Logger: slog.New(slog.DiscardHandler), Registry: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	otherSrv := httptest.NewServer(other.Handler())
	t.Cleanup(otherSrv.Close)
	otherGet := func(tok string) int {
		req, _ := http.NewRequest("GET", otherSrv.URL+"/v1/orgs", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}

	start := time.Now()
	r := e.do("POST", "/v1/tokens", `{"name":"short","allOrgs":true,"role":"admin"}`, adm)
	if r.status != http.StatusCreated || r.header.Get(adminapi.HeaderConfirmed) != adminapi.ConfirmNotNeeded {
		t.Fatalf("create token: %d %s %q", r.status, r.header.Get(adminapi.HeaderConfirmed), r.body)
	}
	var created adminapi.TokenCreated
	r.json(t, &created)
	if !created.Confirmation.NotNeeded || created.Confirmation.Total != 0 || created.Revision == 0 {
		t.Fatalf("create token confirmation %+v", created.WriteResult)
	}
	if otherGet(created.Token) != http.StatusOK { // now cached there
		t.Fatal("the new token does not work on the other admin node")
	}

	r = e.do("DELETE", "/v1/tokens/"+created.Record.Hash, "", adm)
	revoked := time.Now()
	if r.status != http.StatusOK || r.header.Get(adminapi.HeaderConfirmed) != adminapi.ConfirmNotNeeded {
		t.Fatalf("delete token: %d %s %q", r.status, r.header.Get(adminapi.HeaderConfirmed), r.body)
	}
	if waited := time.Since(start); waited > timeout/2 {
		t.Fatalf("two token writes took %v: they waited for gateways", waited)
	}
	if got := e.do("GET", "/v1/orgs", "", bearer(created.Token)).status; got != http.StatusUnauthorized {
		t.Fatalf("revoked token on the admin node that revoked it: %d, want 401", got)
	}
	for otherGet(created.Token) != http.StatusUnauthorized {
		if time.Since(revoked) > 3*time.Second {
			t.Fatal("revoked token still works on another admin node after the 2 s token cache")
		}
		time.Sleep(50 * time.Millisecond)
	}

	// A state write is still waited for and confirmed by both gateways.
	r = e.do("POST", "/v1/orgs/10/deactivate", `{"ops":"all"}`, adm)
	if r.status != http.StatusOK || r.header.Get(adminapi.HeaderConfirmed) != "2/2" {
		t.Fatalf("deactivate: %d %s", r.status, r.header.Get(adminapi.HeaderConfirmed))
	}
}
