package main

import (
	"context"
	"strings"
	"testing"
)

// TestProxyConfigCommands: caddy-config, traefik-config, istio-config and envoy-gateway-config print
// configurations without a server, and refuse bad arguments with a usage error.
func TestProxyConfigCommands(t *testing.T) {
	env := func(string) string { return "" }
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"caddy-config", "--upstream", "zitadel:8080", "--tenants", "t1.example=7"}, 0, `~(?i)^t1\.example\.?$ 7`},
		{[]string{"caddy-config", "--upstream", "zitadel:8080", "--listen", "auth.example.com"}, 0, "auth.example.com {"},
		{[]string{"caddy-config"}, 2, ""},
		{[]string{"caddy-config", "--upstream", "zitadel:8080", "--tenants", "broken"}, 2, ""},
		{[]string{"caddy-config", "--upstream", "zitadel:8080", "--tenants", "a=b c"}, 1, ""},
		{[]string{"traefik-config", "--upstream", "http://zitadel:8080", "--listen", "websecure"}, 0, "forwardBody: true"},
		{[]string{"traefik-config", "--upstream", "zitadel:8080", "--max-body", "-1"}, 1, ""},
		{[]string{"traefik-config"}, 2, ""},
		{[]string{"istio-config"}, 0, "action: CUSTOM"},
		{[]string{"istio-config", "--scope", "preset-paths", "--presets", "zitadel"}, 0, "/oauth/v2/token"},
		{[]string{"istio-config", "--scope", "preset-paths"}, 1, ""}, // Commvault's paths are case-insensitive
		{[]string{"istio-config", "--namespace", "Bad_NS"}, 1, ""},
		{[]string{"envoy-gateway-config", "--gateway", "public", "--gateway-namespace", "edge"}, 0, "name: public"},
		{[]string{"envoy-gateway-config", "--scope", "all"}, 2, ""},
		{[]string{"envoy-gateway-config", "--tenants", "tenant7=7"}, 0, "name: deact-tenant7"},
		{[]string{"envoy-gateway-config", "--tenants", "tenant7=7/.."}, 1, ""},
		{[]string{"istio-config", "--tenants", "a=1"}, 2, ""},
	} {
		var out, errOut strings.Builder
		code := run(context.Background(), tc.args, strings.NewReader(""), &out, &errOut, env)
		if code != tc.code || !strings.Contains(out.String(), tc.want) {
			t.Errorf("%v: exit %d (want %d), output lacks %q\n%s", tc.args, code, tc.code, tc.want, errOut.String())
		}
	}
}
