package envoy_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	extauthzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/deact/deact/authz"
	"github.com/deact/deact/envoy"
	"github.com/deact/deact/state"
	"github.com/deact/deact/state/etcdtest"
)

// edge models what Envoy does with a generated bootstrap for one request: the first route whose regex matches
// the path gives the context_extensions and the body buffering (the route's, else the filter's), the body is
// cut at max_request_bytes with x-envoy-auth-partial-body set, packed as raw bytes, and the Check goes over
// loopback gRPC to a real deact.
type edge struct {
	routes []edgeRoute
	filter *extauthzv3.BufferSettings
	client authv3.AuthorizationClient
}

type edgeRoute struct {
	re       *regexp.Regexp
	methods  *regexp.Regexp
	settings *extauthzv3.CheckSettings
}

func newEdge(t *testing.T, b *bootstrapv3.Bootstrap, client authv3.AuthorizationClient) *edge {
	t.Helper()
	var hcm hcmv3.HttpConnectionManager
	if err := b.StaticResources.Listeners[0].FilterChains[0].Filters[0].GetTypedConfig().UnmarshalTo(&hcm); err != nil {
		t.Fatal(err)
	}
	var ea extauthzv3.ExtAuthz
	if err := hcm.HttpFilters[0].GetTypedConfig().UnmarshalTo(&ea); err != nil {
		t.Fatal(err)
	}
	e := &edge{filter: ea.GetWithRequestBody(), client: client}
	for _, r := range hcm.GetRouteConfig().GetVirtualHosts()[0].GetRoutes() {
		er := edgeRoute{}
		if re := r.GetMatch().GetSafeRegex().GetRegex(); re != "" {
			er.re = regexp.MustCompile("^(?:" + re + ")$")
		} else {
			er.re = regexp.MustCompile("^" + regexp.QuoteMeta(r.GetMatch().GetPrefix()))
		}
		for _, h := range r.GetMatch().GetHeaders() {
			er.methods = regexp.MustCompile("^(?:" + h.GetStringMatch().GetSafeRegex().GetRegex() + ")$")
		}
		if cfg := r.GetTypedPerFilterConfig()[envoy.ExtAuthzFilter]; cfg != nil {
			var pr extauthzv3.ExtAuthzPerRoute
			if err := cfg.UnmarshalTo(&pr); err != nil {
				t.Fatal(err)
			}
			er.settings = pr.GetCheckSettings()
		}
		e.routes = append(e.routes, er)
	}
	return e
}

// check sends one request the way Envoy would; org, when set, is a context extension the operator's virtual
// host adds (Commvault's tokens are opaque).
func (e *edge) check(t *testing.T, method, path, contentType, body, org string) *authv3.CheckResponse {
	t.Helper()
	buf := e.filter
	ext := map[string]string{}
	for _, r := range e.routes {
		if !r.re.MatchString(path) || (r.methods != nil && !r.methods.MatchString(method)) {
			continue
		}
		for k, v := range r.settings.GetContextExtensions() {
			ext[k] = v
		}
		if wb := r.settings.GetWithRequestBody(); wb != nil {
			buf = wb
		}
		break
	}
	if org != "" {
		ext["org_id"] = org
	}
	headers := map[string]string{":method": method, ":path": path, "content-type": contentType,
		"content-length": strconv.Itoa(len(body))}
	sent := body
	if buf != nil {
		if !buf.GetAllowPartialMessage() && len(body) > int(buf.GetMaxRequestBytes()) {
			t.Fatalf("Envoy would answer 413 itself for %s", path)
		}
		if len(sent) > int(buf.GetMaxRequestBytes()) {
			sent = sent[:buf.GetMaxRequestBytes()]
		}
		headers[authz.HeaderPartialBody] = strconv.FormatBool(len(sent) < len(body))
	} else {
		sent = ""
	}
	http := &authv3.AttributeContext_HttpRequest{Method: method, Path: path, Headers: headers}
	if buf.GetPackAsBytes() {
		http.RawBody = []byte(sent)
	} else {
		http.Body = sent
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := e.client.Check(ctx, &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Request: &authv3.AttributeContext_Request{Http: http}, ContextExtensions: ext}})
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

