package mesh_test

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"
	meshv1alpha1 "istio.io/api/mesh/v1alpha1"
	securityv1beta1 "istio.io/api/security/v1beta1"
	"sigs.k8s.io/yaml"

	"github.com/deact/deact/deploy/mesh"
	"github.com/deact/deact/envoy"
)

var update = flag.Bool("update", false, "rewrite deploy/kubernetes/istio.yaml and envoy-gateway.yaml")

type object struct {
	APIVersion string         `json:"apiVersion"`
	Kind       string         `json:"kind"`
	Metadata   map[string]any `json:"metadata"`
	Spec       map[string]any `json:"spec"`
}

func split(t *testing.T, y []byte) map[string]object {
	t.Helper()
	out := map[string]object{}
	for _, doc := range strings.Split(string(y), "\n---\n")[1:] {
		var o object
		if err := yaml.UnmarshalStrict([]byte(doc), &o); err != nil {
			t.Fatalf("%v\n%s", err, doc)
		}
		out[o.Kind] = o
	}
	return out
}

// gatewayPorts reads the gateway DaemonSet of deploy/kubernetes/deact.yaml: its labels, and the authz port both
// as containerPort and as deactd's --authz-addr flag.
func gatewayPorts(t *testing.T) (labels map[string]any, port int) {
	t.Helper()
	raw, err := os.ReadFile("../kubernetes/deact.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, doc := range strings.Split(string(raw), "\n---\n") {
		var ds struct {
			Kind string `json:"kind"`
			Spec struct {
				Template struct {
					Metadata struct {
						Labels map[string]any `json:"labels"`
					} `json:"metadata"`
					Spec struct {
						Containers []struct {
							Args  []string `json:"args"`
							Ports []struct {
								Name          string `json:"name"`
								ContainerPort int    `json:"containerPort"`
							} `json:"ports"`
						} `json:"containers"`
					} `json:"spec"`
				} `json:"template"`
			} `json:"spec"`
		}
		if err := yaml.Unmarshal([]byte(doc), &ds); err != nil || ds.Kind != "DaemonSet" {
			continue
		}
		c := ds.Spec.Template.Spec.Containers[0]
		for _, p := range c.Ports {
			if p.Name == "authz" {
				port = p.ContainerPort
			}
		}
		flagPort := 0
		for _, a := range c.Args {
			if v, ok := strings.CutPrefix(a, "--authz-addr="); ok {
				fmt.Sscanf(v[strings.LastIndexByte(v, ':')+1:], "%d", &flagPort)
			}
		}
		if port == 0 || flagPort != port {
			t.Fatalf("DaemonSet: authz containerPort %d, --authz-addr port %d", port, flagPort)
		}
		return ds.Spec.Template.Metadata.Labels, port
	}
	t.Fatal("no DaemonSet in deploy/kubernetes/deact.yaml")
	return nil, 0
}

func checkService(t *testing.T, svc object, labels map[string]any, port int) {
	t.Helper()
	for k, v := range svc.Spec["selector"].(map[string]any) {
		if labels[k] != v {
			t.Errorf("Service selector %s=%v does not select the gateway DaemonSet (%v)", k, v, labels)
		}
	}
	p := svc.Spec["ports"].([]any)[0].(map[string]any)
	if int(p["port"].(float64)) != port || p["targetPort"] != "authz" || svc.Spec["internalTrafficPolicy"] != "Local" {
		t.Errorf("Service %v: want port %d to targetPort authz, internalTrafficPolicy Local", svc.Spec, port)
	}
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := "../kubernetes/" + name
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil || string(want) != string(got) {
		t.Errorf("%s is not what deploy/mesh generates (go test ./deploy/mesh -update): %v", path, err)
	}
}

