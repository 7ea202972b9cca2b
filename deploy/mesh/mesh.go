// Package mesh renders Kubernetes manifests that put deact behind the ext_authz integrations operators
// already run: Istio (meshConfig.extensionProviders envoyExtAuthzGrpc and an AuthorizationPolicy with action
// CUSTOM) and Envoy Gateway (a SecurityPolicy with extAuth.grpc). Both call the deact gateway on the node
// the proxy runs on (the DaemonSet of deploy/kubernetes/deact.yaml, through a Service with
// internalTrafficPolicy Local), fail closed, and send the body deact reads; paths come from the preset route
// table the Envoy bootstrap uses.
package mesh

import (
	"bytes"
	"fmt"
	"strings"

	"sigs.k8s.io/yaml"

	"github.com/deact/deact/envoy"
	"github.com/deact/deact/state"
)

// Options describe the cluster. Zero values take the defaults in brackets.
type Options struct {
	Presets   []string // route presets, as deactd's --presets ["zitadel", "commvault"]
	Namespace string   // deact's namespace ["deact"]
	Service   string   // the gateway Service this package also renders ["deact-gateway"]
	// AuthzPort is deactd's --authz-addr port in the DaemonSet [9191].
	AuthzPort int
	// MaxBodyBytes is how much body the proxy sends deact; keep it at deactd's limit [65536].
	MaxBodyBytes int
	// Istio: the namespace and workload labels of the ingress gateway ["istio-system", istio=ingressgateway];
	// Scope "all" (every request goes to deact, which classifies it) or "preset-paths" (only the presets'
	// paths, as Istio matches them) ["all"].
	IstioNamespace string
	IstioSelector  map[string]string
	Scope          string
	// Envoy Gateway: the Gateway the SecurityPolicy attaches to, and its namespace ["eg", "default"].
	Gateway          string
	GatewayNamespace string
	// RouteTenants names, for Envoy Gateway, the org of HTTPRoutes (in GatewayNamespace) whose requests do not
	// name it (Commvault tenants): each gets its own SecurityPolicy with the context extension org_id, which
	// takes precedence over the Gateway's.
	RouteTenants []RouteTenant
}

// RouteTenant maps an HTTPRoute to the org ID deact should check for its requests.
type RouteTenant struct {
	Route string
	OrgID string
}

// Scopes of the Istio AuthorizationPolicy.
const (
	ScopeAll         = "all"
	ScopePresetPaths = "preset-paths"
)

// ProviderName is the extension provider (Istio) deact is registered as.
const ProviderName = "deact"

func (o *Options) defaults() error {
	if o.Presets == nil {
		o.Presets = envoy.Presets
	}
	if o.Namespace == "" {
		o.Namespace = "deact"
	}
	if o.Service == "" {
		o.Service = "deact-gateway"
	}
	if o.AuthzPort == 0 {
		o.AuthzPort = 9191
	}
	if o.MaxBodyBytes == 0 {
		o.MaxBodyBytes = 64 << 10
	}
	if o.IstioNamespace == "" {
		o.IstioNamespace = "istio-system"
	}
	if o.IstioSelector == nil {
		o.IstioSelector = map[string]string{"istio": "ingressgateway"}
	}
	if o.Scope == "" {
		o.Scope = ScopeAll
	}
	if o.Gateway == "" {
		o.Gateway = "eg"
	}
	if o.GatewayNamespace == "" {
		o.GatewayNamespace = "default"
	}
	if o.Scope != ScopeAll && o.Scope != ScopePresetPaths {
		return fmt.Errorf("mesh: scope %q (want %s or %s)", o.Scope, ScopeAll, ScopePresetPaths)
	}
	if o.AuthzPort < 1 || o.AuthzPort > 65535 || o.MaxBodyBytes < 1 {
		return fmt.Errorf("mesh: port %d or body bound %d out of range", o.AuthzPort, o.MaxBodyBytes)
	}
	for _, n := range []string{o.Namespace, o.Service, o.IstioNamespace, o.Gateway, o.GatewayNamespace} {
		if !dnsLabel(n) {
			return fmt.Errorf("mesh: %q is not a Kubernetes name (RFC 1123 label)", n)
		}
	}
	return nil
}

