// Package envoy builds Envoy bootstrap configurations that put deact in front of an upstream: a listener whose
// routes carry the context_extensions deact's classifier reads, the ext_authz HTTP filter calling deact over
// gRPC (fail closed), and a health-checked cluster for deact. Configurations are built from go-control-plane
// types and validated with ValidateAll before they are returned.
package envoy

import (
	"errors"
	"fmt"
	"net"
	"regexp"
	"strconv"
	"strings"
	"time"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	extauthzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	upstreamhttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
	"sigs.k8s.io/yaml"
)

// Names used inside the generated configuration.
const (
	ExtAuthzFilter  = "envoy.filters.http.ext_authz"
	DeactCluster    = "deact_authz"
	UpstreamCluster = "upstream"
)

// Options describe the deployment. Zero values take the defaults in brackets.
type Options struct {
	Preset   string // "zitadel" or "commvault" (required)
	Upstream string // host:port of the protected service (required)
	Listen   string // Envoy's listener ["0.0.0.0:8000"]
	Deact    string // deact's ext_authz gRPC address ["127.0.0.1:9191", deactd's --authz-addr default]
	Admin    string // Envoy's admin interface ["127.0.0.1:9901"]
	// Timeout of one Check [250ms]. On timeout or error Envoy denies (failure_mode_allow is false) with 503.
	Timeout time.Duration
	// MaxRequestBytes is how much of a body the routes whose decision depends on it (token, login, sessions,
	// Commvault Login and CreateTask) send to deact [1 MiB]. deact refuses (413) a body on those routes that
	// it saw only in part, so this must exceed the largest ordinary request: a restore CreateTask of many
	// paths is tens of kB. deact's /check reads as much (authz.Config.MaxBodyBytes).
	MaxRequestBytes uint32
	// OtherRequestBytes is how much of a body every other route sends [64 KiB]: deact classifies each request
	// again from its path and decoding, so a body route Envoy's regex misses (another spelling of the path)
	// still reaches deact with its body, and is refused if cut.
	OtherRequestBytes uint32
}

func (o *Options) defaults() {
	if o.Listen == "" {
		o.Listen = "0.0.0.0:8000"
	}
	if o.Deact == "" {
		o.Deact = "127.0.0.1:9191"
	}
	if o.Admin == "" {
		o.Admin = "127.0.0.1:9901"
	}
	if o.Timeout == 0 {
		o.Timeout = 250 * time.Millisecond
	}
	if o.MaxRequestBytes == 0 {
		o.MaxRequestBytes = 1 << 20
	}
	if o.OtherRequestBytes == 0 {
		o.OtherRequestBytes = 64 << 10
	}
}

