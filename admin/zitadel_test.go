package admin_test

import (
	"context"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/deact/deact/admin/proto/zitadel"
	management "github.com/deact/deact/admin/proto/zitadel/management/v1"
	"github.com/deact/deact/admin/proto/zitadel/management/v1/managementconnect"
	"github.com/deact/deact/internal/wait"
	"github.com/deact/deact/state"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	grpcstatus "google.golang.org/grpc/status"
)

// zitadelError is the exact REST error body ZITADEL clients parse.
func zitadelError(code int, id, msg string) string {
	return fmt.Sprintf(`{"code":%d,"message":"%s (%s)","details":[{"@type":"type.googleapis.com/zitadel.v1.ErrorDetail","id":"%s","message":"%s"}]}`,
		code, msg, id, id, msg)
}

// restCase is one REST call of a ZITADEL API and its exact answer; none of them may write anything.
type restCase struct {
	name, method, path, body string
	headers                  []string
	status                   int
	want                     string
}

// runREST sends each case as a subtest, with headers added, and checks its exact answer and that revision did
// not move.
func (e *env) runREST(t *testing.T, cases []restCase, revision func() int64, headers ...string) {
	t.Helper()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := revision()
			r := e.do(c.method, c.path, c.body, append(c.headers, headers...)...)
			if r.status != c.status || r.body != c.want {
				t.Errorf("got %d %s\nwant %d %s", r.status, r.body, c.status, c.want)
			}
			if after := revision(); after != before {
				t.Errorf("etcd revision moved %d -> %d", before, after)
			}
		})
	}
}

// checkConfirmed checks the confirmation headers of a write: want is "confirmed/total".
func checkConfirmed(t *testing.T, r response, want string) {
	t.Helper()
	if got := r.header.Get("X-Deact-Confirmed"); got != want {
		t.Errorf("X-Deact-Confirmed = %q, want %s", got, want)
	}
	if r.header.Get("X-Deact-Confirm-Wait-Ms") == "" {
		t.Error("no X-Deact-Confirm-Wait-Ms")
	}
}

var detailsRE = regexp.MustCompile(`^\{"details":\{"sequence":"(\d+)","changeDate":"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z)","resourceOwner":"([^"]+)"\}\}$`)

