// Package nginx renders an nginx configuration that protects an upstream with auth_request to deact's HTTP
// check endpoint, one location per preset route (the same routes the Envoy configuration uses).
package nginx

import (
	_ "embed"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"text/template"

	"github.com/deact/deact/envoy"
	"github.com/deact/deact/state"
)

//go:embed nginx.conf.tmpl
var confTemplate string

var tmpl = template.Must(template.New("nginx.conf").Parse(confTemplate))

// Options describe the deployment. Zero values take the defaults in brackets.
type Options struct {
	Presets  []string // route presets ["zitadel", "commvault"]
	Upstream string   // host:port of the protected service (required)
	Deact    string   // deactd's --http-check-addr ["127.0.0.1:9192"]
	Listen   string   // nginx's listen directive ["8000"]
	Prefix   string   // directory for pid, logs and temp files ["/var/lib/deact-nginx"]
	User     string   // worker user when nginx starts as root [nginx's default]
	Tenants  []Tenant // host name → org, for routes whose requests do not name their org (Commvault)
}

// Tenant maps a host name to the org ID deact should check for its requests.
type Tenant struct {
	Host  string
	OrgID string
}

type route struct {
	Name, Regex, Op string
	CaseInsensitive bool
}

// Render writes the configuration.
func Render(w io.Writer, o Options) error {
	if o.Presets == nil {
		o.Presets = envoy.Presets
	}
	if o.Deact == "" {
		o.Deact = "127.0.0.1:9192"
	}
	if o.Listen == "" {
		o.Listen = "8000"
	}
	if o.Prefix == "" {
		o.Prefix = "/var/lib/deact-nginx"
	}
	for _, hp := range []string{o.Upstream, o.Deact} {
		if _, _, err := net.SplitHostPort(hp); err != nil {
			return fmt.Errorf("nginx: address %q: %w", hp, err)
		}
	}
	for _, t := range o.Tenants {
		// Only what deact's IDs allow (every DNS name fits): '#' would start an nginx comment and drop the
		// tenant from the map, '$' would be read as a variable.
		if err := errors.Join(state.ValidateID("tenant host", t.Host), state.ValidateID("org", t.OrgID)); err != nil {
			return fmt.Errorf("nginx: tenant %q → %q: %w", t.Host, t.OrgID, err)
		}
		if strings.ContainsAny(t.Host+t.OrgID, " \t\n;{}\"'") {
			return fmt.Errorf("nginx: tenant %q → %q has characters nginx would misread", t.Host, t.OrgID)
		}
	}
	var routes []route
	for _, p := range o.Presets {
		rs, err := envoy.PresetRoutes(p)
		if err != nil {
			return err
		}
		for _, r := range rs {
			// PCRE and RE2 agree on the constructs PatternRegex emits; case folding is nginx's "~*". A
			// case-insensitive (servlet/IIS) route's regex also takes ";params" and '\' separators, which nginx
			// neither strips nor turns into '/' ($uri decodes "%5C" to '\'). The regex goes into the
			// configuration double-quoted, where nginx reads "\\" as one backslash.
			re, err := envoy.PatternRegex(r.Pattern, r.CaseInsensitive)
			if err != nil {
				return err
			}
			re = strings.ReplaceAll(strings.TrimPrefix(re, "(?i)"), `\`, `\\`)
			routes = append(routes, route{Name: r.Name, Regex: re, Op: r.Op, CaseInsensitive: r.CaseInsensitive})
		}
	}
	return tmpl.Execute(w, struct {
		Options
		Routes []route
	}{o, routes})
}
