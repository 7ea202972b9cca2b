package envoy_test

import (
	"context"
	"regexp"
	"strings"
	"testing"

	"github.com/deact/deact/authz"
	"github.com/deact/deact/envoy"
	"github.com/deact/deact/state"
	"github.com/deact/deact/state/etcdtest"
	extauthzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"sigs.k8s.io/yaml"
)

// samplePath makes a path that a pattern matches.
func samplePath(p string) string {
	var out []string
	for _, s := range strings.Split(strings.Trim(p, "/"), "/") {
		switch {
		case s == "**":
			out = append(out, "webconsole", "api")
		case s == "*" || strings.HasPrefix(s, "{"):
			out = append(out, "x1")
		case strings.Contains(s, "*"):
			out = append(out, strings.Replace(s, "*", "x", 1))
		default:
			out = append(out, s)
		}
	}
	return "/" + strings.Join(out, "/")
}

func TestBootstrapValidatesAndRenders(t *testing.T) {
	for _, preset := range envoy.Presets {
		b, err := envoy.Bootstrap(envoy.Options{Preset: preset, Upstream: "zitadel:8080"})
		if err != nil {
			t.Fatalf("%s: %v", preset, err)
		}
		y, err := envoy.YAML(b)
		if err != nil {
			t.Fatal(err)
		}
		var doc map[string]any
		if err := yaml.Unmarshal(y, &doc); err != nil {
			t.Fatalf("%s: YAML does not parse: %v", preset, err)
		}
		wants := []string{"envoy.service.auth.v3.Authorization", "context_extensions", "grpc_health_check"}
		if preset == "zitadel" {
			wants = append(wants, "with_request_body")
		}
		for _, want := range wants {
			if !strings.Contains(string(y), want) {
				t.Errorf("%s: YAML lacks %q", preset, want)
			}
		}
		// failure_mode_allow false is the proto default, so it is not rendered: check the message instead.
		var hcm hcmv3.HttpConnectionManager
		if err := b.StaticResources.Listeners[0].FilterChains[0].Filters[0].GetTypedConfig().UnmarshalTo(&hcm); err != nil {
			t.Fatal(err)
		}
		var ea extauthzv3.ExtAuthz
		if err := hcm.HttpFilters[0].GetTypedConfig().UnmarshalTo(&ea); err != nil {
			t.Fatal(err)
		}
		if ea.FailureModeAllow {
			t.Fatalf("%s: ext_authz fails open", preset)
		}
		// Every route sends deact its body as bytes, a prefix marked partial rather than Envoy's own 413; routes
		// whose decision depends on the body buffer 1 MiB, every other 64 KiB.
		if wb := ea.GetWithRequestBody(); wb.GetMaxRequestBytes() != 64<<10 || !wb.GetAllowPartialMessage() || !wb.GetPackAsBytes() {
			t.Errorf("%s: filter with_request_body = %v", preset, wb)
		}
		if !hcm.GetNormalizePath().GetValue() || !hcm.GetMergeSlashes() {
			t.Errorf("%s: paths not normalized", preset)
		}
		routes, _ := envoy.PresetRoutes(preset)
		bodyRoutes := map[string]bool{}
		for _, r := range routes {
			bodyRoutes[r.Name] = r.Body
		}
		for _, r := range hcm.GetRouteConfig().GetVirtualHosts()[0].GetRoutes() {
			var pr extauthzv3.ExtAuthzPerRoute
			if cfg := r.GetTypedPerFilterConfig()[envoy.ExtAuthzFilter]; cfg != nil {
				if err := cfg.UnmarshalTo(&pr); err != nil {
					t.Fatal(err)
				}
			}
			wb := pr.GetCheckSettings().GetWithRequestBody()
			switch {
			case bodyRoutes[r.GetName()] && (wb.GetMaxRequestBytes() != 1<<20 || !wb.GetAllowPartialMessage() || !wb.GetPackAsBytes()):
				t.Errorf("%s: route %s with_request_body = %v", preset, r.GetName(), wb)
			case !bodyRoutes[r.GetName()] && wb != nil:
				t.Errorf("%s: route %s overrides the filter's body settings: %v", preset, r.GetName(), wb)
			}
		}
	}
	for name, o := range map[string]envoy.Options{
		"unknown preset": {Preset: "keycloak", Upstream: "a:1"},
		"no upstream":    {Preset: "zitadel"},
		"bad port":       {Preset: "zitadel", Upstream: "a:99999"},
	} {
		if _, err := envoy.Bootstrap(o); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// TestRoutesAgreeWithClassifier: for every preset route, Envoy's regex matches a sample path, and deact's real
// classifier gives the op the route's context_extensions state, both with the extension and from the request
// alone (so the tables cannot drift apart).
func TestRoutesAgreeWithClassifier(t *testing.T) {
	srv := etcdtest.Start(t)
	r := state.NewReplica(state.ReplicaConfig{Client: etcdtest.Client(t, srv.Endpoints())})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = r.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	a, err := authz.New(authz.Config{Replica: r})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.Close)
	for _, preset := range envoy.Presets {
		routes, _ := envoy.PresetRoutes(preset)
		for _, rt := range routes {
			path := samplePath(rt.Pattern)
			re, err := envoy.PatternRegex(rt.Pattern, rt.CaseInsensitive)
			if err != nil {
				t.Fatal(err)
			}
			if !regexp.MustCompile("^(?:" + re + ")$").MatchString(path) {
				t.Errorf("%s: regex %s does not match %s", rt.Name, re, path)
			}
			method := "POST"
			if len(rt.Methods) > 0 {
				method = rt.Methods[0]
			}
			if rt.Op == "" {
				continue
			}
			withExt, _ := a.Classify(&authz.Request{Method: method, Path: path, Route: map[string]string{"op": rt.Op}})
			alone, _ := a.Classify(&authz.Request{Method: method, Path: path})
			if withExt.String() != rt.Op || alone.String() != rt.Op {
				t.Errorf("%s %s: context_extensions op %q, classifier says %s with it and %s without", rt.Name, path, rt.Op, withExt, alone)
			}
		}
	}
}

func TestPatternRegex(t *testing.T) {
	for _, tc := range []struct {
		pattern string
		fold    bool
		match   []string
		nomatch []string
	}{
		{"/oauth/v2/token", false, []string{"/oauth/v2/token", "/oauth/v2/token/"}, []string{"/oauth/v2/tokens", "/OAUTH/v2/token"}},
		{"/**/action/backup", true, []string{"/webconsole/api/Subclient/5/action/backup", "/x/ACTION/Backup"}, []string{"/action/backups"}},
		{"/ui/login/**", false, []string{"/ui/login", "/ui/login/loginname"}, []string{"/ui/loginx"}},
		{"/zitadel.*/*", false, []string{"/zitadel.session.v2.SessionService/CreateSession"}, []string{"/other.x/y"}},
		// Servlet/IIS routes (case-insensitive patterns): path parameters and backslash separators.
		{"/**/Login", true, []string{"/webconsole/api/Login;jsessionid=ABC", `\webconsole\api\Login`, `/webconsole/api\login;x`,
			"/webconsole;x/api/Login"}, []string{"/webconsole/api/Loginx", "/webconsole/api/Login;x/y"}},
		{"/**/action/backup", true, []string{`/webconsole/api/Subclient/5/action;a=b\backup`, "/x/Action/Backup;jsessionid=1/"}, []string{"/x/action/backupx"}},
		{"/oauth/v2/token", false, nil, []string{"/oauth/v2/token;x", `/oauth\v2\token`}},
	} {
		re, err := envoy.PatternRegex(tc.pattern, tc.fold)
		if err != nil {
			t.Fatal(err)
		}
		rx := regexp.MustCompile("^(?:" + re + ")$")
		for _, p := range tc.match {
			if !rx.MatchString(p) {
				t.Errorf("%s (%s) should match %s", tc.pattern, re, p)
			}
		}
		for _, p := range tc.nomatch {
			if rx.MatchString(p) {
				t.Errorf("%s (%s) should not match %s", tc.pattern, re, p)
			}
		}
	}
}
