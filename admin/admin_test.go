package admin_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/deact/deact/admin"
	"github.com/deact/deact/state"
	"github.com/prometheus/client_golang/prometheus"
)

func TestBootstrap(t *testing.T) {
	e := newEnv(t, envOpts{})
	ctx := context.Background()
	// newEnv bootstrapped bootstrapToken already: a second call (a restart) finds it.
	if created, err := admin.Bootstrap(ctx, e.store, bootstrapToken); err != nil || created {
		t.Fatalf("again: %v %v", created, err)
	}
	tok, err := admin.NewToken()
	if err != nil || len(tok) < admin.MinTokenLen {
		t.Fatalf("NewToken = %q %v", tok, err)
	}
	if created, err := admin.Bootstrap(ctx, e.store, tok); err != nil || !created {
		t.Fatalf("new: %v %v", created, err)
	}
	v, err := e.store.GetToken(ctx, state.HashToken(tok))
	if err != nil || !v.Record.AllOrgs || v.Record.Role != state.RoleAdmin {
		t.Fatalf("record = %+v %v", v, err)
	}
	for _, bad := range []string{"", "short", "has a space in it!!", "tab\tin-the-token-xxxx"} {
		if _, err := admin.Bootstrap(ctx, e.store, bad); err == nil {
			t.Errorf("Bootstrap(%q) accepted", bad)
		}
	}
	if r := e.do("GET", "/v1/nodes", "", bearer(tok)); r.status != 200 {
		t.Errorf("bootstrapped token: %d %s", r.status, r.body)
	}
}

func TestNewValidatesConfig(t *testing.T) {
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
	e := newEnv(t, envOpts{config: func(c *admin.Config) { c.CommvaultRoots = []string{"/SearchSvc/CVWebService.svc"} }})
	r := e.do("POST", "/searchsvc/cvwebservice.svc/organization/5/action/deactivate", seedRequestBody, "Authtoken: QSDK "+bootstrapToken, "Content-Type: application/xml")
	if r.status != 200 || !strings.Contains(r.body, `providerId="5"`) {
		t.Fatalf("%d %s", r.status, r.body)
	}
	if r := e.do("POST", "/webconsole/api/organization/5/action/activate", "", "Authtoken: QSDK "+bootstrapToken); r.status != 404 {
		t.Errorf("default root still served: %d %s", r.status, r.body)
	}
}
