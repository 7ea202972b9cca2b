package authz

import (
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"encoding/binary"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/deact/deact/state"
)

// Issue 14: no request of a deactivated subject gets through. Each class is a table of requests sent as Envoy
// sends them (gRPC Check over loopback) and, where HTTP can carry them, to /check as Envoy's HTTP mode sends
// them, against a real replica of a real etcd in which org 100 (acme, domain acme.example; clients 400, 401,
// 402; accounts 2001, 2002) is deactivated for login and token and org 900 (tenant9) for login and restore.
// Org 101 (other.example) is active.

// trustReq is one request of a trust case.
type trustReq struct {
	method, path, query, body string
	headers                   [][2]string // in order; a name may repeat
	route                     map[string]string
	rawHeaders                bool // send as Envoy's header_map (encode_raw_headers) instead of the merged map
}

type trustCase struct {
	name string
	req  trustReq
	want Reason // ReasonNone: allowed
	// status is the gRPC denied_response status when want is set (0: not checked).
	status int
	noHTTP bool // HTTP cannot carry it (a header the Go client would refuse)
}

func (r trustReq) target() string {
	if r.query != "" {
		return r.path + "?" + r.query
	}
	return r.path
}

func (r trustReq) check() *authv3.CheckRequest {
	return envoyRequest(r.method, r.target(), r.body, r.headers, r.rawHeaders, r.route)
}

// envoyRequest is the CheckRequest Envoy sends for a request with headers in order: as its header_map (raw: names
// as spelled, repeats kept, encode_raw_headers) or as its merged map (names lower-cased, a repeated header's
// values joined with ","), and route as the context extensions.
func envoyRequest(method, target, body string, headers [][2]string, raw bool, route map[string]string) *authv3.CheckRequest {
	h := &authv3.AttributeContext_HttpRequest{Method: method, Path: target, RawBody: []byte(body)}
	if raw {
		hm := &corev3.HeaderMap{}
		for _, kv := range headers {
			hm.Headers = append(hm.Headers, &corev3.HeaderValue{Key: kv[0], RawValue: []byte(kv[1])})
		}
		h.HeaderMap = hm
	} else {
		h.Headers = map[string]string{}
		for _, kv := range headers {
			k := strings.ToLower(kv[0])
			if old, ok := h.Headers[k]; ok {
				h.Headers[k] = old + "," + kv[1]
			} else {
				h.Headers[k] = kv[1]
			}
		}
	}
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Request: &authv3.AttributeContext_Request{Http: h}, ContextExtensions: route}}
}

// http builds the request Envoy's HTTP ext_authz (path_prefix /check) sends: its method, path and body, its
// headers repeated as sent, route facts as X-Deact-* headers.
func (r trustReq) http(t *testing.T, base string) *http.Request {
	t.Helper()
	req, err := http.NewRequest(r.method, base+"/check"+r.target(), strings.NewReader(r.body))
	if err != nil {
		t.Fatal(err)
	}
	for _, kv := range r.headers {
		if strings.EqualFold(kv[0], "content-length") || strings.HasPrefix(kv[0], ":") {
			continue // Go sends the length of what it sends; pseudo-headers are the request line
		}
		req.Header.Add(kv[0], kv[1])
	}
	for k, v := range r.route {
		req.Header.Set("X-Deact-"+strings.ReplaceAll(k, "_", "-"), v)
	}
	return req
}

// trustEnv is the shared state of the trust tests.
func trustEnv(t *testing.T) *env {
	t.Helper()
	e := newEnv(t, Config{})
	e.applied(t, orgOff(orgAcme, state.OpLogin|state.OpToken, false).do(t, e.store))
	e.applied(t, orgOff(orgTenant, state.OpLogin|state.OpRestore, true).do(t, e.store))
	return e
}

