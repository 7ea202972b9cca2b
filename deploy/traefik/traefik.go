// Package traefik renders a Traefik (v3) dynamic configuration, for its file provider, that protects an
// upstream with ForwardAuth to deact's HTTP check endpoint. deact classifies each request from the
// X-Forwarded-Method and X-Forwarded-Uri Traefik sends, with the same preset routes Envoy and nginx use; the
// routes where deact reads the body get a ForwardAuth with forwardBody, bounded by maxBodySize.
package traefik

import (
	"errors"
	"fmt"
	"net"
	"sort"
	"strings"

	"github.com/deact/deact/authz"
	"github.com/deact/deact/envoy"
	"github.com/deact/deact/state"
	"sigs.k8s.io/yaml"
)

// Options describe the deployment. Zero values take the defaults in brackets.
type Options struct {
	Presets     []string // route presets, as deactd's --presets ["zitadel", "commvault"]
	Upstream    string   // URL or host:port of the protected service (required)
	Deact       string   // deactd's --http-check-addr ["127.0.0.1:9192"]
	EntryPoints []string // Traefik entry points the routers attach to [all]
	// MaxBodySize bounds the body forwarded to deact on body routes; Traefik answers 401 to a larger one. Keep
	// it at deactd's limit (authz.Config.MaxBodyBytes) [65536].
	MaxBodySize int64
	Tenants     []Tenant // host name → org, for routes whose requests do not name their org (Commvault)
}

// Tenant maps a host name to the org ID deact should check for its requests.
type Tenant struct {
	Host  string
	OrgID string
}

// Config is the part of Traefik's dynamic configuration deact uses (field names as in Traefik v3's
// pkg/config/dynamic, whose package cannot be imported here: it needs a module the proxy does not serve).
type Config struct {
	HTTP HTTP `json:"http"`
}

// HTTP is Traefik's http section.
type HTTP struct {
	Routers     map[string]Router     `json:"routers"`
	Middlewares map[string]Middleware `json:"middlewares"`
	Services    map[string]Service    `json:"services"`
}

// Router is a Traefik HTTP router.
type Router struct {
	EntryPoints []string `json:"entryPoints,omitempty"`
	Rule        string   `json:"rule"`
	Priority    int      `json:"priority"`
	Middlewares []string `json:"middlewares"`
	Service     string   `json:"service"`
}

// Middleware is one Traefik middleware: headers or forwardAuth.
type Middleware struct {
	Headers     *Headers     `json:"headers,omitempty"`
	ForwardAuth *ForwardAuth `json:"forwardAuth,omitempty"`
}

// Headers sets request headers; an empty value removes the header.
type Headers struct {
	CustomRequestHeaders map[string]string `json:"customRequestHeaders"`
}

// ForwardAuth asks an authentication server first. trustForwardHeader is always stated: with false Traefik
// drops a client's X-Forwarded-* and sets its own.
type ForwardAuth struct {
	Address            string `json:"address"`
	TrustForwardHeader *bool  `json:"trustForwardHeader"`
	ForwardBody        bool   `json:"forwardBody,omitempty"`
	MaxBodySize        *int64 `json:"maxBodySize,omitempty"`
}

// Service is a Traefik HTTP service.
type Service struct {
	LoadBalancer LoadBalancer `json:"loadBalancer"`
}

// LoadBalancer lists a service's servers.
type LoadBalancer struct {
	Servers        []Server `json:"servers"`
	PassHostHeader bool     `json:"passHostHeader"`
}

// Server is one server of a service.
type Server struct {
	URL string `json:"url"`
}

// Names of what Build creates.
const (
	MiddlewareFacts    = "deact-facts"
	MiddlewareCheck    = "deact-check"
	MiddlewareBody     = "deact-check-body"
	ServiceProtected   = "deact-protected"
	defaultMaxBodySize = 64 << 10
)

