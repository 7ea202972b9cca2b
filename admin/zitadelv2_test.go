package admin_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/deact/deact/admin/adminapi"
	"github.com/deact/deact/admin/proto/zitadel"
	application "github.com/deact/deact/admin/proto/zitadel/application/v2"
	"github.com/deact/deact/admin/proto/zitadel/application/v2/applicationconnect"
	org "github.com/deact/deact/admin/proto/zitadel/org/v2"
	"github.com/deact/deact/admin/proto/zitadel/org/v2/orgconnect"
	project "github.com/deact/deact/admin/proto/zitadel/project/v2"
	"github.com/deact/deact/admin/proto/zitadel/project/v2/projectconnect"
	"github.com/deact/deact/state"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	grpcstatus "google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// stateRevision is the revision of the last write to the state: unlike etcd's revision it does not move when a
// gateway node reports what it applied.
func (e *env) stateRevision(t testing.TB) int64 {
	t.Helper()
	resp, err := e.cli.Get(context.Background(), state.StatePrefix, clientv3.WithPrefix(), clientv3.WithKeysOnly(),
		clientv3.WithSort(clientv3.SortByModRevision, clientv3.SortDescend), clientv3.WithLimit(1))
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Kvs) == 0 {
		return 0
	}
	return resp.Kvs[0].ModRevision
}

var changeDateRE = regexp.MustCompile(`^\{"changeDate":"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z)"\}$`)