// restoreTask is an ordinary restore CreateTask of n bytes: many selected paths before the subtask.
func restoreTask(n int) string {
	var b strings.Builder
	b.WriteString(`<TMMsg_CreateTaskReq><taskInfo><associations clientName="fs1" subclientName="default"/>`)
	b.WriteString(`<subTasks><options><restoreOptions><fileOption>`)
	for i := 0; b.Len() < n-200; i++ {
		fmt.Fprintf(&b, `<sourceItem>/data/projects/p%05d/report.pdf</sourceItem>`, i)
	}
	b.WriteString(`</fileOption></restoreOptions></options><subTask subTaskType="RESTORE" operationType="RESTORE"/></subTasks></taskInfo></TMMsg_CreateTaskReq>`)
	return b.String()
}

// TestEnvoyBodySettingsDecideWholeBodies: with the body buffering deactctl envoy-config prints, ordinary large
// requests reach deact whole, so an active tenant's pass and a deactivated one's are denied; a body larger than
// the buffer is refused on a route whose decision depends on it, and passes where it does not.
func TestEnvoyBodySettingsDecideWholeBodies(t *testing.T) {
	srv := etcdtest.Start(t)
	cli := etcdtest.Client(t, srv.Endpoints())
	store := state.NewStore(cli)
	ctx := context.Background()
	const fixtures = `{"org":{"id":"900","name":"tenant9","domains":["tenant9"]}}
{"org":{"id":"901","name":"tenant1","domains":["tenant1"]}}
{"org":{"id":"903","name":"tenant3","domains":["tenant3"]}}
{"org":{"id":"100","name":"acme","domains":["acme.example"]}}
{"app":{"id":"400","projectId":"300","orgId":"100","clientIds":["400@acme"],"state":"active"}}
`
	if _, err := store.Import(ctx, strings.NewReader(fixtures), state.Change{Actor: "test"}); err != nil {
		t.Fatal(err)
	}
	r := state.NewReplica(state.ReplicaConfig{Client: cli, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); _ = r.Run(rctx) }()
	t.Cleanup(func() { cancel(); <-done })
	a, err := authz.New(authz.Config{Replica: r})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.Close)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	authv3.RegisterAuthorizationServer(gs, a)
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	client := authv3.NewAuthorizationClient(conn)

	off := func(id string, ops state.Ops) {
		t.Helper()
		res, err := store.DeactivateOrg(ctx, id, ops, true, state.Change{Actor: "test"})
		if err != nil {
			t.Fatal(err)
		}
		wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
		defer wcancel()
		if err := r.WaitReady(wctx); err != nil {
			t.Fatal(err)
		}
		for r.AppliedRevision() < res.Revision {
			if wctx.Err() != nil {
				t.Fatalf("revision %d not applied", res.Revision)
			}
			time.Sleep(time.Millisecond)
		}
	}
	off("900", state.OpRestore) // restore-deactivated
	off("901", state.OpBackup)  // backup-deactivated: its restores pass, when deact sees that they are restores
	off("903", state.OpLogin)
	off("100", state.OpLogin|state.OpToken)

	allowed := func(resp *authv3.CheckResponse) bool { return resp.GetStatus().GetCode() == int32(codes.OK) }
	reason := func(resp *authv3.CheckResponse) string { return resp.GetStatus().GetMessage() }
	status := func(resp *authv3.CheckResponse) int { return int(resp.GetDeniedResponse().GetStatus().GetCode()) }

	cv, err := envoy.Bootstrap(envoy.Options{Preset: "commvault", Upstream: "commvault:443"})
	if err != nil {
		t.Fatal(err)
	}
	cvEdge := newEdge(t, cv, client)
	task := restoreTask(13 << 10)
	t.Run("13 kB restore CreateTask", func(t *testing.T) {
		if resp := cvEdge.check(t, "POST", "/webconsole/api/CreateTask", "application/xml", task, "900"); allowed(resp) || reason(resp) != "org_deactivated" {
			t.Errorf("restore-deactivated org: %v", resp.GetStatus())
		}
		if resp := cvEdge.check(t, "POST", "/webconsole/api/CreateTask", "application/xml", task, "901"); !allowed(resp) {
			t.Errorf("backup-deactivated org's restore: %v %s", resp.GetStatus(), resp.GetDeniedResponse().GetBody())
		}
		if resp := cvEdge.check(t, "POST", "/webconsole/api/CreateTask", "application/xml", task, "902"); !allowed(resp) {
			t.Errorf("active org: %v", resp.GetStatus())
		}
	})
	t.Run("Commvault login behind a long XML comment", func(t *testing.T) {
		body := `<?xml version="1.0"?><!-- ` + strings.Repeat("x", 20<<10) + ` --><DM2ContentIndexing_CheckCredentialReq username="tenant3\bob" password="cA=="/>`
		if resp := cvEdge.check(t, "POST", "/webconsole/api/Login", "application/xml", body, ""); allowed(resp) || reason(resp) != "org_deactivated" {
			t.Errorf("login of a login-deactivated tenant: %v", resp.GetStatus())
		}
		if resp := cvEdge.check(t, "POST", "/webconsole/api/Login", "application/xml", strings.Replace(body, "tenant3", "tenant1", 1), ""); !allowed(resp) {
			t.Errorf("login of a backup-deactivated tenant: %v", resp.GetStatus())
		}
	})

	zt, err := envoy.Bootstrap(envoy.Options{Preset: "zitadel", Upstream: "zitadel:8080"})
	if err != nil {
		t.Fatal(err)
	}
	zEdge := newEdge(t, zt, client)
	form := "application/x-www-form-urlencoded"
	t.Run("token request with client_id after padding", func(t *testing.T) {
		body := "grant_type=client_credentials&pad=" + strings.Repeat("p", 20<<10) + "&client_id=400%40acme"
		if resp := zEdge.check(t, "POST", "/oauth/v2/token", form, body, ""); allowed(resp) || reason(resp) != "org_deactivated" {
			t.Errorf("token request of a deactivated org: %v", resp.GetStatus())
		}
	})
	t.Run("session whose loginName is followed by long metadata", func(t *testing.T) {
		body := `{"checks":{"user":{"loginName":"bob@acme.example"}},"metadata":{"m":"` + strings.Repeat("bQ", 10<<10) + `"}}`
		if resp := zEdge.check(t, "POST", "/v2/sessions", "application/json", body, ""); allowed(resp) || reason(resp) != "org_deactivated" {
			t.Errorf("session of a deactivated org: %v", resp.GetStatus())
		}
	})
	t.Run("a body larger than the buffer", func(t *testing.T) {
		body := "grant_type=client_credentials&pad=" + strings.Repeat("p", 1<<20) + "&client_id=other"
		if resp := zEdge.check(t, "POST", "/oauth/v2/token", form, body, ""); allowed(resp) || reason(resp) != "body_incomplete" || status(resp) != 413 {
			t.Errorf("token request cut at the buffer: %v %d", resp.GetStatus(), status(resp))
		}
		// A body route Envoy's regex misses (another spelling of the path) is buffered by the filter, cut at its
		// smaller limit, and refused by deact.
		if resp := zEdge.check(t, "POST", "/oauth/v2/%74oken", form, body, ""); allowed(resp) || reason(resp) != "body_incomplete" {
			t.Errorf("token request on another spelling of the path: %v", resp.GetStatus())
		}
		if resp := zEdge.check(t, "PUT", "/management/v1/policies/label/logo", "image/png", strings.Repeat("\x89", 2<<20), ""); !allowed(resp) {
			t.Errorf("a large upload where the body does not matter: %v", resp.GetStatus())
		}
	})
}