// TestIstio: the meshConfig fragment and the AuthorizationPolicy unmarshal strictly into Istio's own API types
// (istio.io/api), name the same provider, and reach the gateway DaemonSet's authz port.
func TestIstio(t *testing.T) {
	labels, port := gatewayPorts(t)
	for _, scope := range []string{mesh.ScopeAll, mesh.ScopePresetPaths} {
		t.Run(scope, func(t *testing.T) {
			o := mesh.Options{Scope: scope}
			if scope == mesh.ScopePresetPaths {
				o.Presets = []string{"zitadel"}
			}
			y, err := mesh.Istio(o)
			if err != nil {
				t.Fatal(err)
			}
			objs := split(t, y)
			checkService(t, objs["Service"], labels, port)

			js, _ := json.Marshal(objs["IstioOperator"].Spec["meshConfig"])
			var mc meshv1alpha1.MeshConfig
			if err := (protojson.UnmarshalOptions{}).Unmarshal(js, &mc); err != nil {
				t.Fatalf("meshConfig: %v\n%s", err, js)
			}
			if len(mc.GetExtensionProviders()) != 1 {
				t.Fatalf("extension providers: %v", mc.GetExtensionProviders())
			}
			ep := mc.GetExtensionProviders()[0]
			g := ep.GetEnvoyExtAuthzGrpc()
			if ep.GetName() != mesh.ProviderName || g == nil || g.GetFailOpen() || int(g.GetPort()) != port ||
				g.GetService() != "deact-gateway.deact.svc.cluster.local" || g.GetIncludeRequestBodyInCheck().GetMaxRequestBytes() != 64<<10 ||
				g.GetIncludeRequestBodyInCheck().GetAllowPartialMessage() || g.GetTimeout().AsDuration().Milliseconds() != 250 {
				t.Fatalf("extension provider: %v", ep)
			}

			pol := objs["AuthorizationPolicy"]
			js, _ = json.Marshal(pol.Spec)
			var ap securityv1beta1.AuthorizationPolicy
			if err := (protojson.UnmarshalOptions{}).Unmarshal(js, &ap); err != nil {
				t.Fatalf("AuthorizationPolicy: %v\n%s", err, js)
			}
			if pol.APIVersion != "security.istio.io/v1" || ap.GetAction() != securityv1beta1.AuthorizationPolicy_CUSTOM ||
				ap.GetProvider().GetName() != mesh.ProviderName || len(ap.GetRules()) != 1 {
				t.Fatalf("AuthorizationPolicy: %v", &ap)
			}
			if scope == mesh.ScopeAll && len(ap.GetRules()[0].GetTo()) != 0 {
				t.Fatalf("scope all restricts the paths: %v", ap.GetRules()[0])
			}
			if scope == mesh.ScopeAll {
				golden(t, "istio.yaml", y)
			}
		})
	}
}

// TestIstioPathsCoverRoutes: every path a preset route matches is matched by one of the Istio paths generated
// for it (exact, "prefix*", "*suffix", as Istio matches them).
func TestIstioPathsCoverRoutes(t *testing.T) {
	paths, err := mesh.IstioPaths([]string{"zitadel"})
	if err != nil {
		t.Fatal(err)
	}
	istioMatch := func(p string) bool {
		for _, ip := range paths {
			switch {
			case ip == "*", ip == p:
				return true
			case strings.HasSuffix(ip, "*") && strings.HasPrefix(p, strings.TrimSuffix(ip, "*")):
				return true
			case strings.HasPrefix(ip, "*") && strings.HasSuffix(p, strings.TrimPrefix(ip, "*")):
				return true
			}
		}
		return false
	}
	routes, err := envoy.PresetRoutes("zitadel")
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range routes {
		re := regexp.MustCompile("^" + must(envoy.PatternRegex(r.Pattern, false)) + "$")
		for _, sample := range samples(r.Pattern) {
			if !re.MatchString(sample) {
				t.Fatalf("sample %q does not match %s's pattern %s", sample, r.Name, r.Pattern)
			}
			if !istioMatch(sample) {
				t.Errorf("route %s: %q not matched by Istio paths %v", r.Name, sample, paths)
			}
		}
	}
	if _, err := mesh.IstioPaths([]string{"commvault"}); err == nil {
		t.Error("case-insensitive Commvault routes accepted as Istio paths")
	}
}

// samples expands a pattern into concrete paths: "**" as zero, one and two segments, "*" and "{x}" as a segment,
// a glob's "*" as text.
func samples(p string) []string {
	out := []string{}
	for _, deep := range []string{"", "a", "a/b"} {
		s := p
		s = strings.ReplaceAll(s, "/**", "/"+deep)
		s = strings.ReplaceAll(s, "//", "/")
		s = regexp.MustCompile(`\{[^}]*\}`).ReplaceAllString(s, "v")
		s = strings.ReplaceAll(s, "*", "x")
		if s != "/" {
			s = strings.TrimSuffix(s, "/")
		}
		out = append(out, s)
	}
	return out
}

func must(s string, err error) string {
	if err != nil {
		panic(err)
	}
	return s
}