func runTrust(t *testing.T, e *env, cases []trustCase) {
	t.Helper()
	srv := httptest.NewServer(e.az.HTTPHandler())
	t.Cleanup(srv.Close)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp := e.check(t, tc.req.check())
			got := ReasonNone
			if resp.GetStatus().GetCode() != int32(codes.OK) {
				got = Reason(resp.GetStatus().GetMessage())
			}
			if got != tc.want {
				t.Errorf("gRPC: reason %q, want %q (body %s)", got, tc.want, resp.GetDeniedResponse().GetBody())
			}
			if tc.status != 0 && int(resp.GetDeniedResponse().GetStatus().GetCode()) != tc.status {
				t.Errorf("gRPC: status %d, want %d", resp.GetDeniedResponse().GetStatus().GetCode(), tc.status)
			}
			if tc.noHTTP || tc.req.rawHeaders && len(tc.req.headers) == 0 {
				return
			}
			hr, err := srv.Client().Do(tc.req.http(t, srv.URL))
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(hr.Body)
			hr.Body.Close()
			hgot := Reason(hr.Header.Get(HeaderReason))
			if hgot != tc.want || (tc.want == ReasonNone) != (hr.StatusCode == 200) {
				t.Errorf("/check: %d reason %q, want %q (body %s)", hr.StatusCode, hgot, tc.want, b)
			}
		})
	}
}

func hdr(kv ...string) [][2]string {
	var out [][2]string
	for i := 0; i+1 < len(kv); i += 2 {
		out = append(out, [2]string{kv[i], kv[i+1]})
	}
	return out
}

const (
	ctForm = "application/x-www-form-urlencoded"
	ctJSON = "application/json"
	ctXML  = "application/xml"
)