func TestZitadelREST(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{nodes: 2})
	tokA := e.token("token-for-org-a-only-123", state.Token{Name: "a", HomeOrg: "100", Orgs: []string{"100"}, Role: state.RoleAdmin})
	tokRO := e.token("read-only-token-for-a-123", state.Token{Name: "ro", HomeOrg: "100", Orgs: []string{"100"}, Role: state.RoleReadOnly})
	ctJSON := "Content-Type: application/json"

	// Deactivate my org (the token's home org): ZITADEL's body, the sequence is the etcd revision.
	r := e.do("POST", "/management/v1/orgs/me/_deactivate", "{}", bearer(tokA), ctJSON)
	if r.status != 200 {
		t.Fatalf("deactivate: %d %s", r.status, r.body)
	}
	m := detailsRE.FindStringSubmatch(r.body)
	if m == nil || m[4] != "100" {
		t.Fatalf("deactivate body = %s", r.body)
	}
	checkConfirmed(t, r, "2/2")
	v, err := e.store.GetOrg(context.Background(), "100")
	if err != nil || v.Record.Disabled != state.OpLogin|state.OpToken || fmt.Sprint(v.Revision) != m[1] {
		t.Fatalf("stored org = %+v, %v; sequence %s", v, err, m[1])
	}

	cases := []restCase{
		{"already deactivated", "POST", "/management/v1/orgs/me/_deactivate", "{}", []string{bearer(tokA)}, 400,
			zitadelError(9, "DEACT-AlreadyDeactivated", "org 100: already deactivated")},
		{"empty body", "POST", "/management/v1/orgs/me/_deactivate", "", []string{bearer(tokA)}, 400,
			zitadelError(9, "DEACT-AlreadyDeactivated", "org 100: already deactivated")},
		{"no token", "POST", "/management/v1/orgs/me/_deactivate", "{}", nil, 401,
			zitadelError(16, "DEACT-NoToken", "authentication required: send a token")},
		{"bad token", "POST", "/management/v1/orgs/me/_deactivate", "{}", []string{bearer("not-a-token-at-all")}, 401,
			zitadelError(16, "DEACT-BadToken", "the token is not valid")},
		{"basic auth is no token", "POST", "/management/v1/orgs/me/_deactivate", "{}", []string{"Authorization: Basic dXNlcjpwYXNz"}, 401,
			zitadelError(16, "DEACT-NoToken", "authentication required: send a token")},
		{"other org", "POST", "/management/v1/orgs/me/_deactivate", "{}", []string{bearer(tokA), "x-zitadel-orgid: 200"}, 403,
			zitadelError(7, "DEACT-OrgNotAllowed", "the token may not act on org 200")},
		{"read-only", "POST", "/management/v1/orgs/me/_reactivate", "{}", []string{bearer(tokRO)}, 403,
			zitadelError(7, "DEACT-ReadOnly", "the token is read-only")},
		{"bad org id", "POST", "/management/v1/orgs/me/_deactivate", "{}", []string{bearer(bootstrapToken), "x-zitadel-orgid: a/b"}, 400,
			zitadelError(3, "DEACT-InvalidID", "invalid id: org id has a character outside [A-Za-z0-9._@:-] at byte 1")},
		{"bad app id", "POST", "/management/v1/projects/p1/apps/a%2Fb/_deactivate", "{}", []string{bearer(tokA)}, 400,
			zitadelError(3, "DEACT-InvalidID", `invalid id: a path segment holds an escaped \"/\"`)},
		{"dotdot project", "POST", "/management/v1/projects/../apps/a1/_deactivate", "{}", []string{bearer(tokA)}, 400,
			zitadelError(3, "DEACT-InvalidID", `invalid id: project id \"..\" is reserved`)},
		{"no org for bootstrap token", "POST", "/management/v1/orgs/me/_deactivate", "{}", []string{bearer(bootstrapToken)}, 400,
			zitadelError(3, "DEACT-NoOrg", "no organization: send the x-zitadel-orgid header (the token has no home org)")},
		{"reactivate unknown app", "POST", "/management/v1/projects/p1/apps/nope/_reactivate", "{}", []string{bearer(tokA)}, 404,
			zitadelError(5, "DEACT-NotFound", "app nope: not found")},
		{"bad confirm timeout", "POST", "/management/v1/orgs/me/_reactivate?confirmTimeout=soon", "{}", []string{bearer(tokA)}, 400,
			zitadelError(3, "DEACT-BadConfirmTimeout", `confirm timeout \"soon\" is neither a duration (\"500ms\") nor milliseconds`)},
	}
	e.runREST(t, cases, e.revision, ctJSON)

	// Reactivate, with the confirmation bound from the query.
	r = e.do("POST", "/management/v1/orgs/me/_reactivate?confirmTimeout=5s", "{}", bearer(tokA), ctJSON)
	if r.status != 200 || !detailsRE.MatchString(r.body) {
		t.Fatalf("reactivate: %d %s", r.status, r.body)
	}
	r = e.do("POST", "/management/v1/orgs/me/_reactivate", "{}", bearer(tokA), ctJSON)
	if want := zitadelError(9, "DEACT-NotDeactivated", "org 100: not deactivated"); r.status != 400 || r.body != want {
		t.Errorf("second reactivate: %d %s", r.status, r.body)
	}

	// Apps and projects, with the org chosen by header for the all-orgs token.
	for _, step := range []struct{ path, owner string }{
		{"/management/v1/projects/p1/apps/a1/_deactivate", "300"},
		{"/management/v1/projects/p1/apps/a1/_reactivate", "300"},
		{"/management/v1/projects/p1/_deactivate", "300"},
		{"/management/v1/projects/p1/_reactivate", "300"},
	} {
		r := e.do("POST", step.path, "{}", bearer(bootstrapToken), "x-zitadel-orgid: 300", ctJSON)
		if m := detailsRE.FindStringSubmatch(r.body); r.status != 200 || m == nil || m[4] != step.owner {
			t.Fatalf("%s: %d %s", step.path, r.status, r.body)
		}
	}
	// The app belongs to org 300: org 100's token neither sees nor touches it.
	r = e.do("POST", "/management/v1/projects/p1/apps/a1/_deactivate", "{}", bearer(tokA), ctJSON)
	if want := zitadelError(5, "DEACT-NotFound", "app a1: not found"); r.status != 404 || r.body != want {
		t.Errorf("foreign app: %d %s", r.status, r.body)
	}

	// Routing mistakes still answer in ZITADEL's shape.
	r = e.do("GET", "/management/v1/orgs/me/_deactivate", "", bearer(tokA))
	if want := zitadelError(12, "DEACT-Method", "Method Not Allowed"); r.status != 405 || r.body != want || r.header.Get("Allow") != "POST" {
		t.Errorf("GET on a POST route: %d %s", r.status, r.body)
	}
	r = e.do("POST", "/management/v1/orgs/me/_deactivate", "{}", bearer(tokA), "Content-Type: text/plain")
	if r.status != 415 || !strings.HasPrefix(r.body, `{"code":3,"message":`) || !strings.Contains(r.body, "zitadel.v1.ErrorDetail") {
		t.Errorf("text/plain body: %d %s", r.status, r.body)
	}
	// Like ZITADEL's gateway, a body sent without a JSON content type (curl -d) is read as JSON.
	r = e.do("POST", "/management/v1/orgs/me/_reactivate", "{}", bearer(tokA), "Content-Type: application/x-www-form-urlencoded")
	if r.status != 400 || !strings.Contains(r.body, `"code":9`) {
		t.Errorf("form-encoded JSON body: %d %s", r.status, r.body)
	}
	r = e.do("POST", "/management/v1/orgs/me/_reactivate", "a=b", bearer(tokA), "Content-Type: application/x-www-form-urlencoded")
	if r.status != 400 || !strings.Contains(r.body, `"code":3`) {
		t.Errorf("form body that is not JSON: %d %s", r.status, r.body)
	}
	r = e.do("POST", "/management/v1/nothing", "{}", bearer(tokA), ctJSON)
	if want := zitadelError(5, "DEACT-NoRoute", "no route for POST /management/v1/nothing"); r.status != 404 || r.body != want {
		t.Errorf("unknown route: %d %s", r.status, r.body)
	}
	if msgs := e.errors.take(); len(msgs) > 0 {
		t.Errorf("error-level logs: %q", msgs)
	}
}