// TestZitadelV2OrgREST: ZITADEL's v2 org routes over REST name the org in the path, answer with the change date
// and the confirmation headers, and refuse what v1 refuses, with the same codes.
func TestZitadelV2OrgREST(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{nodes: 2})
	tokA := e.token("token-for-org-a-only-123", state.Token{Name: "a", HomeOrg: "100", Orgs: []string{"100"}, Role: state.RoleAdmin})
	tokRO := e.token("read-only-token-for-a-123", state.Token{Name: "ro", HomeOrg: "100", Orgs: []string{"100"}, Role: state.RoleReadOnly})
	ctJSON := "Content-Type: application/json"

	r := e.do("POST", "/v2/organizations/100/deactivate", "{}", bearer(tokA), ctJSON)
	m := changeDateRE.FindStringSubmatch(r.body)
	if r.status != 200 || m == nil {
		t.Fatalf("deactivate: %d %s", r.status, r.body)
	}
	checkConfirmed(t, r, "2/2")
	v, err := e.store.GetOrg(context.Background(), "100")
	if err != nil || v.Record.Disabled != state.OpLogin|state.OpToken {
		t.Fatalf("stored org = %+v, %v", v, err)
	}
	if at, err := time.Parse(time.RFC3339Nano, m[1]); err != nil || !at.Equal(v.Record.ChangedAt) {
		t.Errorf("changeDate %s, stored change at %v", m[1], v.Record.ChangedAt)
	}

	cases := []restCase{
		{"already deactivated", "POST", "/v2/organizations/100/deactivate", "{}", []string{bearer(tokA)}, 400,
			zitadelError(9, "DEACT-AlreadyDeactivated", "org 100: already deactivated")},
		{"empty body", "POST", "/v2/organizations/100/deactivate", "", []string{bearer(tokA)}, 400,
			zitadelError(9, "DEACT-AlreadyDeactivated", "org 100: already deactivated")},
		{"x-zitadel-orgid is not consulted", "POST", "/v2/organizations/100/deactivate", "{}", []string{bearer(tokA), "x-zitadel-orgid: 200"}, 400,
			zitadelError(9, "DEACT-AlreadyDeactivated", "org 100: already deactivated")},
		{"other org", "POST", "/v2/organizations/200/deactivate", "{}", []string{bearer(tokA)}, 403,
			zitadelError(7, "DEACT-OrgNotAllowed", "the token may not act on org 200")},
		{"body cannot retarget the path", "POST", "/v2/organizations/200/deactivate", `{"organizationId":"100"}`, []string{bearer(tokA)}, 403,
			zitadelError(7, "DEACT-OrgNotAllowed", "the token may not act on org 200")},
		{"body cannot retarget the path, proto name", "POST", "/v2/organizations/200/deactivate", `{"organization_id":"100"}`, []string{bearer(tokA)}, 403,
			zitadelError(7, "DEACT-OrgNotAllowed", "the token may not act on org 200")},
		{"query cannot retarget the path", "POST", "/v2/organizations/200/deactivate?organizationId=100", "{}", []string{bearer(tokA)}, 403,
			zitadelError(7, "DEACT-OrgNotAllowed", "the token may not act on org 200")},
		{"query cannot retarget the path, proto name", "POST", "/v2/organizations/200/deactivate?organization_id=100&organization_id=100", "{}", []string{bearer(tokA)}, 403,
			zitadelError(7, "DEACT-OrgNotAllowed", "the token may not act on org 200")},
		{"no token", "POST", "/v2/organizations/100/activate", "{}", nil, 401,
			zitadelError(16, "DEACT-NoToken", "authentication required: send a token")},
		{"bad token", "POST", "/v2/organizations/100/activate", "{}", []string{bearer("not-a-token-at-all")}, 401,
			zitadelError(16, "DEACT-BadToken", "the token is not valid")},
		{"read-only", "POST", "/v2/organizations/100/activate", "{}", []string{bearer(tokRO)}, 403,
			zitadelError(7, "DEACT-ReadOnly", "the token is read-only")},
		{"empty id", "POST", "/v2/organizations//deactivate", "{}", []string{bearer(bootstrapToken)}, 400,
			zitadelError(3, "DEACT-NoOrg", "no organization: organization_id is required")},
		{"empty id, body names one", "POST", "/v2/organizations//deactivate", `{"organizationId":"100"}`, []string{bearer(tokA)}, 400,
			zitadelError(3, "DEACT-NoOrg", "no organization: organization_id is required")},
		{"dotdot id", "POST", "/v2/organizations/../deactivate", "{}", []string{bearer(bootstrapToken)}, 400,
			zitadelError(3, "DEACT-InvalidID", `invalid id: org id \"..\" is reserved`)},
		{"escaped slash", "POST", "/v2/organizations/100%2F200/deactivate", "{}", []string{bearer(bootstrapToken)}, 400,
			zitadelError(3, "DEACT-InvalidID", `invalid id: a path segment holds an escaped \"/\"`)},
		{"not UTF-8", "POST", "/v2/organizations/%ff/deactivate", "{}", []string{bearer(bootstrapToken)}, 400,
			zitadelError(3, "DEACT-InvalidID", "invalid id: the path is not UTF-8")},
		{"not UTF-8 on v1", "POST", "/management/v1/projects/%ff/_deactivate", "{}", []string{bearer(bootstrapToken), "x-zitadel-orgid: 1"}, 400,
			zitadelError(3, "DEACT-InvalidID", "invalid id: the path is not UTF-8")},
		{"escaped space", "POST", "/v2/organizations/1%200/deactivate", "{}", []string{bearer(bootstrapToken)}, 400,
			zitadelError(3, "DEACT-InvalidID", "invalid id: org id has a character outside [A-Za-z0-9._@:-] at byte 1")},
		{"bad json", "POST", "/v2/organizations/100/activate", "{", []string{bearer(tokA)}, 400,
			zitadelError(3, "DEACT-BadBody", "the request body is not a JSON object")},
		{"json array", "POST", "/v2/organizations/100/activate", `["100"]`, []string{bearer(tokA)}, 400,
			zitadelError(3, "DEACT-BadBody", "the request body is not a JSON object")},
		{"activate an org deact never deactivated", "POST", "/v2/organizations/300/activate", "{}", []string{bearer(bootstrapToken)}, 400,
			zitadelError(9, "DEACT-NotDeactivated", "org 300: not deactivated")},
		{"GET on a POST route", "GET", "/v2/organizations/100/activate", "", []string{bearer(tokA)}, 405,
			zitadelError(12, "DEACT-Method", "Method Not Allowed")},
		{"trailing slash", "POST", "/v2/organizations/100/activate/", "{}", []string{bearer(tokA)}, 404,
			zitadelError(5, "DEACT-NoRoute", "no route for POST /v2/organizations/100/activate/")},
		{"case of the route", "POST", "/v2/Organizations/100/activate", "{}", []string{bearer(tokA)}, 404,
			zitadelError(5, "DEACT-NoRoute", "no route for POST /v2/Organizations/100/activate")},
		{"projects have no REST route in v2", "POST", "/v2/projects/p1/deactivate", "{}", []string{bearer(tokA)}, 404,
			zitadelError(5, "DEACT-NoRoute", "no route for POST /v2/projects/p1/deactivate")},
	}
	e.runREST(t, cases, func() int64 { return e.stateRevision(t) }, ctJSON)
	if _, err := e.store.GetOrg(context.Background(), "200"); err != state.ErrNotFound {
		t.Errorf("org 200 was written: %v", err)
	}

	// A value of the wrong type is the client's mistake (protojson's wording varies, so only the start is fixed).
	r = e.do("POST", "/v2/organizations/100/activate", `{"organizationId":100}`, bearer(tokA), ctJSON)
	if r.status != 400 || !strings.HasPrefix(r.body, `{"code":3,"message":"the request body does not fit ActivateOrganizationRequest: `) ||
		!strings.Contains(r.body, `"id":"DEACT-BadBody"`) {
		t.Errorf("number for the id: %d %s", r.status, r.body)
	}

	// Unknown fields are ignored, as ZITADEL's gateway ignores them.
	r = e.do("POST", "/v2/organizations/100/activate", `{"organizationId":"100","comment":{"why":["x"]}}`, bearer(tokA), ctJSON)
	if r.status != 200 || !changeDateRE.MatchString(r.body) {
		t.Fatalf("activate: %d %s", r.status, r.body)
	}
	if v, err := e.store.GetOrg(context.Background(), "100"); err != nil || v.Record.Disabled != 0 {
		t.Fatalf("org after activate = %+v, %v", v, err)
	}
	r = e.do("POST", "/v2/organizations/100/activate", "{}", bearer(tokA), ctJSON)
	if want := zitadelError(9, "DEACT-NotDeactivated", "org 100: not deactivated"); r.status != 400 || r.body != want {
		t.Errorf("second activate: %d %s", r.status, r.body)
	}

	// v1 and v2 are two spellings of one state: deactivated through v1, activated through v2.
	if r := e.do("POST", "/management/v1/orgs/me/_deactivate", "{}", bearer(tokA), ctJSON); r.status != 200 {
		t.Fatalf("v1 deactivate: %d %s", r.status, r.body)
	}
	if r := e.do("POST", "/v2/organizations/100/activate?confirmTimeout=5s", "", bearer(tokA)); r.status != 200 || !changeDateRE.MatchString(r.body) {
		t.Fatalf("v2 activate after v1 deactivate: %d %s", r.status, r.body)
	}
	if msgs := e.errors.take(); len(msgs) > 0 {
		t.Errorf("error-level logs: %q", msgs)
	}
}