// Bootstrap builds and validates the configuration.
func Bootstrap(o Options) (*bootstrapv3.Bootstrap, error) {
	o.defaults()
	routes, err := PresetRoutes(o.Preset)
	if err != nil {
		return nil, err
	}
	listen, err := socketAddress(o.Listen)
	if err != nil {
		return nil, fmt.Errorf("listen: %w", err)
	}
	admin, err := socketAddress(o.Admin)
	if err != nil {
		return nil, fmt.Errorf("admin: %w", err)
	}
	upstream, err := cluster(UpstreamCluster, o.Upstream, false)
	if err != nil {
		return nil, fmt.Errorf("upstream: %w", err)
	}
	deact, err := cluster(DeactCluster, o.Deact, true)
	if err != nil {
		return nil, fmt.Errorf("deact: %w", err)
	}

	var vhRoutes []*routev3.Route
	for _, r := range routes {
		er, err := envoyRoute(r, o.MaxRequestBytes)
		if err != nil {
			return nil, err
		}
		vhRoutes = append(vhRoutes, er)
	}
	// Everything else still goes through ext_authz; deact classifies it from the request alone.
	vhRoutes = append(vhRoutes, &routev3.Route{
		Name:   "default",
		Match:  &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
		Action: routeToUpstream(),
	})

	authz := &extauthzv3.ExtAuthz{
		Services: &extauthzv3.ExtAuthz_GrpcService{GrpcService: &corev3.GrpcService{
			TargetSpecifier: &corev3.GrpcService_EnvoyGrpc_{EnvoyGrpc: &corev3.GrpcService_EnvoyGrpc{ClusterName: DeactCluster}},
			Timeout:         durationpb.New(o.Timeout),
		}},
		TransportApiVersion: corev3.ApiVersion_V3,
		FailureModeAllow:    false,
		// Every request's body (a prefix of a large one) goes to deact, as bytes: gRPC and gRPC-Web bodies are
		// binary protobuf, which the UTF-8 body field would mangle. Envoy adds x-envoy-auth-partial-body: true to
		// a Check whose body it cut, which deact refuses where the body decides.
		WithRequestBody: bodySettings(o.OtherRequestBytes),
		StatusOnError:   &typev3.HttpStatus{Code: typev3.StatusCode_ServiceUnavailable},
	}
	hcm := &hcmv3.HttpConnectionManager{
		StatPrefix: "ingress",
		CodecType:  hcmv3.HttpConnectionManager_AUTO,
		// Route (and forward) the path RFC 3986-normalized, slashes merged, so that Envoy's routes, deact and the
		// upstream see one spelling of it; deact normalizes once more on its own (percent-decoding, ';' path
		// parameters, '\' separators), since it cannot count on the proxy.
		NormalizePath: wrapperspb.Bool(true),
		MergeSlashes:  true,
		RouteSpecifier: &hcmv3.HttpConnectionManager_RouteConfig{RouteConfig: &routev3.RouteConfiguration{
			Name:         "deact_" + o.Preset,
			VirtualHosts: []*routev3.VirtualHost{{Name: "protected", Domains: []string{"*"}, Routes: vhRoutes}},
		}},
		HttpFilters: []*hcmv3.HttpFilter{
			{Name: ExtAuthzFilter, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(authz)}},
			{Name: "envoy.filters.http.router", ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(&routerv3.Router{})}},
		},
	}
	b := &bootstrapv3.Bootstrap{
		Node:  &corev3.Node{Id: "deact-edge", Cluster: "deact-edge"},
		Admin: &bootstrapv3.Admin{Address: listenAddr(admin)},
		StaticResources: &bootstrapv3.Bootstrap_StaticResources{
			Listeners: []*listenerv3.Listener{{
				Name:    "ingress",
				Address: listenAddr(listen),
				FilterChains: []*listenerv3.FilterChain{{Filters: []*listenerv3.Filter{{
					Name:       "envoy.filters.network.http_connection_manager",
					ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(hcm)},
				}}}},
			}},
			Clusters: []*clusterv3.Cluster{upstream, deact},
		},
	}
	if err := b.ValidateAll(); err != nil {
		return nil, fmt.Errorf("generated configuration is invalid: %w", err)
	}
	return b, nil
}

// YAML renders a configuration as Envoy reads it.
func YAML(b *bootstrapv3.Bootstrap) ([]byte, error) {
	j, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(b)
	if err != nil {
		return nil, err
	}
	return yaml.JSONToYAML(j)
}

// envoyRoute turns a preset route into an Envoy route that tells deact its op through context_extensions and,
// where deact reads the body (token and login requests), buffers it for the Check.
func envoyRoute(r Route, maxBody uint32) (*routev3.Route, error) {
	re, err := PatternRegex(r.Pattern, r.CaseInsensitive)
	if err != nil {
		return nil, fmt.Errorf("route %s: %w", r.Name, err)
	}
	match := &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: re}}}
	if len(r.Methods) > 0 {
		match.Headers = []*routev3.HeaderMatcher{{
			Name: ":method",
			HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: &matcherv3.StringMatcher{
				MatchPattern: &matcherv3.StringMatcher_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: strings.Join(r.Methods, "|")}},
			}},
		}}
	}
	settings := &extauthzv3.CheckSettings{}
	if r.Op != "" {
		settings.ContextExtensions = map[string]string{"op": r.Op}
	}
	if r.Body {
		settings.WithRequestBody = bodySettings(maxBody)
	}
	perRoute := &extauthzv3.ExtAuthzPerRoute{Override: &extauthzv3.ExtAuthzPerRoute_CheckSettings{CheckSettings: settings}}
	return &routev3.Route{
		Name:                 r.Name,
		Match:                match,
		Action:               routeToUpstream(),
		TypedPerFilterConfig: map[string]*anypb.Any{ExtAuthzFilter: mustAny(perRoute)},
	}, nil
}

// bodySettings buffers up to max bytes of a body for the Check. allow_partial_message keeps Envoy from
// answering 413 itself: deact decides whether a prefix can matter (it refuses where the body decides, with the
// surface's error shape) or not (an upload to an API route passes).
func bodySettings(max uint32) *extauthzv3.BufferSettings {
	return &extauthzv3.BufferSettings{MaxRequestBytes: max, AllowPartialMessage: true, PackAsBytes: true}
}