// Build returns the dynamic configuration:
//
//   - deact-facts (headers) removes every X-Deact-* fact and X-Original-* header a client sent; a tenant's
//     router then sets X-Deact-Org-Id for its host.
//   - deact-check (forwardAuth, no body) on every request; deact-check-body (forwardBody, maxBodySize) on the
//     preset routes where deact reads the body (OAuth client_id and assertions, login names, Commvault tasks).
//     Routers pick by Traefik's path matching; a path Traefik does not match as a body route still gets
//     deact-check, and deact classifies it from the raw X-Forwarded-Uri with its own table.
func Build(o Options) (*Config, error) {
	if o.Presets == nil {
		o.Presets = envoy.Presets
	}
	if o.Deact == "" {
		o.Deact = "127.0.0.1:9192"
	}
	if o.MaxBodySize == 0 {
		o.MaxBodySize = defaultMaxBodySize
	}
	if o.MaxBodySize < 0 {
		return nil, fmt.Errorf("traefik: maxBodySize %d: deact needs a bound", o.MaxBodySize)
	}
	if _, _, err := net.SplitHostPort(o.Deact); err != nil {
		return nil, fmt.Errorf("traefik: deact address %q: %w", o.Deact, err)
	}
	upstream := o.Upstream
	if !strings.Contains(upstream, "://") {
		if _, _, err := net.SplitHostPort(upstream); err != nil {
			return nil, fmt.Errorf("traefik: upstream %q: want a URL or host:port: %w", upstream, err)
		}
		upstream = "http://" + upstream
	}
	var res []string
	for _, p := range o.Presets {
		rs, err := envoy.PresetRoutes(p)
		if err != nil {
			return nil, err
		}
		for _, r := range rs {
			if !r.Body {
				continue
			}
			re, err := envoy.PatternRegex(r.Pattern, r.CaseInsensitive)
			if err != nil {
				return nil, err
			}
			if r.CaseInsensitive {
				re = "(?i:" + strings.TrimPrefix(re, "(?i)") + ")"
			}
			res = append(res, re)
		}
	}
	strip := map[string]string{authz.HeaderOriginalURI: "", authz.HeaderOriginalMethod: ""}
	for _, h := range []string{authz.HeaderOp, authz.HeaderOrgID, authz.HeaderProjectID, authz.HeaderAppID, authz.HeaderClientID} {
		strip[h] = ""
	}
	f, max := false, o.MaxBodySize
	c := &Config{HTTP: HTTP{
		Routers: map[string]Router{},
		Middlewares: map[string]Middleware{
			MiddlewareFacts: {Headers: &Headers{CustomRequestHeaders: strip}},
			MiddlewareCheck: {ForwardAuth: &ForwardAuth{Address: "http://" + o.Deact + "/check", TrustForwardHeader: &f}},
			MiddlewareBody: {ForwardAuth: &ForwardAuth{Address: "http://" + o.Deact + "/check", TrustForwardHeader: &f,
				ForwardBody: true, MaxBodySize: &max}},
		},
		Services: map[string]Service{ServiceProtected: {LoadBalancer: LoadBalancer{Servers: []Server{{URL: upstream}}, PassHostHeader: true}}},
	}}
	bodyRule := ""
	if len(res) > 0 {
		bodyRule = "PathRegexp(`^(" + strings.Join(res, "|") + ")$`)"
	}
	add := func(name, rule string, prio int, mws ...string) {
		c.HTTP.Routers[name] = Router{EntryPoints: o.EntryPoints, Rule: rule, Priority: prio, Middlewares: mws, Service: ServiceProtected}
	}
	add("deact", "PathPrefix(`/`)", 1, MiddlewareFacts, MiddlewareCheck)
	if bodyRule != "" {
		add("deact-body", bodyRule, 2, MiddlewareFacts, MiddlewareBody)
	}
	seen := map[string]bool{}
	for i, tn := range o.Tenants {
		// Only what deact's IDs allow (every DNS name fits), and nothing a Traefik rule would misread.
		if err := errors.Join(state.ValidateID("tenant host", tn.Host), state.ValidateID("org", tn.OrgID)); err != nil {
			return nil, fmt.Errorf("traefik: tenant %q → %q: %w", tn.Host, tn.OrgID, err)
		}
		if tn.Host == "" || tn.OrgID == "" || strings.ContainsAny(tn.Host+tn.OrgID, " \t\r\n`\"'(){}&|!,") || seen[strings.ToLower(tn.Host)] {
			return nil, fmt.Errorf("traefik: tenant %q → %q: empty, repeated, or characters a Traefik rule would misread", tn.Host, tn.OrgID)
		}
		seen[strings.ToLower(tn.Host)] = true
		mw := fmt.Sprintf("deact-tenant-%d", i)
		c.HTTP.Middlewares[mw] = Middleware{Headers: &Headers{CustomRequestHeaders: map[string]string{authz.HeaderOrgID: tn.OrgID}}}
		host := "Host(`" + tn.Host + "`)"
		add(mw, host, 3, MiddlewareFacts, mw, MiddlewareCheck)
		if bodyRule != "" {
			add(mw+"-body", host+" && "+bodyRule, 4, MiddlewareFacts, mw, MiddlewareBody)
		}
	}
	return c, nil
}

// YAML renders the configuration as YAML for Traefik's file provider, with a header comment.
func YAML(c *Config) ([]byte, error) {
	b, err := yaml.Marshal(c)
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, len(c.HTTP.Routers))
	for n := range c.HTTP.Routers {
		names = append(names, n)
	}
	sort.Strings(names)
	head := "# Traefik dynamic configuration (file provider): deact decides every request through ForwardAuth to /check.\n" +
		"# Generated by deploy/traefik (deactctl traefik-config). Routers: " + strings.Join(names, ", ") + ".\n"
	return append([]byte(head), b...), nil
}