// TestZitadelRESTQueryNeverNamesTheSubject: on body "*" routes ZITADEL's gateway takes no field from the query,
// so neither does deact; a query field naming another id, or a body value of the wrong type, never moves a write
// away from the path (the class, on v1 and v2 routes).
func TestZitadelRESTQueryNeverNamesTheSubject(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{nodes: 1})
	hdr := []string{bearer(bootstrapToken), "x-zitadel-orgid: 5", "Content-Type: application/json"}
	ctx := context.Background()
	for _, c := range []struct {
		name, path string
		check      func() error
	}{
		{"v1 app", "/management/v1/projects/p1/apps/a1/_deactivate?projectId=p2&appId=a2&app_id=a2&project_id=p2", func() error {
			_, err := e.store.GetApp(ctx, "p1", "a1")
			return err
		}},
		{"v1 project", "/management/v1/projects/p3/_deactivate?id=p4", func() error {
			_, err := e.store.GetProject(ctx, "p3")
			return err
		}},
		{"v2 org", "/v2/organizations/5/deactivate?organizationId=6&organization_id=6", func() error {
			_, err := e.store.GetOrg(ctx, "5")
			return err
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			if r := e.do("POST", c.path, "{}", hdr...); r.status != 200 {
				t.Fatalf("%d %s", r.status, r.body)
			}
			if err := c.check(); err != nil {
				t.Errorf("the path's subject was not written: %v", err)
			}
		})
	}
	for _, miss := range []error{
		func() error { _, err := e.store.GetApp(ctx, "p2", "a2"); return err }(),
		func() error { _, err := e.store.GetApp(ctx, "p1", "a2"); return err }(),
		func() error { _, err := e.store.GetProject(ctx, "p4"); return err }(),
		func() error { _, err := e.store.GetOrg(ctx, "6"); return err }(),
	} {
		if miss != state.ErrNotFound {
			t.Errorf("a query id was written: %v", miss)
		}
	}
	// A body value of the wrong type is a 400 on v1 routes too, never a 500.
	before := e.stateRevision(t)
	r := e.do("POST", "/management/v1/projects/p3/_reactivate", `{"id":3}`, hdr...)
	if r.status != 400 || !strings.HasPrefix(r.body, `{"code":3,"message":"the request body does not fit ReactivateProjectRequest: `) {
		t.Errorf("number for the id: %d %s", r.status, r.body)
	}
	if e.stateRevision(t) != before {
		t.Error("a refused request wrote")
	}
}

func grpcDetailID(err error) string {
	for _, d := range grpcstatus.Convert(err).Details() {
		if ed, ok := d.(*zitadel.ErrorDetail); ok {
			return ed.GetId()
		}
	}
	return ""
}

