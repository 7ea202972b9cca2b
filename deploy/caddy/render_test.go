package caddy_test

import (
	"bytes"
	"testing"

	"github.com/deact/deact/deploy/caddy"
)

func TestRenderRejectsBadInput(t *testing.T) {
	cases := []struct {
		name string
		o    caddy.Options
	}{
		{"upstream without port", caddy.Options{Upstream: "nohostport"}},
		{"deact without port", caddy.Options{Upstream: "a:1", Deact: "deact"}},
		{"tenant host with a space", caddy.Options{Upstream: "a:1", Tenants: []caddy.Tenant{{Host: "x evil", OrgID: "1"}}}},
		{"tenant org with a brace", caddy.Options{Upstream: "a:1", Tenants: []caddy.Tenant{{Host: "x", OrgID: "1}"}}}},
		{"tenant org with a placeholder", caddy.Options{Upstream: "a:1", Tenants: []caddy.Tenant{{Host: "x", OrgID: "{http.request.header.X}"}}}},
		{"empty tenant org", caddy.Options{Upstream: "a:1", Tenants: []caddy.Tenant{{Host: "x"}}}},
		{"tenant host with a comment", caddy.Options{Upstream: "a:1", Tenants: []caddy.Tenant{{Host: "#x", OrgID: "7"}}}},
		{"tenant org outside deact's IDs", caddy.Options{Upstream: "a:1", Tenants: []caddy.Tenant{{Host: "x", OrgID: "7$"}}}},
		{"site with a newline", caddy.Options{Upstream: "a:1", Site: "a\n}"}},
		{"unknown preset", caddy.Options{Upstream: "a:1", Presets: []string{"keycloak"}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var b bytes.Buffer
			if err := caddy.Render(&b, tc.o); err == nil {
				t.Fatalf("accepted:\n%s", b.String())
			}
		})
	}
}