// TestTrustPartialBodies (issue 14 item 1): a body the decision depends on that deact did not see whole is
// refused (413 body_incomplete), or denied when what it saw already denies; a compressed or malformed one is
// refused (400 body_unreadable); where the body cannot change the decision, a prefix passes.
func TestTrustPartialBodies(t *testing.T) {
	t.Parallel()
	e := trustEnv(t)
	pad := strings.Repeat("p", 9000)
	token := "grant_type=client_credentials&pad=" + pad + "&client_id=" + "400%40acme-portal"
	cut := func(s string, n int) string { return s[:n] }
	partial := func(body, ct string, whole int) [][2]string {
		return hdr("content-type", ct, HeaderPartialBody, "true", "content-length", strconv.Itoa(whole))
	}
	session := `{"checks":{"user":{"loginName":"bob@acme.example"}},"metadata":{"m":"` + pad + `"}}`
	cvLogin := `<!-- ` + pad + ` --><DM2ContentIndexing_CheckCredentialReq username="tenant9\bob" password="cA=="/>`
	task := `<TMMsg_CreateTaskReq><taskInfo><associations>` + strings.Repeat(`<sourceItem>/data/x/report.pdf</sourceItem>`, 300) +
		`</associations><subTasks><subTask subTaskType="RESTORE" operationType="RESTORE"/></subTasks></taskInfo></TMMsg_CreateTaskReq>`
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	_, _ = zw.Write([]byte(`{"checks":{"user":{"loginName":"bob@acme.example"}}}`))
	_ = zw.Close()
	runTrust(t, e, []trustCase{
		{name: "token form whole, client_id after padding", want: ReasonOrgDeactivated, status: 400,
			req: trustReq{method: "POST", path: "/oauth/v2/token", body: token, headers: hdr("content-type", ctForm)}},
		{name: "token form cut before client_id", want: ReasonBodyIncomplete, status: 413,
			req: trustReq{method: "POST", path: "/oauth/v2/token", body: cut(token, 8192), headers: partial(token, ctForm, len(token))}},
		{name: "token form shorter than Content-Length, no partial header", want: ReasonBodyIncomplete, noHTTP: true,
			req: trustReq{method: "POST", path: "/oauth/v2/token", body: cut(token, 8192),
				headers: hdr("content-type", ctForm, "content-length", strconv.Itoa(len(token)))}},
		{name: "token form not forwarded at all, Content-Length announced", want: ReasonBodyIncomplete, noHTTP: true,
			req: trustReq{method: "POST", path: "/oauth/v2/token", headers: hdr("content-type", ctForm, "content-length", strconv.Itoa(len(token)))}},
		{name: "token form cut, of an active client", want: ReasonBodyIncomplete,
			req: trustReq{method: "POST", path: "/oauth/v2/token", body: cut(token, 40), headers: partial(token, ctForm, len(token))}},
		{name: "token form cut, but Basic auth already names a deactivated client", want: ReasonOrgDeactivated,
			req: trustReq{method: "POST", path: "/oauth/v2/token", body: cut(token, 40),
				headers: append(partial(token, ctForm, len(token)), [2]string{"authorization", "Basic " + basicCLI})}},
		{name: "token form whole, active client", want: ReasonNone,
			req: trustReq{method: "POST", path: "/oauth/v2/token", body: "grant_type=client_credentials&client_id=someone", headers: hdr("content-type", ctForm)}},
		{name: "session whose loginName is followed by long metadata, whole", want: ReasonOrgDeactivated,
			req: trustReq{method: "POST", path: "/v2/sessions", body: session, headers: hdr("content-type", ctJSON)}},
		{name: "session cut in its metadata: the prefix already names the deactivated org", want: ReasonOrgDeactivated,
			req: trustReq{method: "POST", path: "/v2/sessions", body: cut(session, 8192), headers: partial(session, ctJSON, len(session))}},
		{name: "session of an active org cut", want: ReasonBodyIncomplete, status: 413,
			req: trustReq{method: "POST", path: "/v2/sessions", body: cut(strings.Replace(session, "acme", "other", 1), 8192),
				headers: partial(session, ctJSON, len(session))}},
		{name: "Commvault login behind a long XML comment, whole", want: ReasonOrgDeactivated,
			req: trustReq{method: "POST", path: "/webconsole/api/Login", body: cvLogin, headers: hdr("content-type", ctXML)}},
		{name: "Commvault login cut inside the comment", want: ReasonBodyIncomplete, status: 413,
			req: trustReq{method: "POST", path: "/webconsole/api/Login", body: cut(cvLogin, 8192), headers: partial(cvLogin, ctXML, len(cvLogin))}},
		{name: "restore CreateTask of a restore-deactivated org, whole", want: ReasonOrgDeactivated,
			req: trustReq{method: "POST", path: "/webconsole/api/CreateTask", body: task, headers: hdr("content-type", ctXML), route: map[string]string{FactOrgID: orgTenant}}},
		{name: "restore CreateTask of a restore-deactivated org, cut before the subtask", want: ReasonOrgDeactivated,
			req: trustReq{method: "POST", path: "/webconsole/api/CreateTask", body: cut(task, 8192), headers: partial(task, ctXML, len(task)),
				route: map[string]string{FactOrgID: orgTenant}}},
		{name: "restore CreateTask of an active org, cut: the body cannot change the decision", want: ReasonNone,
			req: trustReq{method: "POST", path: "/webconsole/api/CreateTask", body: cut(task, 8192), headers: partial(task, ctXML, len(task)),
				route: map[string]string{FactOrgID: orgOther}}},
		{name: "API upload cut: the body does not matter", want: ReasonNone,
			req: trustReq{method: "PUT", path: "/management/v1/policies/label/logo", body: pad, headers: partial(pad, "image/png", 1<<20)}},
		{name: "gzip-encoded session", want: ReasonBodyUnreadable, status: 400,
			req: trustReq{method: "POST", path: "/v2/sessions", body: gz.String(), headers: hdr("content-type", ctJSON, "content-encoding", "gzip")}},
		{name: "gzip-encoded token form", want: ReasonBodyUnreadable,
			req: trustReq{method: "POST", path: "/oauth/v2/token", body: "\x1f\x8b\x08", headers: hdr("content-type", ctForm, "content-encoding", "gzip")}},
		{name: "malformed session JSON", want: ReasonBodyUnreadable,
			req: trustReq{method: "POST", path: "/v2/sessions", body: `{"checks":{"user":{"loginName":"bob@other.example"`, headers: hdr("content-type", ctJSON)}},
		{name: "Commvault login XML that does not parse", want: ReasonBodyUnreadable,
			req: trustReq{method: "POST", path: "/webconsole/api/Login", body: `<DM2ContentIndexing_CheckCredentialReq username="alice@other.example"`, headers: hdr("content-type", ctXML)}},
		{name: "login v2 server action, multipart form", want: ReasonOrgDeactivated,
			req: trustReq{method: "POST", path: "/ui/v2/login/loginname", headers: hdr("content-type", "multipart/form-data; boundary=XX"),
				body: "--XX\r\nContent-Disposition: form-data; name=\"$ACTION_ID_1\"\r\n\r\n\r\n--XX\r\nContent-Disposition: form-data; name=\"1\"\r\n\r\n" +
					`[{"loginName":"bob@acme.example"}]` + "\r\n--XX--\r\n"}},
		{name: "login v2 server action, text/plain JSON arguments", want: ReasonOrgDeactivated,
			req: trustReq{method: "POST", path: "/ui/v2/login/loginname", headers: hdr("content-type", "text/plain;charset=UTF-8"),
				body: `[{"loginName":"bob@acme.example","organization":"x"}]`}},
		{name: "multipart form that does not parse", want: ReasonBodyUnreadable,
			req: trustReq{method: "POST", path: "/ui/v2/login/loginname", headers: hdr("content-type", "multipart/form-data; boundary=XX"),
				body: "--XX\r\nContent-Disposition: form-data; name=\"loginName\"\r\n\r\nalice@other.example"}},
		{name: "session with more fields than deact reads before its loginName", want: ReasonBodyIncomplete,
			req: trustReq{method: "POST", path: "/v2/sessions", headers: hdr("content-type", ctJSON),
				body: `{"metadata":{` + strings.Repeat(`"k":"v",`, maxBodyItems) + `"k":"v"},"checks":{"user":{"loginName":"bob@other.example"}}}`}},
		{name: "Commvault login behind an XML entity", want: ReasonBodyUnreadable,
			req: trustReq{method: "POST", path: "/webconsole/api/Login", headers: hdr("content-type", ctXML),
				body: `<!DOCTYPE r [<!ENTITY u "tenant9\bob">]><DM2ContentIndexing_CheckCredentialReq username="&u;" password="cA=="/>`}},
		{name: "session of an active org, whole", want: ReasonNone,
			req: trustReq{method: "POST", path: "/v2/sessions", body: strings.Replace(session, "acme", "other", 1), headers: hdr("content-type", ctJSON)}},
	})
}