// TestZitadelV2GRPC drives the three v2 services with a real gRPC client: org by its explicit id, projects and
// apps in the org of x-zitadel-orgid, with ZITADEL's codes for every refusal.
func TestZitadelV2GRPC(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{nodes: 3})
	tokA := e.token("token-for-org-a-only-123", state.Token{Name: "a", HomeOrg: "100", Orgs: []string{"100"}, Role: state.RoleAdmin})
	tokRO := e.token("read-only-token-for-a-123", state.Token{Name: "ro", HomeOrg: "7", Orgs: []string{"7"}, Role: state.RoleReadOnly})
	tokAB := e.token("token-for-orgs-a-and-b-12", state.Token{Name: "ab", HomeOrg: "100", Orgs: []string{"100", "200"}, Role: state.RoleAdmin})
	conn, err := grpc.NewClient(e.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	as := func(tok, org string) context.Context {
		var kv []string
		if org != "" {
			kv = append(kv, "x-zitadel-orgid", org)
		}
		if tok != "" {
			kv = append(kv, "authorization", "Bearer "+tok)
		}
		return metadata.AppendToOutgoingContext(context.Background(), kv...)
	}
	const (
		orgSvc = "/" + orgconnect.OrganizationServiceName + "/"
		prjSvc = "/" + projectconnect.ProjectServiceName + "/"
		appSvc = "/" + applicationconnect.ApplicationServiceName + "/"
	)

	// Org by id: x-zitadel-orgid (8) is not consulted.
	var dresp org.DeactivateOrganizationResponse
	var hdr metadata.MD
	if err := conn.Invoke(as(bootstrapToken, "8"), orgSvc+"DeactivateOrganization", &org.DeactivateOrganizationRequest{OrganizationId: "7"}, &dresp, grpc.Header(&hdr)); err != nil {
		t.Fatal(err)
	}
	if dresp.GetChangeDate().AsTime().IsZero() {
		t.Errorf("no change date: %v", &dresp)
	}
	if got := hdr.Get("x-deact-confirmed"); len(got) != 1 || got[0] != "3/3" {
		t.Errorf("x-deact-confirmed = %q", got)
	}
	if v, err := e.store.GetOrg(context.Background(), "7"); err != nil || v.Record.Disabled != state.OpLogin|state.OpToken ||
		!v.Record.ChangedAt.Equal(dresp.GetChangeDate().AsTime()) {
		t.Fatalf("org 7 = %+v %v", v, err)
	}
	if _, err := e.store.GetOrg(context.Background(), "8"); err != state.ErrNotFound {
		t.Errorf("org 8 written: %v", err)
	}

	type call struct {
		name   string
		ctx    context.Context
		method string
		req    proto.Message
		resp   proto.Message
		code   codes.Code
		id     string // ErrorDetail id on failure
	}
	calls := []call{
		{"org again", as(bootstrapToken, "8"), orgSvc + "DeactivateOrganization", &org.DeactivateOrganizationRequest{OrganizationId: "7"}, &org.DeactivateOrganizationResponse{}, codes.FailedPrecondition, "DEACT-AlreadyDeactivated"},
		{"org activate", as(bootstrapToken, ""), orgSvc + "ActivateOrganization", &org.ActivateOrganizationRequest{OrganizationId: "7"}, &org.ActivateOrganizationResponse{}, codes.OK, ""},
		{"org activate again", as(bootstrapToken, ""), orgSvc + "ActivateOrganization", &org.ActivateOrganizationRequest{OrganizationId: "7"}, &org.ActivateOrganizationResponse{}, codes.FailedPrecondition, "DEACT-NotDeactivated"},
		{"org empty id", as(bootstrapToken, "7"), orgSvc + "DeactivateOrganization", &org.DeactivateOrganizationRequest{}, &org.DeactivateOrganizationResponse{}, codes.InvalidArgument, "DEACT-NoOrg"},
		{"org bad id", as(bootstrapToken, ""), orgSvc + "DeactivateOrganization", &org.DeactivateOrganizationRequest{OrganizationId: "7/8"}, &org.DeactivateOrganizationResponse{}, codes.InvalidArgument, "DEACT-InvalidID"},
		{"org of another token", as(tokA, "100"), orgSvc + "DeactivateOrganization", &org.DeactivateOrganizationRequest{OrganizationId: "7"}, &org.DeactivateOrganizationResponse{}, codes.PermissionDenied, "DEACT-OrgNotAllowed"},
		{"org no token", as("", ""), orgSvc + "DeactivateOrganization", &org.DeactivateOrganizationRequest{OrganizationId: "7"}, &org.DeactivateOrganizationResponse{}, codes.Unauthenticated, "DEACT-NoToken"},
		{"org read-only", as(tokRO, ""), orgSvc + "DeactivateOrganization", &org.DeactivateOrganizationRequest{OrganizationId: "7"}, &org.DeactivateOrganizationResponse{}, codes.PermissionDenied, "DEACT-ReadOnly"},

		{"project", as(bootstrapToken, "7"), prjSvc + "DeactivateProject", &project.DeactivateProjectRequest{ProjectId: "p1"}, &project.DeactivateProjectResponse{}, codes.OK, ""},
		{"project again", as(bootstrapToken, "7"), prjSvc + "DeactivateProject", &project.DeactivateProjectRequest{ProjectId: "p1"}, &project.DeactivateProjectResponse{}, codes.FailedPrecondition, "DEACT-AlreadyDeactivated"},
		{"project of another org", as(bootstrapToken, "8"), prjSvc + "ActivateProject", &project.ActivateProjectRequest{ProjectId: "p1"}, &project.ActivateProjectResponse{}, codes.NotFound, "DEACT-NotFound"},
		{"project activate", as(bootstrapToken, "7"), prjSvc + "ActivateProject", &project.ActivateProjectRequest{ProjectId: "p1"}, &project.ActivateProjectResponse{}, codes.OK, ""},
		{"project activate again", as(bootstrapToken, "7"), prjSvc + "ActivateProject", &project.ActivateProjectRequest{ProjectId: "p1"}, &project.ActivateProjectResponse{}, codes.FailedPrecondition, "DEACT-NotDeactivated"},
		{"project unknown", as(bootstrapToken, "7"), prjSvc + "ActivateProject", &project.ActivateProjectRequest{ProjectId: "nope"}, &project.ActivateProjectResponse{}, codes.NotFound, "DEACT-NotFound"},
		{"project empty id", as(bootstrapToken, "7"), prjSvc + "DeactivateProject", &project.DeactivateProjectRequest{}, &project.DeactivateProjectResponse{}, codes.InvalidArgument, "DEACT-InvalidID"},
		{"project in a foreign org", as(tokA, "7"), prjSvc + "DeactivateProject", &project.DeactivateProjectRequest{ProjectId: "p9"}, &project.DeactivateProjectResponse{}, codes.PermissionDenied, "DEACT-OrgNotAllowed"},
		{"project without org", as(bootstrapToken, ""), prjSvc + "DeactivateProject", &project.DeactivateProjectRequest{ProjectId: "p9"}, &project.DeactivateProjectResponse{}, codes.InvalidArgument, "DEACT-NoOrg"},

		{"app", as(bootstrapToken, "7"), appSvc + "DeactivateApplication", &application.DeactivateApplicationRequest{ProjectId: "p1", ApplicationId: "a1"}, &application.DeactivateApplicationResponse{}, codes.OK, ""},
		{"app again", as(bootstrapToken, "7"), appSvc + "DeactivateApplication", &application.DeactivateApplicationRequest{ProjectId: "p1", ApplicationId: "a1"}, &application.DeactivateApplicationResponse{}, codes.FailedPrecondition, "DEACT-AlreadyDeactivated"},
		{"app of another org", as(bootstrapToken, "8"), appSvc + "ReactivateApplication", &application.ReactivateApplicationRequest{ProjectId: "p1", ApplicationId: "a1"}, &application.ReactivateApplicationResponse{}, codes.NotFound, "DEACT-NotFound"},
		{"app reactivate", as(bootstrapToken, "7"), appSvc + "ReactivateApplication", &application.ReactivateApplicationRequest{ProjectId: "p1", ApplicationId: "a1"}, &application.ReactivateApplicationResponse{}, codes.OK, ""},
		{"app reactivate again", as(bootstrapToken, "7"), appSvc + "ReactivateApplication", &application.ReactivateApplicationRequest{ProjectId: "p1", ApplicationId: "a1"}, &application.ReactivateApplicationResponse{}, codes.FailedPrecondition, "DEACT-NotDeactivated"},
		{"app unknown", as(bootstrapToken, "7"), appSvc + "ReactivateApplication", &application.ReactivateApplicationRequest{ProjectId: "p1", ApplicationId: "nope"}, &application.ReactivateApplicationResponse{}, codes.NotFound, "DEACT-NotFound"},
		{"app without project", as(bootstrapToken, "7"), appSvc + "DeactivateApplication", &application.DeactivateApplicationRequest{ApplicationId: "a1"}, &application.DeactivateApplicationResponse{}, codes.InvalidArgument, "DEACT-InvalidID"},
		{"app bad id", as(bootstrapToken, "7"), appSvc + "DeactivateApplication", &application.DeactivateApplicationRequest{ProjectId: "p1", ApplicationId: ".."}, &application.DeactivateApplicationResponse{}, codes.InvalidArgument, "DEACT-InvalidID"},
		{"app no token", as("", "7"), appSvc + "DeactivateApplication", &application.DeactivateApplicationRequest{ProjectId: "p1", ApplicationId: "a1"}, &application.DeactivateApplicationResponse{}, codes.Unauthenticated, "DEACT-NoToken"},
		{"app bad token", as("not-a-token-at-all", "7"), appSvc + "DeactivateApplication", &application.DeactivateApplicationRequest{ProjectId: "p1", ApplicationId: "a1"}, &application.DeactivateApplicationResponse{}, codes.Unauthenticated, "DEACT-BadToken"},
		{"app read-only", as(tokRO, "7"), appSvc + "DeactivateApplication", &application.DeactivateApplicationRequest{ProjectId: "p1", ApplicationId: "a1"}, &application.DeactivateApplicationResponse{}, codes.PermissionDenied, "DEACT-ReadOnly"},
		{"app in a foreign org", as(tokA, "7"), appSvc + "DeactivateApplication", &application.DeactivateApplicationRequest{ProjectId: "p1", ApplicationId: "a1"}, &application.DeactivateApplicationResponse{}, codes.PermissionDenied, "DEACT-OrgNotAllowed"},
	}
	// Without x-zitadel-orgid, a known project or app acts in its own org when the token may act there (v2 clients
	// send no org: ZITADEL checks the resource's owner); outside the token's scope it is NOT_FOUND, as in v1.
	calls = append(calls, []call{
		{"project of org 200", as(bootstrapToken, "200"), prjSvc + "DeactivateProject", &project.DeactivateProjectRequest{ProjectId: "pB"}, &project.DeactivateProjectResponse{}, codes.OK, ""},
		{"project in its own org, multi-org token", as(tokAB, ""), prjSvc + "ActivateProject", &project.ActivateProjectRequest{ProjectId: "pB"}, &project.ActivateProjectResponse{}, codes.OK, ""},
		{"project in its own org, token without home org", as(bootstrapToken, ""), prjSvc + "DeactivateProject", &project.DeactivateProjectRequest{ProjectId: "pB"}, &project.DeactivateProjectResponse{}, codes.OK, ""},
		{"project outside the token's scope", as(tokA, ""), prjSvc + "ActivateProject", &project.ActivateProjectRequest{ProjectId: "pB"}, &project.ActivateProjectResponse{}, codes.NotFound, "DEACT-NotFound"},
		{"header beats the record's org", as(tokAB, "100"), prjSvc + "ActivateProject", &project.ActivateProjectRequest{ProjectId: "pB"}, &project.ActivateProjectResponse{}, codes.NotFound, "DEACT-NotFound"},
		{"unknown project goes to the home org", as(tokAB, ""), prjSvc + "DeactivateProject", &project.DeactivateProjectRequest{ProjectId: "pA"}, &project.DeactivateProjectResponse{}, codes.OK, ""},
		{"app of org 200", as(tokAB, "200"), appSvc + "DeactivateApplication", &application.DeactivateApplicationRequest{ProjectId: "pB", ApplicationId: "aB"}, &application.DeactivateApplicationResponse{}, codes.OK, ""},
		{"app in its own org", as(tokAB, ""), appSvc + "ReactivateApplication", &application.ReactivateApplicationRequest{ProjectId: "pB", ApplicationId: "aB"}, &application.ReactivateApplicationResponse{}, codes.OK, ""},
		{"app outside the token's scope", as(tokA, ""), appSvc + "DeactivateApplication", &application.DeactivateApplicationRequest{ProjectId: "pB", ApplicationId: "aB"}, &application.DeactivateApplicationResponse{}, codes.NotFound, "DEACT-NotFound"},
	}...)
	for _, c := range calls { // in order: each call starts from the state the ones before it left
		t.Run(c.name, func(t *testing.T) {
			before := e.stateRevision(t)
			err := conn.Invoke(c.ctx, c.method, c.req, c.resp)
			if code := grpcstatus.Code(err); code != c.code {
				t.Fatalf("%v, want %v", err, c.code)
			}
			if c.code != codes.OK {
				if id := grpcDetailID(err); id != c.id {
					t.Errorf("detail id %q, want %q (%v)", id, c.id, err)
				}
				if e.stateRevision(t) != before {
					t.Error("a refused call wrote")
				}
			}
		})
	}
	// Refusing a record outside the token's scope does not name its owner.
	err = conn.Invoke(as(tokA, ""), appSvc+"DeactivateApplication", &application.DeactivateApplicationRequest{ProjectId: "pB", ApplicationId: "aB"}, &application.DeactivateApplicationResponse{})
	if msg := grpcstatus.Convert(err).Message(); strings.Contains(msg, "200") {
		t.Errorf("the refusal names the owner: %q", msg)
	}
	for _, want := range []struct{ project, org string }{{"p1", "7"}, {"pB", "200"}, {"pA", "100"}} {
		if v, err := e.store.GetProject(context.Background(), want.project); err != nil || v.Record.OrgID != want.org {
			t.Errorf("project %s = %+v %v, want org %s", want.project, v, err, want.org)
		}
	}
	if a, err := e.store.GetApp(context.Background(), "pB", "aB"); err != nil || a.Record.OrgID != "200" || a.Record.IsDeactivated() {
		t.Errorf("app aB = %+v %v", a, err)
	}
	p, err := e.store.GetProject(context.Background(), "p1")
	if err != nil || p.Record.OrgID != "7" || p.Record.IsDeactivated() {
		t.Errorf("project p1 = %+v %v", p, err)
	}
	a, err := e.store.GetApp(context.Background(), "p1", "a1")
	if err != nil || a.Record.OrgID != "7" || a.Record.IsDeactivated() {
		t.Errorf("app a1 = %+v %v", a, err)
	}
	if msgs := e.errors.take(); len(msgs) > 0 {
		t.Errorf("error-level logs: %q", msgs)
	}
}

