// Package caddy renders a Caddyfile that protects an upstream with forward_auth to deact's HTTP check
// endpoint. deact classifies each request from the X-Forwarded-Method and X-Forwarded-Uri Caddy sends, with the
// same preset routes the Envoy and nginx configurations use.
package caddy

import (
	_ "embed"
	"errors"
	"fmt"
	"io"
	"net"
	"regexp"
	"strings"
	"text/template"

	"github.com/deact/deact/envoy"
	"github.com/deact/deact/state"
)

//go:embed Caddyfile.tmpl
var confTemplate string

var tmpl = template.Must(template.New("Caddyfile").Parse(confTemplate))

// Options describe the deployment. Zero values take the defaults in brackets.
type Options struct {
	Presets  []string // route presets, as deactd's --presets ["zitadel", "commvault"]
	Upstream string   // host:port of the protected service (required)
	Deact    string   // deactd's --http-check-addr ["127.0.0.1:9192"]
	// Site is the site address: a host name for automatic HTTPS ("auth.example.com"), or "http://:8000".
	// ["http://:8000"]
	Site    string
	Bind    string   // the bind directive's address, e.g. "127.0.0.1" [all interfaces]
	Admin   string   // the admin endpoint, or "off" [Caddy's default, localhost:2019]
	Tenants []Tenant // host name → org, for routes whose requests do not name their org (Commvault)
}

// Tenant maps a host name (without port) to the org ID deact should check for its requests.
type Tenant struct {
	Host  string
	OrgID string
}

// Render writes the Caddyfile.
func Render(w io.Writer, o Options) error {
	if o.Presets == nil {
		o.Presets = envoy.Presets
	}
	if o.Deact == "" {
		o.Deact = "127.0.0.1:9192"
	}
	if o.Site == "" {
		o.Site = "http://:8000"
	}
	for _, hp := range []string{o.Upstream, o.Deact} {
		if _, _, err := net.SplitHostPort(hp); err != nil {
			return fmt.Errorf("caddy: address %q: %w", hp, err)
		}
	}
	for _, v := range []string{o.Site, o.Bind, o.Admin} {
		if bad(v) {
			return fmt.Errorf("caddy: %q has characters a Caddyfile would misread", v)
		}
	}
	for _, t := range o.Tenants {
		// Only what deact's IDs allow (every DNS name fits), and nothing a Caddyfile would misread.
		if err := errors.Join(state.ValidateID("tenant host", t.Host), state.ValidateID("org", t.OrgID)); err != nil {
			return fmt.Errorf("caddy: tenant %q → %q: %w", t.Host, t.OrgID, err)
		}
		if t.Host == "" || t.OrgID == "" || bad(t.Host) || bad(t.OrgID) {
			return fmt.Errorf("caddy: tenant %q → %q: empty, or characters a Caddyfile would misread", t.Host, t.OrgID)
		}
	}
	var body []string
	for _, p := range o.Presets {
		rs, err := envoy.PresetRoutes(p)
		if err != nil {
			return err
		}
		for _, r := range rs {
			if !r.Body {
				continue
			}
			line := fmt.Sprintf("%s (%s %s)", r.Name, methods(r.Methods), r.Pattern)
			if r.Op == "" {
				line += ": without the body deact takes it as every op it may be (fail closed)"
			}
			body = append(body, line)
		}
	}
	type tenant struct{ HostRegex, OrgID string }
	tenants := make([]tenant, len(o.Tenants))
	for i, t := range o.Tenants {
		tenants[i] = tenant{"(?i)^" + regexp.QuoteMeta(strings.TrimSuffix(t.Host, ".")) + `\.?$`, t.OrgID}
	}
	return tmpl.Execute(w, struct {
		Options
		Tenants    []tenant
		PresetList string
		BodyRoutes []string
	}{o, tenants, strings.Join(o.Presets, ", "), body})
}

// bad reports characters that would end a Caddyfile token or start a block, comment or placeholder.
func bad(s string) bool { return strings.ContainsAny(s, " \t\r\n{}\"'`#\\") }

func methods(m []string) string {
	if len(m) == 0 {
		return "any method"
	}
	return strings.Join(m, ",")
}