// TestTrustRepeatedHeaders (issue 14 item 2): every value of a repeated subject-bearing header is checked,
// whether Envoy merged them with "," or sent them apart (header_map), and over /check.
func TestTrustRepeatedHeaders(t *testing.T) {
	t.Parallel()
	e := trustEnv(t)
	dead := e.sign(t, zitadelClaims(orgAcme, clientPortal, projMain))
	liveClaims := zitadelClaims(orgOther, "someone", "nothing")
	liveClaims["sub"] = "9999"
	live := e.sign(t, liveClaims)
	basicActive := base64.StdEncoding.EncodeToString([]byte("someone:x"))
	var cases []trustCase
	for _, raw := range []bool{false, true} {
		mode := "merged"
		if raw {
			mode = "header_map"
		}
		add := func(name string, want Reason, r trustReq) {
			r.rawHeaders = raw
			if raw {
				r.headers = append(hdr(":method", r.method, ":path", r.path), r.headers...)
			}
			cases = append(cases, trustCase{name: mode + ": " + name, want: want, req: r})
		}
		add("a JWT of a deactivated org, then another Authorization", ReasonOrgDeactivated, trustReq{method: "GET", path: "/v2/users/me",
			headers: hdr("Authorization", "Bearer "+dead, "Authorization", "Bearer a.b.c")})
		add("another Authorization, then a JWT of a deactivated org", ReasonOrgDeactivated, trustReq{method: "GET", path: "/v2/users/me",
			headers: hdr("Authorization", "Bearer "+live, "Authorization", "Bearer "+dead)})
		add("two JWTs of active orgs", ReasonNone, trustReq{method: "GET", path: "/v2/users/me",
			headers: hdr("Authorization", "Bearer "+live, "Authorization", "Bearer "+live)})
		add("Basic of an active client, then of a deactivated org's client", ReasonOrgDeactivated, trustReq{method: "POST", path: "/oauth/v2/token",
			headers: hdr("content-type", ctForm, "Authorization", "Basic "+basicActive, "Authorization", "Basic "+basicCLI), body: "grant_type=client_credentials"})
		add("Grpc-Metadata-Authorization (grpc-gateway passes it on as authorization)", ReasonOrgDeactivated, trustReq{method: "GET", path: "/v2/users/me",
			headers: hdr("Grpc-Metadata-Authorization", "Bearer "+dead)})
		add("Authorization and Grpc-Metadata-Authorization", ReasonOrgDeactivated, trustReq{method: "GET", path: "/v2/users/me",
			headers: hdr("Authorization", "Bearer "+live, "Grpc-Metadata-Authorization", "Bearer "+dead)})
		add("x-zitadel-orgid repeated", ReasonOrgDeactivated, trustReq{method: "GET", path: "/management/v1/orgs/me",
			headers: hdr("x-zitadel-orgid", orgOther, "X-Zitadel-Orgid", orgAcme)})
		add("Grpc-Metadata-X-Zitadel-Orgid (grpc-gateway passes it on as x-zitadel-orgid)", ReasonOrgDeactivated, trustReq{method: "GET", path: "/management/v1/orgs/me",
			headers: hdr("x-zitadel-orgid", orgOther, "Grpc-Metadata-X-Zitadel-Orgid", orgAcme)})
		add("Commvault Username repeated", ReasonOrgDeactivated, trustReq{method: "POST", path: "/webconsole/api/Login",
			headers: hdr("Username", "alice@other.example", "Username", `tenant9\bob`)})
		add("Content-Type repeated: the form is read too", ReasonOrgDeactivated, trustReq{method: "POST", path: "/ui/login/loginname",
			headers: hdr("Content-Type", ctJSON, "Content-Type", ctForm), body: "loginName=bob%40acme.example"})
	}
	runTrust(t, e, cases)
}