func routeToUpstream() *routev3.Route_Route {
	return &routev3.Route_Route{Route: &routev3.RouteAction{
		ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: UpstreamCluster},
	}}
}

// cluster is a STRICT_DNS cluster for host:port; grpc makes it HTTP/2 with a gRPC health check (deact's
// grpc.health.v1 is SERVING only while its replica is synced).
func cluster(name, hostport string, grpc bool) (*clusterv3.Cluster, error) {
	addr, err := socketAddress(hostport)
	if err != nil {
		return nil, err
	}
	c := &clusterv3.Cluster{
		Name:                 name,
		ConnectTimeout:       durationpb.New(time.Second),
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STRICT_DNS},
		LoadAssignment: &endpointv3.ClusterLoadAssignment{
			ClusterName: name,
			Endpoints: []*endpointv3.LocalityLbEndpoints{{LbEndpoints: []*endpointv3.LbEndpoint{{
				HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{Address: &corev3.Address{
					Address: &corev3.Address_SocketAddress{SocketAddress: addr},
				}}},
			}}}},
		},
	}
	if grpc {
		c.TypedExtensionProtocolOptions = map[string]*anypb.Any{
			"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": mustAny(&upstreamhttpv3.HttpProtocolOptions{
				UpstreamProtocolOptions: &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig_{ExplicitHttpConfig: &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig{
					ProtocolConfig: &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig_Http2ProtocolOptions{Http2ProtocolOptions: &corev3.Http2ProtocolOptions{}},
				}},
			}),
		}
		c.HealthChecks = []*corev3.HealthCheck{{
			Timeout:            durationpb.New(time.Second),
			Interval:           durationpb.New(2 * time.Second),
			UnhealthyThreshold: wrapperspb.UInt32(2),
			HealthyThreshold:   wrapperspb.UInt32(1),
			HealthChecker: &corev3.HealthCheck_GrpcHealthCheck_{GrpcHealthCheck: &corev3.HealthCheck_GrpcHealthCheck{
				ServiceName: "envoy.service.auth.v3.Authorization",
			}},
		}}
	}
	return c, nil
}

func socketAddress(hostport string) (*corev3.SocketAddress, error) {
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		return nil, err
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil || p == 0 {
		return nil, fmt.Errorf("port %q: want 1-65535", port)
	}
	if host == "" {
		return nil, errors.New("host is empty")
	}
	return &corev3.SocketAddress{Address: host, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: uint32(p)}}, nil
}

func listenAddr(s *corev3.SocketAddress) *corev3.Address {
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: s}}
}

func mustAny(m proto.Message) *anypb.Any {
	a, err := anypb.New(m)
	if err != nil {
		panic(err) // only for messages of linked-in types, which always marshal
	}
	return a
}

// PatternRegex translates a deact route pattern ("/oauth/v2/token", "/**/action/backup", "/zitadel.*/*") into
// the RE2 expression Envoy's safe_regex matches against the whole path (query excluded). A case-insensitive
// pattern is a servlet container's or IIS's route (Commvault's): its regex also takes '\' as a separator and
// ";params" after any segment, as those servers route "/Login;jsessionid=1" and "\Login" to Login.
func PatternRegex(pattern string, caseInsensitive bool) (string, error) {
	if !strings.HasPrefix(pattern, "/") {
		return "", fmt.Errorf("pattern %q must start with /", pattern)
	}
	sep, seg, params := "/", "[^/]", ""
	var b strings.Builder
	if caseInsensitive {
		b.WriteString("(?i)")
		sep, seg, params = `[/\\]`, `[^/\\]`, `(;[^/\\]*)?`
	}
	segs := strings.Split(strings.Trim(pattern, "/"), "/")
	for i, s := range segs {
		switch {
		case s == "**":
			if i == len(segs)-1 {
				b.WriteString("(" + sep + ".*)?")
			} else {
				b.WriteString("(" + sep + seg + "+)*")
			}
		case s == "*", strings.HasPrefix(s, "{") && strings.HasSuffix(s, "}"):
			b.WriteString(sep + seg + "+")
		case strings.Contains(s, "*"):
			pre, post, _ := strings.Cut(s, "*")
			b.WriteString(sep + regexp.QuoteMeta(pre) + seg + "*" + regexp.QuoteMeta(post) + params)
		default:
			b.WriteString(sep + regexp.QuoteMeta(s) + params)
		}
	}
	b.WriteString(sep + "?")
	if _, err := regexp.Compile(b.String()); err != nil {
		return "", err
	}
	return b.String(), nil
}