// TestZitadelV2GRPCWebAndConnect: the generated clients of the three v2 services over gRPC-Web, Connect (binary
// and JSON) and gRPC; the answers carry the dates and confirmation headers, the refusals ZITADEL's ErrorDetail.
func TestZitadelV2GRPCWebAndConnect(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{nodes: 1})
	for _, c := range e.transports() {
		t.Run(c.name, func(t *testing.T) {
			orgID := "org-" + c.name
			set := func(h http.Header) {
				h.Set("Authorization", "Bearer "+bootstrapToken)
				h.Set("x-zitadel-orgid", orgID)
			}
			check := func(what string, hdr http.Header, date interface{ AsTime() time.Time }) {
				t.Helper()
				if date.AsTime().Before(time.Now().Add(-time.Minute)) {
					t.Errorf("%s: date %v", what, date.AsTime())
				}
				if hdr.Get("X-Deact-Confirmed") != "1/1" {
					t.Errorf("%s: confirmed = %q", what, hdr.Get("X-Deact-Confirmed"))
				}
			}
			refused := func(what string, err error, want connect.Code, id string) {
				t.Helper()
				var ce *connect.Error
				if connect.CodeOf(err) != want || !asConnect(err, &ce) || len(ce.Details()) != 1 {
					t.Fatalf("%s: %v, want %v", what, err, want)
				}
				msg, derr := ce.Details()[0].Value()
				if derr != nil || msg.(*zitadel.ErrorDetail).GetId() != id {
					t.Errorf("%s: detail = %v %v", what, msg, derr)
				}
			}

			orgs := orgconnect.NewOrganizationServiceClient(c.client, e.url, c.opts...)
			oreq := connect.NewRequest(&org.DeactivateOrganizationRequest{OrganizationId: orgID})
			set(oreq.Header())
			oresp, err := orgs.DeactivateOrganization(context.Background(), oreq)
			if err != nil {
				t.Fatal(err)
			}
			check("org", oresp.Header(), oresp.Msg.GetChangeDate())
			_, err = orgs.DeactivateOrganization(context.Background(), oreq)
			refused("org again", err, connect.CodeFailedPrecondition, "DEACT-AlreadyDeactivated")

			projects := projectconnect.NewProjectServiceClient(c.client, e.url, c.opts...)
			preq := connect.NewRequest(&project.DeactivateProjectRequest{ProjectId: "p-" + c.name})
			set(preq.Header())
			presp, err := projects.DeactivateProject(context.Background(), preq)
			if err != nil {
				t.Fatal(err)
			}
			check("project", presp.Header(), presp.Msg.GetChangeDate())
			areq := connect.NewRequest(&project.ActivateProjectRequest{ProjectId: "unknown"})
			set(areq.Header())
			_, err = projects.ActivateProject(context.Background(), areq)
			refused("unknown project", err, connect.CodeNotFound, "DEACT-NotFound")

			apps := applicationconnect.NewApplicationServiceClient(c.client, e.url, c.opts...)
			dreq := connect.NewRequest(&application.DeactivateApplicationRequest{ProjectId: "p-" + c.name, ApplicationId: "app-" + c.name})
			set(dreq.Header())
			dresp, err := apps.DeactivateApplication(context.Background(), dreq)
			if err != nil {
				t.Fatal(err)
			}
			check("app", dresp.Header(), dresp.Msg.GetDeactivationDate())
			_, err = apps.DeactivateApplication(context.Background(), dreq)
			refused("app again", err, connect.CodeFailedPrecondition, "DEACT-AlreadyDeactivated")
			rreq := connect.NewRequest(&application.ReactivateApplicationRequest{ProjectId: "p-" + c.name, ApplicationId: "app-" + c.name})
			set(rreq.Header())
			rresp, err := apps.ReactivateApplication(context.Background(), rreq)
			if err != nil {
				t.Fatal(err)
			}
			check("app reactivation", rresp.Header(), rresp.Msg.GetReactivationDate())
			noTok := connect.NewRequest(&application.ReactivateApplicationRequest{ProjectId: "p-" + c.name, ApplicationId: "app-" + c.name})
			_, err = apps.ReactivateApplication(context.Background(), noTok)
			refused("no token", err, connect.CodeUnauthenticated, "DEACT-NoToken")
		})
	}
}