// grpcFrame wraps a message in a gRPC (or gRPC-Web, Connect streaming) frame.
func grpcFrame(flags byte, msg []byte) []byte {
	out := []byte{flags, 0, 0, 0, 0}
	binary.BigEndian.PutUint32(out[1:], uint32(len(msg)))
	return append(out, msg...)
}

// sessionProto encodes a CreateSessionRequest (checks at field 1) or SetSessionRequest (checks at 3) whose
// CheckUser has field user (1: user_id, 2: login_name) set to v.
func sessionProto(checksField, user protowire.Number, v string) []byte {
	var cu, checks, req []byte
	cu = protowire.AppendTag(cu, user, protowire.BytesType)
	cu = protowire.AppendString(cu, v)
	checks = protowire.AppendTag(checks, 1, protowire.BytesType)
	checks = protowire.AppendBytes(checks, cu)
	if checksField == 3 {
		req = protowire.AppendTag(req, 1, protowire.BytesType) // session_id
		req = protowire.AppendString(req, "s1")
	}
	req = protowire.AppendTag(req, 4, protowire.BytesType) // user_agent / metadata: a field deact skips
	req = protowire.AppendBytes(req, []byte("ignored"))
	req = protowire.AppendTag(req, checksField, protowire.BytesType)
	return protowire.AppendBytes(req, checks)
}

