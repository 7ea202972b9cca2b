package main

import (
	"fmt"
	"strings"

	"github.com/deact/deact/deploy/caddy"
	"github.com/deact/deact/deploy/mesh"
	"github.com/deact/deact/deploy/traefik"
)

// tenantPairs parses --tenants host=org,...
func (c *cli) tenantPairs() ([][2]string, error) {
	var out [][2]string
	for _, pair := range splitList(c.tenants) {
		host, org, ok := strings.Cut(pair, "=")
		if !ok {
			return nil, usageError(fmt.Sprintf("--tenants %q: want host=org", pair))
		}
		out = append(out, [2]string{host, org})
	}
	return out, nil
}

// caddyConfig prints a Caddyfile using forward_auth; it needs no server.
func (c *cli) caddyConfig() error {
	if c.upstream == "" {
		return usageError("caddy-config needs --upstream host:port")
	}
	tenants, err := c.tenantPairs()
	if err != nil {
		return err
	}
	o := caddy.Options{Presets: splitList(c.presets), Upstream: c.upstream, Deact: c.deact, Site: c.listen}
	for _, t := range tenants {
		o.Tenants = append(o.Tenants, caddy.Tenant{Host: t[0], OrgID: t[1]})
	}
	return caddy.Render(c.out, o)
}

// traefikConfig prints a Traefik dynamic configuration using ForwardAuth; it needs no server.
func (c *cli) traefikConfig() error {
	if c.upstream == "" {
		return usageError("traefik-config needs --upstream URL or host:port")
	}
	tenants, err := c.tenantPairs()
	if err != nil {
		return err
	}
	o := traefik.Options{Presets: splitList(c.presets), Upstream: c.upstream, Deact: c.deact,
		EntryPoints: splitList(c.listen), MaxBodySize: c.maxBody}
	for _, t := range tenants {
		o.Tenants = append(o.Tenants, traefik.Tenant{Host: t[0], OrgID: t[1]})
	}
	cfg, err := traefik.Build(o)
	if err != nil {
		return err
	}
	y, err := traefik.YAML(cfg)
	if err != nil {
		return err
	}
	_, err = c.out.Write(y)
	return err
}

// meshConfig prints the Istio or Envoy Gateway manifests; it needs no server.
func (c *cli) meshConfig(istio bool) error {
	o := mesh.Options{Presets: splitList(c.presets), Namespace: c.namespace, Scope: c.scope,
		Gateway: c.gateway, GatewayNamespace: c.gatewayNamespace, IstioNamespace: c.gatewayNamespace, MaxBodyBytes: int(c.maxBody)}
	tenants, err := c.tenantPairs()
	if err != nil {
		return err
	}
	var y []byte
	if istio {
		if len(tenants) > 0 {
			return usageError("istio-config takes no --tenants (state a tenant's org in a custom rule)")
		}
		y, err = mesh.Istio(o)
	} else {
		if c.scope != "" {
			return usageError("--scope is for istio-config")
		}
		for _, t := range tenants {
			o.RouteTenants = append(o.RouteTenants, mesh.RouteTenant{Route: t[0], OrgID: t[1]})
		}
		y, err = mesh.EnvoyGateway(o)
	}
	if err != nil {
		return err
	}
	_, err = c.out.Write(y)
	return err
}