func TestZitadelGRPC(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{nodes: 3})
	conn, err := grpc.NewClient(e.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+bootstrapToken, "x-zitadel-orgid", "7")
	const method = "/" + managementconnect.ManagementServiceName + "/DeactivateOrg"

	var resp management.DeactivateOrgResponse
	var hdr metadata.MD
	if err := conn.Invoke(ctx, method, &management.DeactivateOrgRequest{}, &resp, grpc.Header(&hdr)); err != nil {
		t.Fatal(err)
	}
	d := resp.GetDetails()
	if d.GetSequence() == 0 || d.GetResourceOwner() != "7" || d.GetChangeDate().AsTime().IsZero() {
		t.Fatalf("details = %v", d)
	}
	if got := hdr.Get("x-deact-confirmed"); len(got) != 1 || got[0] != "3/3" {
		t.Errorf("x-deact-confirmed = %q", got)
	}

	err = conn.Invoke(ctx, method, &management.DeactivateOrgRequest{}, &resp)
	st := grpcstatus.Convert(err)
	if st.Code() != codes.FailedPrecondition || st.Message() != "org 7: already deactivated (DEACT-AlreadyDeactivated)" {
		t.Fatalf("second deactivate: %v", err)
	}
	if ds := st.Details(); len(ds) != 1 || ds[0].(*zitadel.ErrorDetail).GetId() != "DEACT-AlreadyDeactivated" {
		t.Errorf("details = %v", ds)
	}

	noAuth := metadata.AppendToOutgoingContext(context.Background(), "x-zitadel-orgid", "7")
	if err := conn.Invoke(noAuth, method, &management.DeactivateOrgRequest{}, &resp); grpcstatus.Code(err) != codes.Unauthenticated {
		t.Errorf("no token: %v", err)
	}
	var app management.ReactivateAppResponse
	err = conn.Invoke(ctx, "/"+managementconnect.ManagementServiceName+"/ReactivateApp", &management.ReactivateAppRequest{ProjectId: "p", AppId: "missing"}, &app)
	if grpcstatus.Code(err) != codes.NotFound {
		t.Errorf("reactivate unknown app: %v", err)
	}
}

// transport is one way a generated connect client reaches the API.
type transport struct {
	name   string
	client *http.Client
	opts   []connect.ClientOption
}

// transports are the wire protocols of ZITADEL's generated clients: gRPC-Web, Connect (binary and JSON) and
// gRPC (over unencrypted HTTP/2).
func (e *env) transports() []transport {
	return []transport{
		{"grpc-web", e.http1, []connect.ClientOption{connect.WithGRPCWeb()}},
		{"connect", e.http1, nil},
		{"connect-json", e.http1, []connect.ClientOption{connect.WithProtoJSON()}},
		{"grpc-h2c", e.h2c, []connect.ClientOption{connect.WithGRPC()}},
	}
}