// TestTrustOtherSpellings (issue 14 item 3): the spellings the upstreams accept for the same request are
// decided alike: protojson's proto names, duplicate keys, Connect and gRPC bodies, and the paths servlet
// containers and IIS route.
func TestTrustOtherSpellings(t *testing.T) {
	t.Parallel()
	e := trustEnv(t)
	create := "/zitadel.session.v2.SessionService/CreateSession"
	login := sessionProto(1, 2, "bob@acme.example")
	frame := grpcFrame(0, login)
	tenant := map[string]string{FactOrgID: orgTenant}
	cvHdr := hdr("accept", ctJSON)
	dead := e.sign(t, zitadelClaims(orgAcme, clientPortal, projMain))
	cases := []trustCase{
		{name: "userinfo, the access token in the query", want: ReasonOrgDeactivated,
			req: trustReq{method: "GET", path: "/oidc/v1/userinfo", query: "access_token=" + dead}},
		{name: "userinfo, the access token in the form", want: ReasonOrgDeactivated,
			req: trustReq{method: "POST", path: "/oidc/v1/userinfo", body: "access_token=" + dead, headers: hdr("content-type", ctForm)}},
		{name: "REST session, login_name", want: ReasonOrgDeactivated,
			req: trustReq{method: "POST", path: "/v2/sessions", body: `{"checks":{"user":{"login_name":"bob@acme.example"}}}`, headers: hdr("content-type", ctJSON)}},
		{name: "REST session, user_id of an account of the org", want: ReasonOrgDeactivated,
			req: trustReq{method: "POST", path: "/v2/sessions", body: `{"checks":{"user":{"user_id":"2002"}}}`, headers: hdr("content-type", ctJSON)}},
		{name: "REST session, duplicate loginName, the deactivated one first", want: ReasonOrgDeactivated,
			req: trustReq{method: "POST", path: "/v2/sessions", headers: hdr("content-type", ctJSON),
				body: `{"checks":{"user":{"loginName":"bob@acme.example","loginName":"bob@other.example"}}}`}},
		{name: "REST session, duplicate loginName, the deactivated one last", want: ReasonOrgDeactivated,
			req: trustReq{method: "POST", path: "/v2/sessions", headers: hdr("content-type", ctJSON),
				body: `{"checks":{"user":{"loginName":"bob@other.example"}},"checks":{"user":{"loginName":"bob@acme.example"}}}`}},
		{name: "REST session, escaped key", want: ReasonOrgDeactivated,
			req: trustReq{method: "POST", path: "/v2/sessions", body: `{"checks":{"user":{"login\u004eame":"bob@acme.example"}}}`, headers: hdr("content-type", ctJSON)}},
		{name: "REST SetSession (PATCH)", want: ReasonOrgDeactivated,
			req: trustReq{method: "PATCH", path: "/v2/sessions/s1", body: `{"checks":{"user":{"loginName":"bob@acme.example"}}}`, headers: hdr("content-type", ctJSON)}},
		{name: "login UI form, a JSON-looking body read as the form it is declared", want: ReasonOrgDeactivated,
			req: trustReq{method: "POST", path: "/ui/login/loginname", body: `{"a":1}&loginName=bob%40acme.example`, headers: hdr("content-type", ctForm)}},
		{name: "Connect unary JSON CreateSession", want: ReasonOrgDeactivated,
			req: trustReq{method: "POST", path: create, body: `{"checks":{"user":{"loginName":"bob@acme.example"}}}`, headers: hdr("content-type", ctJSON)}},
		{name: "Connect unary proto CreateSession", want: ReasonOrgDeactivated,
			req: trustReq{method: "POST", path: create, body: string(login), headers: hdr("content-type", "application/proto")}},
		{name: "gRPC CreateSession", want: ReasonOrgDeactivated,
			req: trustReq{method: "POST", path: create, body: string(frame), headers: hdr("content-type", "application/grpc")}},
		{name: "gRPC CreateSession v2beta by user_id", want: ReasonOrgDeactivated,
			req: trustReq{method: "POST", path: "/zitadel.session.v2beta.SessionService/CreateSession",
				body: string(grpcFrame(0, sessionProto(1, 1, "2002"))), headers: hdr("content-type", "application/grpc+proto")}},
		{name: "gRPC SetSession", want: ReasonOrgDeactivated,
			req: trustReq{method: "POST", path: "/zitadel.session.v2.SessionService/SetSession",
				body: string(grpcFrame(0, sessionProto(3, 2, "bob@acme.example"))), headers: hdr("content-type", "application/grpc")}},
		{name: "gRPC-Web CreateSession", want: ReasonOrgDeactivated,
			req: trustReq{method: "POST", path: create, body: string(append(frame, grpcFrame(0x80, nil)...)), headers: hdr("content-type", "application/grpc-web+proto")}},
		{name: "gRPC-Web text CreateSession", want: ReasonOrgDeactivated,
			req: trustReq{method: "POST", path: create, body: base64.StdEncoding.EncodeToString(frame), headers: hdr("content-type", "application/grpc-web-text")}},
		{name: "Connect streaming JSON CreateSession", want: ReasonOrgDeactivated,
			req: trustReq{method: "POST", path: create, body: string(grpcFrame(0, []byte(`{"checks":{"user":{"login_name":"bob@acme.example"}}}`))),
				headers: hdr("content-type", "application/connect+json")}},
		{name: "gRPC compressed frame", want: ReasonBodyUnreadable,
			req: trustReq{method: "POST", path: create, body: string(grpcFrame(1, []byte("\x1f\x8b..."))), headers: hdr("content-type", "application/grpc", "grpc-encoding", "gzip")}},
		{name: "gRPC frame longer than the whole body", want: ReasonBodyUnreadable,
			req: trustReq{method: "POST", path: create, body: string(frame[:len(frame)-3]), headers: hdr("content-type", "application/grpc")}},
		{name: "gRPC frame cut by the proxy", want: ReasonBodyIncomplete,
			req: trustReq{method: "POST", path: create, body: string(frame[:8]), headers: hdr("content-type", "application/grpc", HeaderPartialBody, "true")}},
		{name: "gRPC CreateSession of an active org", want: ReasonNone,
			req: trustReq{method: "POST", path: create, body: string(grpcFrame(0, sessionProto(1, 2, "bob@other.example"))), headers: hdr("content-type", "application/grpc")}},
		{name: "gRPC ListSessions: a body deact does not read", want: ReasonNone,
			req: trustReq{method: "POST", path: "/zitadel.session.v2.SessionService/ListSessions", body: string(grpcFrame(0, []byte{0x0a, 0})), headers: hdr("content-type", "application/grpc")}},
	}
	for _, p := range []string{
		"/webconsole/api/retrieveToClient;jsessionid=0123ABCD",
		"/webconsole/api/retrieveToClient;x",
		"/webconsole;x/api;y/retrieveToClient",
		`\webconsole\api\retrieveToClient`,
		"/webconsole/api%5CretrieveToClient",
		"/webconsole/api%5cretrieveToClient",
		"/webconsole/x/..;/api/retrieveToClient",
		"/webconsole/api/RETRIEVETOCLIENT/",
		"/webconsole/api/retrieve%54oClient",
		"/webconsole//api/./x/../retrieveToClient",
		"/webconsole/api/Subclient/5/action/restore;jsessionid=1",
		`/webconsole/api/Subclient/5/action\restore`,
		"/SearchSvc/CVWebService.svc/Subclient/5/Action/Restore",
		// A Go server sees one segment under /v2 (op api); IIS routes it to a restore. The deny wins.
		`/v2/x\..\..\webconsole\api\retrieveToClient`,
	} {
		cases = append(cases, trustCase{name: "Commvault restore at " + p, want: ReasonOrgDeactivated, noHTTP: strings.Contains(p, `\`),
			req: trustReq{method: "POST", path: p, headers: cvHdr, route: tenant}})
	}
	cases = append(cases,
		trustCase{name: "Commvault login at Login;jsessionid", want: ReasonOrgDeactivated,
			req: trustReq{method: "POST", path: "/webconsole/api/Login;jsessionid=1", body: `{"username":"tenant9\\bob"}`, headers: hdr("content-type", ctJSON)}},
		trustCase{name: "Commvault restore at its own path, active org", want: ReasonNone,
			req: trustReq{method: "POST", path: "/webconsole/api/retrieveToClient;jsessionid=1", headers: cvHdr, route: map[string]string{FactOrgID: orgOther}}},
	)
	runTrust(t, e, cases)
}

func TestServletPath(t *testing.T) {
	for in, want := range map[string]string{
		"/a/b":                      "",
		"/a/b;jsessionid=1":         "/a/b",
		"/a;x/b;y/c":                "/a/b/c",
		`\a\b`:                      "/a/b",
		"/a/..;/b":                  "/b",
		"/a/b;/../c":                "", // Go already removed "b;/.."
		`/v2/x\..\..\webconsole\ok`: "/webconsole/ok",
	} {
		got, ok := servletPath(canonicalPath(in))
		if want == "" {
			if ok {
				t.Errorf("servletPath(%q) = %q, want none", in, got)
			}
			continue
		}
		if !ok || got != want {
			t.Errorf("servletPath(%q) = %q %v, want %q", in, got, ok, want)
		}
	}
	if n := testing.AllocsPerRun(100, func() { _, _ = servletPath("/oauth/v2/token") }); n != 0 {
		t.Errorf("servletPath of a plain path allocates %v times", n)
	}
}