// TestEnvoyGateway: the SecurityPolicy validates against Envoy Gateway's published CRD schema (v1.9.1, trimmed
// to the fields deact sets) and reaches the gateway DaemonSet's authz port; the ReferenceGrant allows exactly
// that reference.
func TestEnvoyGateway(t *testing.T) {
	labels, port := gatewayPorts(t)
	y, err := mesh.EnvoyGateway(mesh.Options{})
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "envoy-gateway.yaml", y)
	objs := split(t, y)
	for _, bad := range [][]mesh.RouteTenant{{{Route: "Bad_Route", OrgID: "7"}}, {{Route: "r", OrgID: "7/../8"}}, {{Route: "r", OrgID: "7"}, {Route: "r", OrgID: "8"}}} {
		if _, err := mesh.EnvoyGateway(mesh.Options{RouteTenants: bad}); err == nil {
			t.Errorf("route tenants %v accepted", bad)
		}
	}
	// A tenant's HTTPRoute gets its own policy stating org_id as a context extension.
	yt, err := mesh.EnvoyGateway(mesh.Options{RouteTenants: []mesh.RouteTenant{{Route: "tenant7", OrgID: "7"}}})
	if err != nil {
		t.Fatal(err)
	}
	var tenantPolicy map[string]any
	for _, doc := range strings.Split(string(yt), "\n---\n")[1:] {
		var o object
		if err := yaml.UnmarshalStrict([]byte(doc), &o); err != nil {
			t.Fatal(err)
		}
		if o.Kind == "SecurityPolicy" && o.Metadata["name"] == "deact-tenant7" {
			tenantPolicy = map[string]any{"apiVersion": o.APIVersion, "kind": o.Kind, "metadata": o.Metadata, "spec": o.Spec}
		}
	}
	if tenantPolicy == nil {
		t.Fatalf("no SecurityPolicy for the tenant route:\n%s", yt)
	}
	ce := tenantPolicy["spec"].(map[string]any)["extAuth"].(map[string]any)["contextExtensions"].([]any)[0].(map[string]any)
	if ce["name"] != "org_id" || ce["value"] != "7" || ce["type"] != "Value" {
		t.Fatalf("tenant context extension: %v", ce)
	}
	checkService(t, objs["Service"], labels, port)
	sp := objs["SecurityPolicy"]
	raw, err := os.ReadFile("testdata/securitypolicy.schema.json")
	if err != nil {
		t.Fatal(err)
	}
	var crd struct {
		Schema *schema `json:"schema"`
	}
	if err := json.Unmarshal(raw, &crd); err != nil {
		t.Fatal(err)
	}
	doc := map[string]any{"apiVersion": sp.APIVersion, "kind": sp.Kind, "metadata": sp.Metadata, "spec": sp.Spec}
	for _, d := range []map[string]any{doc, tenantPolicy} {
		if errs := crd.Schema.validate("", roundTrip(t, d)); len(errs) > 0 {
			t.Fatalf("SecurityPolicy %v against the CRD schema:\n%s", d["metadata"], strings.Join(errs, "\n"))
		}
	}
	ext := sp.Spec["extAuth"].(map[string]any)
	ref := ext["grpc"].(map[string]any)["backendRefs"].([]any)[0].(map[string]any)
	if int(ref["port"].(float64)) != port || ref["name"] != "deact-gateway" || ref["namespace"] != "deact" || ext["failOpen"] != false {
		t.Fatalf("extAuth: %v", ext)
	}
	g := objs["ReferenceGrant"]
	from := g.Spec["from"].([]any)[0].(map[string]any)
	if g.Metadata["namespace"] != "deact" || from["namespace"] != sp.Metadata["namespace"] || from["kind"] != "SecurityPolicy" {
		t.Fatalf("ReferenceGrant %v does not allow the SecurityPolicy %v", g, sp.Metadata)
	}

	// The validator itself rejects what Kubernetes would: an unknown field, a wrong type, a bad enum.
	bad := []func(m map[string]any){
		func(m map[string]any) { m["spec"].(map[string]any)["extAuth"].(map[string]any)["failopen"] = false },
		func(m map[string]any) { m["spec"].(map[string]any)["extAuth"].(map[string]any)["failOpen"] = "no" },
		func(m map[string]any) {
			m["spec"].(map[string]any)["targetRefs"].([]any)[0].(map[string]any)["kind"] = map[string]any{}
		},
		func(m map[string]any) {
			m["spec"].(map[string]any)["extAuth"].(map[string]any)["bodyToExtAuth"] = map[string]any{}
		},
	}
	for i, mutate := range bad {
		d := roundTrip(t, doc).(map[string]any)
		mutate(d)
		if errs := crd.Schema.validate("", d); len(errs) == 0 {
			t.Errorf("mutation %d accepted", i)
		}
	}
}