func TestZitadelGRPCWebAndConnect(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{nodes: 1})
	for _, c := range e.transports() {
		t.Run(c.name, func(t *testing.T) {
			cl := managementconnect.NewManagementServiceClient(c.client, e.url, c.opts...)
			// App IDs are unique per instance (as in ZITADEL): each case has its own.
			project := "p-" + c.name
			req := connect.NewRequest(&management.DeactivateAppRequest{ProjectId: project, AppId: "app-" + c.name})
			req.Header().Set("Authorization", "Bearer "+bootstrapToken)
			req.Header().Set("x-zitadel-orgid", "55")
			resp, err := cl.DeactivateApp(context.Background(), req)
			if err != nil {
				t.Fatal(err)
			}
			if d := resp.Msg.GetDetails(); d.GetResourceOwner() != "55" || d.GetSequence() == 0 {
				t.Fatalf("details = %v", d)
			}
			if resp.Header().Get("X-Deact-Confirmed") != "1/1" {
				t.Errorf("confirmed = %q", resp.Header().Get("X-Deact-Confirmed"))
			}
			_, err = cl.DeactivateApp(context.Background(), req)
			if connect.CodeOf(err) != connect.CodeFailedPrecondition {
				t.Fatalf("second deactivate: %v", err)
			}
			var ce *connect.Error
			if !asConnect(err, &ce) || len(ce.Details()) != 1 {
				t.Fatalf("error details: %v", err)
			}
			msg, derr := ce.Details()[0].Value()
			if derr != nil || msg.(*zitadel.ErrorDetail).GetId() != "DEACT-AlreadyDeactivated" {
				t.Errorf("detail = %v %v", msg, derr)
			}
		})
	}
}

// TestConcurrentDeactivations: of 100 parallel deactivations of one org, exactly one succeeds and the others
// get ZITADEL's already-deactivated error.
func TestConcurrentDeactivations(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{nodes: 1})
	const n = 100
	var wg sync.WaitGroup
	results := make([]response, n)
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			results[i] = e.do("POST", "/management/v1/orgs/me/_deactivate", "{}", bearer(bootstrapToken), "x-zitadel-orgid: 42", "Content-Type: application/json")
		}()
	}
	close(start)
	wg.Wait()
	ok, already := 0, 0
	want := zitadelError(9, "DEACT-AlreadyDeactivated", "org 42: already deactivated")
	for _, r := range results {
		switch {
		case r.status == 200 && detailsRE.MatchString(r.body):
			ok++
		case r.status == 400 && r.body == want:
			already++
		default:
			t.Errorf("unexpected answer %d %s", r.status, r.body)
		}
	}
	if ok != 1 || already != n-1 {
		t.Fatalf("%d succeeded, %d already deactivated; want 1 and %d", ok, already, n-1)
	}
}

// TestConfirmationTimeout: a node that never applies makes the wait end at the bound, and the write still
// stands (200, committed), with the header saying who confirmed. Not parallel: the two live nodes must confirm
// within the 100 ms bound, which other tests' load on a small machine can take away.
func TestConfirmationTimeout(t *testing.T) {
	e := newEnv(t, envOpts{nodes: 2})
	ctx := context.Background()
	lease, err := e.cli.Grant(ctx, 30)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.cli.Put(ctx, state.NodeKey("stuck"), `{"id":"stuck","appliedRevision":1}`, clientv3WithLease(lease.ID)); err != nil {
		t.Fatal(err)
	}
	wait.Eventually(t, "stuck node seen", func() bool { return len(e.fanout.Nodes()) == 3 })
	start := time.Now()
	r := e.do("POST", "/management/v1/orgs/me/_deactivate", "{}", bearer(bootstrapToken), "x-zitadel-orgid: 9",
		"X-Deact-Confirm-Timeout: 100ms", "Content-Type: application/json")
	if r.status != 200 || r.header.Get("X-Deact-Confirmed") != "2/3" {
		t.Fatalf("got %d %q %s", r.status, r.header.Get("X-Deact-Confirmed"), r.body)
	}
	if time.Since(start) > 5*time.Second {
		t.Errorf("the wait was not bounded")
	}
	if v, err := e.store.GetOrg(ctx, "9"); err != nil || v.Record.Disabled == 0 {
		t.Fatalf("write not committed: %+v %v", v, err)
	}
	if !strings.Contains(r.body, `"resourceOwner":"9"`) {
		t.Errorf("body = %s", r.body)
	}
	_, _ = e.cli.Revoke(ctx, lease.ID)
}