// TestZitadelV2ConnectByHand: Connect unary calls as curl sends them (JSON, no Connect-Protocol-Version header),
// which ZITADEL's connect-go server accepts.
func TestZitadelV2ConnectByHand(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{nodes: 1})
	hdr := []string{bearer(bootstrapToken), "x-zitadel-orgid: 12", "Content-Type: application/json"}
	for _, c := range []struct {
		name, path, body string
		status           int
		want             *regexp.Regexp
	}{
		{"deactivate, unknown field ignored", "/zitadel.project.v2.ProjectService/DeactivateProject", `{"projectId":"p1","note":"x"}`, 200,
			regexp.MustCompile(`^\{"changeDate":"[^"]+Z"\}$`)},
		{"already deactivated", "/zitadel.project.v2.ProjectService/DeactivateProject", `{"project_id":"p1"}`, 400,
			regexp.MustCompile(`^\{"code":"failed_precondition","message":"project p1: already deactivated \(DEACT-AlreadyDeactivated\)","details":\[\{"type":"zitadel.v1.ErrorDetail"`)},
		{"early ZITADEL field name", "/zitadel.project.v2.ProjectService/ActivateProject", `{"id":"p1"}`, 400,
			regexp.MustCompile(`^\{"code":"invalid_argument","message":"invalid id: project id is empty \(DEACT-InvalidID\)"`)},
		{"wrong type", "/zitadel.application.v2.ApplicationService/DeactivateApplication", `{"projectId":"p1","applicationId":7}`, 400,
			regexp.MustCompile(`^\{"code":"invalid_argument","message":"the request body does not fit DeactivateApplicationRequest: `)},
		{"app", "/zitadel.application.v2.ApplicationService/DeactivateApplication", `{"projectId":"p1","applicationId":"a7"}`, 200,
			regexp.MustCompile(`^\{"deactivationDate":"[^"]+Z"\}$`)},
		{"org", "/zitadel.org.v2.OrganizationService/DeactivateOrganization", `{"organizationId":"13"}`, 200,
			regexp.MustCompile(`^\{"changeDate":"[^"]+Z"\}$`)},
		{"bad json, in Connect's error shape", "/zitadel.org.v2.OrganizationService/DeactivateOrganization", `{"organizationId":`, 400,
			regexp.MustCompile(`^\{"code":"invalid_argument","message":"the request body is not a JSON object \(DEACT-BadBody\)","details":\[\{"type":"zitadel.v1.ErrorDetail"`)},
		{"unknown method", "/zitadel.org.v2.OrganizationService/DeleteOrganization", `{"organizationId":"13"}`, 404,
			regexp.MustCompile(`"code":"unimplemented"|"code":5`)},
	} {
		r := e.do("POST", c.path, c.body, hdr...)
		if r.status != c.status || !c.want.MatchString(r.body) {
			t.Errorf("%s: %d %s", c.name, r.status, r.body)
		}
	}
	if v, err := e.store.GetOrg(context.Background(), "13"); err != nil || v.Record.Disabled == 0 {
		t.Errorf("org 13 = %+v %v", v, err)
	}
}

