package admin_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/deact/deact/admin"
	"github.com/deact/deact/internal/wait"
	"github.com/deact/deact/state"
	"github.com/prometheus/client_golang/prometheus"
)

// TestBootstrap: a bootstrap secret becomes an all-orgs admin token only while the store holds none; a restart
// with the same secret finds it; a revoked secret stays revoked, whatever tokens exist, and no path re-creates it.
func TestBootstrap(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	ctx := context.Background()
	bootstrap := func(secret string, want admin.BootstrapResult) {
		t.Helper()
		if got, err := admin.Bootstrap(ctx, e.store, secret); err != nil || got != want {
			t.Fatalf("Bootstrap = %v %v, want %v", got, err, want)
		}
	}
	// newEnv bootstrapped bootstrapToken already: a second call (a restart) finds it.
	bootstrap(bootstrapToken, admin.BootstrapExists)
	tok, err := state.NewToken()
	if err != nil || len(tok) < admin.MinTokenLen {
		t.Fatalf("NewToken = %q %v", tok, err)
	}
	// An admin exists: a new secret (a changed DEACT_ADMIN_TOKEN) gains nothing.
	bootstrap(tok, admin.BootstrapNotNeeded)
	if r := e.do("GET", "/v1/orgs", "", bearer(tok)); r.status != 401 {
		t.Errorf("unneeded bootstrap secret: %d %s", r.status, r.body)
	}
	for _, bad := range []string{"", "short", "has a space in it!!", "tab\tin-the-token-xxxx"} {
		if _, err := admin.Bootstrap(ctx, e.store, bad); err == nil {
			t.Errorf("Bootstrap(%q) accepted", bad)
		}
	}

	// Revoke the bootstrap token through the API, with a second admin; then revoke that one too, so that no
	// admin is left: the revoked secret still stays revoked, and only a fresh secret recovers.
	second := e.token("second-admin-token-0123456789", state.Token{Name: "second", AllOrgs: true, Role: state.RoleAdmin})
	if r := e.do("DELETE", "/v1/tokens/"+state.HashToken(bootstrapToken), "", bearer(second)); r.status != 200 {
		t.Fatalf("revoke bootstrap: %d %s", r.status, r.body)
	}
	bootstrap(bootstrapToken, admin.BootstrapRevoked)
	if r := e.do("DELETE", "/v1/tokens/"+state.HashToken(second), "", bearer(second)); r.status != 200 {
		t.Fatalf("revoke second: %d %s", r.status, r.body)
	}
	bootstrap(bootstrapToken, admin.BootstrapRevoked)
	if r := e.do("GET", "/v1/orgs", "", bearer(bootstrapToken)); r.status != 401 {
		t.Errorf("revoked bootstrap token: %d %s", r.status, r.body)
	}
	for _, secret := range []string{bootstrapToken, second} {
		_, err := e.store.CreateToken(ctx, state.Token{Hash: state.HashToken(secret), AllOrgs: true, Role: state.RoleAdmin}, state.Change{Actor: "test"})
		if !errors.Is(err, state.ErrRevoked) {
			t.Errorf("re-creating a revoked token: %v", err)
		}
	}
	bootstrap(tok, admin.BootstrapCreated)
	v, err := e.store.GetToken(ctx, state.HashToken(tok))
	if err != nil || !v.Record.AllOrgs || v.Record.Role != state.RoleAdmin {
		t.Fatalf("record = %+v %v", v, err)
	}
	// This instance asked about tok above and holds "no such token" for the token-cache TTL (2 s): a token
	// created behind its back (here by Bootstrap on the store) is accepted once that answer expires.
	wait.Eventually(t, "the bootstrapped token accepted", func() bool { return e.do("GET", "/v1/nodes", "", bearer(tok)).status == 200 })
}

func TestNewValidatesConfig(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	for name, cfg := range map[string]admin.Config{
		"no store":         {Fanout: e.fanout},
		"no fanout":        {Store: e.store},
		"negative timeout": {Store: e.store, Fanout: e.fanout, ConfirmTimeout: -time.Second},
		"relative root":    {Store: e.store, Fanout: e.fanout, CommvaultRoots: []string{"webconsole/api"}},
		"root over native": {Store: e.store, Fanout: e.fanout, CommvaultRoots: []string{"/v1"}},
		"root over v2":     {Store: e.store, Fanout: e.fanout, CommvaultRoots: []string{"/v2/organizations"}},
		"root over grpc":   {Store: e.store, Fanout: e.fanout, CommvaultRoots: []string{"/zitadel.org.v2.OrganizationService"}},
	} {
		if _, err := admin.New(cfg); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	reg := prometheus.NewRegistry()
	if _, err := admin.New(admin.Config{Store: e.store, Fanout: e.fanout, Registry: reg, CommvaultRoots: []string{"/SearchSvc/CVWebService.svc/"}}); err != nil {
		t.Fatal(err)
	}
	// The same registry twice is a configuration mistake the daemon must hear about.
	if _, err := admin.New(admin.Config{Store: e.store, Fanout: e.fanout, Registry: reg}); err == nil {
		t.Error("duplicate registration accepted")
	}
}

func TestMetrics(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	e := newEnv(t, envOpts{nodes: 1, config: func(c *admin.Config) { c.Registry = reg }})
	e.do("POST", "/v1/orgs/1/deactivate", "", bearer(bootstrapToken))
	e.do("POST", "/v1/orgs/1/deactivate", "", bearer("wrong-wrong-wrong-wrong"))
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, mf := range mfs {
		names = append(names, mf.GetName())
	}
	got := strings.Join(names, " ")
	for _, want := range []string{"deact_admin_requests_total", "deact_admin_confirm_wait_seconds", "deact_admin_auth_failures_total"} {
		if !strings.Contains(got, want) {
			t.Errorf("metric %s missing from %s", want, got)
		}
	}
}

// TestCustomCommvaultRoot: the roots are configurable, and matched case-insensitively.
func TestCustomCommvaultRoot(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{config: func(c *admin.Config) { c.CommvaultRoots = []string{"/SearchSvc/CVWebService.svc"} }})
	r := e.do("POST", "/searchsvc/cvwebservice.svc/organization/5/action/deactivate", seedRequestBody, "Authtoken: QSDK "+bootstrapToken, "Content-Type: application/xml")
	if r.status != 200 || !strings.Contains(r.body, `providerId="5"`) {
		t.Fatalf("%d %s", r.status, r.body)
	}
	if r := e.do("POST", "/webconsole/api/organization/5/action/activate", "", "Authtoken: QSDK "+bootstrapToken); r.status != 404 {
		t.Errorf("default root still served: %d %s", r.status, r.body)
	}
}