func roundTrip(t *testing.T, v any) any {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var out any
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

// schema is the part of a CRD's structural OpenAPI v3 schema the API server checks before CEL rules: types,
// properties (unknown fields are rejected, as kubectl --validate=strict does), required, enums, bounds and
// patterns. x-kubernetes-validations (CEL) are not evaluated.
type schema struct {
	Type                 string             `json:"type"`
	Properties           map[string]*schema `json:"properties"`
	Items                *schema            `json:"items"`
	Required             []string           `json:"required"`
	Enum                 []any              `json:"enum"`
	Pattern              string             `json:"pattern"`
	MinLength            *int               `json:"minLength"`
	MaxLength            *int               `json:"maxLength"`
	MinItems             *int               `json:"minItems"`
	MaxItems             *int               `json:"maxItems"`
	Minimum              *float64           `json:"minimum"`
	Maximum              *float64           `json:"maximum"`
	AdditionalProperties json.RawMessage    `json:"additionalProperties"`
	PreserveUnknown      bool               `json:"x-kubernetes-preserve-unknown-fields"`
	IntOrString          bool               `json:"x-kubernetes-int-or-string"`
}

func (s *schema) validate(at string, v any) []string {
	var errs []string
	fail := func(f string, a ...any) { errs = append(errs, at+": "+fmt.Sprintf(f, a...)) }
	if s.IntOrString {
		switch v.(type) {
		case float64, string:
		default:
			fail("want int or string, got %T", v)
		}
		return errs
	}
	switch s.Type {
	case "object":
		m, ok := v.(map[string]any)
		if !ok {
			fail("want object, got %T", v)
			return errs
		}
		for _, r := range s.Required {
			if _, ok := m[r]; !ok {
				fail("missing required field %s", r)
			}
		}
		var extra *schema
		if len(s.AdditionalProperties) > 0 && string(s.AdditionalProperties) != "false" && string(s.AdditionalProperties) != "true" {
			extra = new(schema)
			_ = json.Unmarshal(s.AdditionalProperties, extra)
		}
		for k, fv := range m {
			switch ps := s.Properties[k]; {
			case ps != nil:
				errs = append(errs, ps.validate(at+"."+k, fv)...)
			case extra != nil:
				errs = append(errs, extra.validate(at+"."+k, fv)...)
			case s.PreserveUnknown || string(s.AdditionalProperties) == "true" || (s.Properties == nil && at == ".metadata"):
			default:
				fail("unknown field %s", k)
			}
		}
	case "array":
		a, ok := v.([]any)
		if !ok {
			fail("want array, got %T", v)
			return errs
		}
		if s.MinItems != nil && len(a) < *s.MinItems || s.MaxItems != nil && len(a) > *s.MaxItems {
			fail("%d items out of bounds", len(a))
		}
		for i, x := range a {
			if s.Items != nil {
				errs = append(errs, s.Items.validate(fmt.Sprintf("%s[%d]", at, i), x)...)
			}
		}
	case "string":
		str, ok := v.(string)
		if !ok {
			fail("want string, got %T", v)
			return errs
		}
		if s.MinLength != nil && len(str) < *s.MinLength || s.MaxLength != nil && len(str) > *s.MaxLength {
			fail("length %d out of bounds", len(str))
		}
		if s.Pattern != "" {
			if re, err := regexp.Compile(s.Pattern); err == nil && !re.MatchString(str) {
				fail("%q does not match %s", str, s.Pattern)
			}
		}
	case "integer", "number":
		n, ok := v.(float64)
		if !ok || s.Type == "integer" && n != float64(int64(n)) {
			fail("want %s, got %v", s.Type, v)
			return errs
		}
		if s.Minimum != nil && n < *s.Minimum || s.Maximum != nil && n > *s.Maximum {
			fail("%v out of bounds", n)
		}
	case "boolean":
		if _, ok := v.(bool); !ok {
			fail("want boolean, got %T", v)
		}
	}
	if len(s.Enum) > 0 {
		found := false
		for _, e := range s.Enum {
			if fmt.Sprint(e) == fmt.Sprint(v) {
				found = true
			}
		}
		if !found {
			fail("%v not one of %v", v, s.Enum)
		}
	}
	return errs
}