func dnsLabel(s string) bool {
	if s == "" || len(s) > 63 || s[0] == '-' || s[len(s)-1] == '-' {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// gatewayService is the Service in front of the gateway DaemonSet: internalTrafficPolicy Local keeps each
// proxy's checks on its own node, as the Envoy bootstrap's loopback address does outside Kubernetes.
func gatewayService(o *Options) map[string]any {
	return map[string]any{
		"apiVersion": "v1", "kind": "Service",
		"metadata": map[string]any{"name": o.Service, "namespace": o.Namespace,
			"labels": map[string]any{"app.kubernetes.io/name": "deact", "app.kubernetes.io/component": "gateway"}},
		"spec": map[string]any{
			"selector":              map[string]any{"app.kubernetes.io/name": "deact", "app.kubernetes.io/component": "gateway"},
			"internalTrafficPolicy": "Local",
			"ports": []any{map[string]any{"name": "authz", "port": o.AuthzPort, "targetPort": "authz",
				"protocol": "TCP", "appProtocol": "grpc"}},
		},
	}
}

// istioMeshConfig is the meshConfig fragment that registers deact as an extension provider: the gRPC
// ext_authz service, fail closed, a 250 ms timeout (as the Envoy bootstrap), the body up to MaxBodyBytes
// (a larger one is refused, never sent partially).
func istioMeshConfig(o *Options) map[string]any {
	return map[string]any{"extensionProviders": []any{map[string]any{
		"name": ProviderName,
		"envoyExtAuthzGrpc": map[string]any{
			"service":  fmt.Sprintf("%s.%s.svc.cluster.local", o.Service, o.Namespace),
			"port":     o.AuthzPort,
			"timeout":  "0.250s",
			"failOpen": false,
			"includeRequestBodyInCheck": map[string]any{
				"maxRequestBytes": o.MaxBodyBytes, "allowPartialMessage": false, "packAsBytes": true,
			},
		},
	}}}
}

// Istio renders the gateway Service, an IstioOperator carrying the meshConfig fragment (merge it into your
// installation's meshConfig: istioctl, Helm values or the istio ConfigMap), and the AuthorizationPolicy.
func Istio(o Options) ([]byte, error) {
	if err := o.defaults(); err != nil {
		return nil, err
	}
	rules := []any{map[string]any{}} // one empty rule matches every request
	if o.Scope == ScopePresetPaths {
		paths, err := IstioPaths(o.Presets)
		if err != nil {
			return nil, err
		}
		rules = []any{map[string]any{"to": []any{map[string]any{"operation": map[string]any{"paths": paths}}}}}
	}
	policy := map[string]any{
		"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
		"metadata": map[string]any{"name": "deact", "namespace": o.IstioNamespace},
		"spec": map[string]any{
			"selector": map[string]any{"matchLabels": o.IstioSelector},
			"action":   "CUSTOM",
			"provider": map[string]any{"name": ProviderName},
			"rules":    rules,
		},
	}
	operator := map[string]any{
		"apiVersion": "install.istio.io/v1alpha1", "kind": "IstioOperator",
		"metadata": map[string]any{"name": "deact-extension-provider", "namespace": o.IstioNamespace},
		"spec":     map[string]any{"meshConfig": istioMeshConfig(&o)},
	}
	head := "# deact behind Istio's ingress gateway: CUSTOM authorization through the ext_authz provider \"deact\".\n" +
		"# Generated by deact's deploy/mesh (deactctl istio-config --scope " + o.Scope + ").\n"
	if o.Scope == ScopeAll {
		head += "# Every request is checked: deact classifies it with its own route table (presets " + strings.Join(o.Presets, ", ") + "),\n" +
			"# so no spelling of a path Istio's matcher would miss can skip the check.\n"
	} else {
		head += "# Only the presets' paths are checked, as Istio matches them (case-sensitive, after its path normalization):\n" +
			"# set meshConfig.pathNormalization DECODE_AND_MERGE_SLASHES so an encoded path cannot avoid the check.\n"
	}
	return docs(head, gatewayService(&o), operator, policy)
}

// IstioPaths turns the presets' routes into Istio operation paths (exact, "prefix*" or "*suffix"), each
// matching at least what the route matches. Case-insensitive routes (Commvault) cannot be expressed: Istio's
// paths are case-sensitive, so they are refused; use ScopeAll.
func IstioPaths(presets []string) ([]string, error) {
	var out []string
	seen := map[string]bool{}
	for _, p := range presets {
		rs, err := envoy.PresetRoutes(p)
		if err != nil {
			return nil, err
		}
		for _, r := range rs {
			if r.CaseInsensitive {
				return nil, fmt.Errorf("mesh: route %s is case-insensitive, Istio paths are not: use scope %s", r.Name, ScopeAll)
			}
			ip := istioPath(r.Pattern)
			if !seen[ip] {
				seen[ip] = true
				out = append(out, ip)
			}
		}
	}
	return out, nil
}

func istioPath(pattern string) string {
	i := strings.IndexAny(pattern, "*{")
	switch {
	case i < 0:
		return pattern
	case i <= 1:
		j := strings.LastIndexAny(pattern, "*}")
		return "*" + pattern[j+1:]
	default:
		return strings.TrimSuffix(pattern[:i], "/") + "*"
	}
}

// EnvoyGateway renders the gateway Service, a SecurityPolicy attaching deact's gRPC ext_authz to a Gateway
// (fail closed, 250 ms, the body up to MaxBodyBytes), and the ReferenceGrant that lets it reach the Service in
// deact's namespace. Every route of the Gateway is checked; deact classifies the requests itself.
func EnvoyGateway(o Options) ([]byte, error) {
	if err := o.defaults(); err != nil {
		return nil, err
	}
	extAuth := func(facts map[string]string) map[string]any {
		e := map[string]any{
			"failOpen":      false,
			"timeout":       "250ms",
			"bodyToExtAuth": map[string]any{"maxRequestBytes": o.MaxBodyBytes},
			"grpc": map[string]any{"backendRefs": []any{map[string]any{
				"name": o.Service, "namespace": o.Namespace, "port": o.AuthzPort,
			}}},
		}
		if len(facts) > 0 {
			var ce []any
			for k, v := range facts {
				ce = append(ce, map[string]any{"name": k, "type": "Value", "value": v})
			}
			e["contextExtensions"] = ce
		}
		return e
	}
	policy := map[string]any{
		"apiVersion": "gateway.envoyproxy.io/v1alpha1", "kind": "SecurityPolicy",
		"metadata": map[string]any{"name": "deact", "namespace": o.GatewayNamespace},
		"spec": map[string]any{
			"targetRefs": []any{map[string]any{"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": o.Gateway}},
			"extAuth":    extAuth(nil),
		},
	}
	objs := []map[string]any{gatewayService(&o), policy}
	seen := map[string]bool{}
	for _, rt := range o.RouteTenants {
		if !dnsLabel(rt.Route) || seen[rt.Route] || state.ValidateID("org", rt.OrgID) != nil {
			return nil, fmt.Errorf("mesh: route tenant %q → %q: want an HTTPRoute name (once) and an org ID", rt.Route, rt.OrgID)
		}
		seen[rt.Route] = true
		objs = append(objs, map[string]any{
			"apiVersion": "gateway.envoyproxy.io/v1alpha1", "kind": "SecurityPolicy",
			"metadata": map[string]any{"name": "deact-" + rt.Route, "namespace": o.GatewayNamespace},
			"spec": map[string]any{
				"targetRefs": []any{map[string]any{"group": "gateway.networking.k8s.io", "kind": "HTTPRoute", "name": rt.Route}},
				"extAuth":    extAuth(map[string]string{"org_id": rt.OrgID}),
			},
		})
	}
	grant := map[string]any{
		"apiVersion": "gateway.networking.k8s.io/v1beta1", "kind": "ReferenceGrant",
		"metadata": map[string]any{"name": "deact-ext-auth-from-" + o.GatewayNamespace, "namespace": o.Namespace},
		"spec": map[string]any{
			"from": []any{map[string]any{"group": "gateway.envoyproxy.io", "kind": "SecurityPolicy", "namespace": o.GatewayNamespace}},
			"to":   []any{map[string]any{"group": "", "kind": "Service", "name": o.Service}},
		},
	}
	head := "# deact behind Envoy Gateway: gRPC ext_authz on every route of Gateway " + o.GatewayNamespace + "/" + o.Gateway + ".\n" +
		"# Generated by deact's deploy/mesh (deactctl envoy-gateway-config). deact classifies each request with its\n" +
		"# own route table (presets " + strings.Join(o.Presets, ", ") + "); bodies over maxRequestBytes are refused (413), so OAuth\n" +
		"# clients named only in a form body are still seen.\n"
	return docs(head, append(objs, grant)...)
}

func docs(head string, objs ...map[string]any) ([]byte, error) {
	var b bytes.Buffer
	b.WriteString(head)
	for _, obj := range objs {
		y, err := yaml.Marshal(obj)
		if err != nil {
			return nil, err
		}
		b.WriteString("---\n")
		b.Write(y)
	}
	return b.Bytes(), nil
}