// FuzzZitadelV2OrgREST: whatever the path segment, query and body, a v2 org call answers in ZITADEL's shape,
// never with a 5xx, and a successful one wrote exactly the org its path names.
func FuzzZitadelV2OrgREST(f *testing.F) {
	for _, s := range [][3]string{
		{"100", "", "{}"}, {"100", "organizationId=200", `{"organizationId":"300"}`}, {"", "", `{"organizationId":"1"}`},
		{"..", "", "{}"}, {"a%2Fb", "", "{}"}, {"a%20b", "", ""}, {"%31", "", "{}"}, {"1", "confirmTimeout=0", `{"organizationId":1}`},
		{"1", "", "["}, {"x/y", "", "{}"}, {"%2e%2e", "", "{}"}, {"\u00e9", "", "{}"}, {"\xe6", "\xf3", ""}, {"%ff", "", "{}"},
	} {
		f.Add(s[0], s[1], s[2])
	}
	e := newEnv(f, envOpts{nodes: 1})
	h := e.api.Handler()
	f.Fuzz(func(t *testing.T, seg, query, body string) {
		target := "/v2/organizations/" + seg + "/deactivate"
		if query != "" {
			target += "?" + query
		}
		req, err := http.NewRequest("POST", "http://deact"+target, strings.NewReader(body))
		if err != nil {
			return
		}
		req.Header.Set("Authorization", "Bearer "+bootstrapToken)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set(adminapi.HeaderConfirmTimeout, "0")
		// The org the path names, as the server decodes it (read now: the handler rewrites the request's URL).
		id, idErr := url.PathUnescape(strings.TrimSuffix(strings.TrimPrefix(req.URL.EscapedPath(), "/v2/organizations/"), "/deactivate"))
		before := e.stateRevision(t)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code >= 500 || !strings.HasPrefix(w.Header().Get("Content-Type"), "application/json") {
			t.Fatalf("%s %q: %d %s %s", target, body, w.Code, w.Header().Get("Content-Type"), w.Body)
		}
		if w.Code != 200 {
			if !strings.HasPrefix(w.Body.String(), `{"code":`) {
				t.Fatalf("%s %q: %d %s", target, body, w.Code, w.Body)
			}
			if e.stateRevision(t) != before {
				t.Fatalf("%s %q: refused with %d but wrote", target, body, w.Code)
			}
			return
		}
		// The org the path names is the one written, at the latest revision.
		if idErr != nil {
			t.Fatalf("%s answered 200 with an undecodable segment", target)
		}
		v, err := e.store.GetOrg(context.Background(), id)
		if err != nil || v.Record.Disabled == 0 || v.Revision != e.stateRevision(t) {
			t.Fatalf("%s %q: 200 but org %q = %+v %v (revision %d)", target, body, id, v, err, e.stateRevision(t))
		}
	})
}
