package authz

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/structpb"
)

// deadOrg is deactivated for every op in testSnapshot.
const deadOrg = "666"

// seedRequest is the flat form of a request the fuzz targets take (fuzz arguments must be basic types).
type seedRequest struct {
	method, path, query, headers, body, op, orgID string
}

// tableSeeds flattens the gRPC table's CheckRequests, with unsigned tokens in place of signed ones.
func tableSeeds(tb testing.TB) []seedRequest {
	var out []seedRequest
	for _, tc := range checkCases() {
		vars := map[string]string{"BASIC_CLI": basicCLI, "BASIC_PORTAL": basicPortal}
		for k, c := range tc.tokens {
			b, _ := json.Marshal(c)
			vars[k] = unsigned(string(b))
		}
		for _, js := range append([]string{tc.req}, tc.passes...) {
			cr := checkRequest(tb, fill(js, vars))
			h := cr.GetAttributes().GetRequest().GetHttp()
			var hdr strings.Builder
			for k, v := range h.GetHeaders() {
				hdr.WriteString(k + ": " + v + "\n")
			}
			path, query, _ := strings.Cut(h.GetPath(), "?")
			body := h.GetBody()
			if len(h.GetRawBody()) > 0 {
				body = string(h.GetRawBody())
			}
			ext := cr.GetAttributes().GetContextExtensions()
			out = append(out, seedRequest{h.GetMethod(), path, query, hdr.String(), body, ext[FactOp], ext[FactOrgID]})
		}
	}
	out = append(out,
		seedRequest{"GET", "/x", "", "x-zitadel-orgid: 1, 666\n", "", "login", ""},
		seedRequest{"POST", "/oauth/v2/%74oken", "client_id=668%40dead", "", "", "", "666"},
		seedRequest{"GET", "/", "", "authorization: Bearer a.b.c\n", "", "api", "666,,x"},
		seedRequest{"POST", "/webconsole/api/CreateTask", "", "content-type: application/xml\n", "<a subTaskType=\"RESTORE\"><b>", "", "666"},
		seedRequest{"GET", "/ui/login/../../oauth/v2/token", "", "", "", "bogus", ""},
		seedRequest{"POST", `/v2/x\..\..\webconsole\api\retrieveToClient;jsessionid=1`, "", "", "", "", "666"},
	)
	return out
}

func parseHeaders(s string) map[string]string {
	h := map[string]string{}
	for line := range strings.SplitSeq(s, "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok {
			h[strings.ToLower(strings.TrimSpace(k))] = strings.TrimSpace(v)
		}
	}
	return h
}

// namesDeadOrg reports whether a comma-separated list names deadOrg.
func namesDeadOrg(s string) bool {
	l := list{s}
	for v, ok := l.next(); ok; v, ok = l.next() {
		if v == deadOrg {
			return true
		}
	}
	return false
}

// FuzzCheck runs arbitrary requests through Check (the conversion and the decision) and Decide: no panic, the
// two agree, and a request whose route facts or x-zitadel-orgid name a deactivated org is never allowed unless
// its op is other.
func FuzzCheck(f *testing.F) {
	for _, s := range tableSeeds(f) {
		f.Add(s.method, s.path, s.query, s.headers, s.body, s.op, s.orgID)
	}
	a := testAuthorizer(f, Config{}, testSnapshot(f), 0)
	f.Fuzz(func(t *testing.T, method, path, query, headers, body, op, orgID string) {
		hdr := parseHeaders(headers)
		ext := map[string]string{}
		if op != "" {
			ext[FactOp] = op
		}
		if orgID != "" {
			ext[FactOrgID] = orgID
		}
		target := path
		if query != "" {
			target += "?" + query
		}
		cr := &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
			Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
				Method: method, Path: target, Headers: hdr, Body: body,
			}},
			ContextExtensions: ext,
		}}
		resp, err := a.Check(context.Background(), cr)
		if err != nil {
			t.Fatalf("Check: %v", err)
		}
		var req Request
		requestFromCheck(cr, &req)
		d, err := a.Decide(&req)
		if err != nil {
			t.Fatal(err)
		}
		allowed := resp.GetStatus().GetCode() == int32(codes.OK)
		if allowed != d.Allow {
			t.Fatalf("Check allowed=%v, Decide %+v", allowed, d)
		}
		if !d.Allow && resp.GetDeniedResponse().GetStatus().GetCode() == 0 {
			t.Fatal("deny without an HTTP status")
		}
		if d.Action != ActionOther && (namesDeadOrg(orgID) || namesDeadOrg(hdr["x-zitadel-orgid"])) && d.Allow {
			t.Fatalf("allowed op %s naming deactivated org %s: %+v", d.Action, deadOrg, d)
		}
		if d.Reason != ReasonBadRouteFact {
			// A path with two readings (a Go server's and a servlet container's) is decided by the reading that
			// denies; Classify, which sees no state, reports the first reading's op.
			if op, _ := a.Classify(&req); op != d.Action {
				if _, two := servletPath(canonicalPath(req.Path)); !two {
					t.Fatalf("Classify op %s, Decide op %s", op, d.Action)
				}
			}
		}
	})
}

// FuzzClassify feeds arbitrary paths, queries, bodies and credentials to the classifier: no panic, and every
// subject it reports has an ID.
func FuzzClassify(f *testing.F) {
	for _, s := range tableSeeds(f) {
		h := parseHeaders(s.headers)
		f.Add(s.method, s.path, s.query, s.body, h["content-type"], h["authorization"], h["username"])
	}
	f.Add("POST", "/v2/sessions", "", `{"checks":{"user":{"loginName":"a@b"}}}`, "application/json", "", "")
	f.Add("POST", "/webconsole/api/login", "", `<DM2ContentIndexing_CheckCredentialReq domain="x" username="y\z"/>`, "application/xml", "", `d\u`)
	f.Add("POST", "/oauth/v2/token", "scope=%zz", "a=%&client_id=%41&scope=urn%3Azitadel%3Aiam%3Aorg%3Aid%3A", "application/x-www-form-urlencoded", "Basic %%%", "@")
	a := testAuthorizer(f, Config{Rules: []Rule{{Path: "/r/{a}/**", Op: "api", Subjects: []SubjectSource{
		{Kind: "login", From: "path", Name: "a"}, {Kind: "org", From: "jwt", Name: "tenant"}, {Kind: "client", From: "form", Name: "c"}}}}},
		testSnapshot(f), 0)
	f.Fuzz(func(t *testing.T, method, path, query, body, contentType, auth, username string) {
		req := &Request{Method: method, Path: path, Query: query, Body: body,
			Headers: map[string]string{"content-type": contentType, "authorization": auth, "username": username}}
		_, subs := a.Classify(req)
		for _, s := range subs {
			if s.ID == "" || s.Kind == SubjectNone {
				t.Fatalf("empty subject %+v", s)
			}
		}
		if _, err := a.Decide(req); err != nil {
			t.Fatal(err)
		}
		_ = canonicalPath(path)
	})
}

// FuzzJWTClaims feeds arbitrary token payloads, as a bearer token and as jwt_authn metadata: no panic, and a
// readable payload whose user org claim names a deactivated org is never allowed on an API route.
func FuzzJWTClaims(f *testing.F) {
	for _, tc := range checkCases() {
		for _, c := range tc.tokens {
			b, _ := json.Marshal(c)
			f.Add(b, "sig")
		}
	}
	for _, p := range []string{
		`{"urn:zitadel:iam:user:resourceowner:id":"666"}`,
		`{"urn:zitadel:iam:user:resourceowner:id":["1","666"],"aud":"670"}`,
		`{"iss":"x","sub":669,"exp":1e300}`,
		`{"exp":"soon","aud":{"a":1},"azp":[[1]]}`,
		`["666"]`, `{"a":`, ``, `null`,
	} {
		f.Add([]byte(p), "")
	}
	a := testAuthorizer(f, Config{}, testSnapshot(f), 0)
	f.Fuzz(func(t *testing.T, payload []byte, sig string) {
		tok := "eyJhbGciOiJFZERTQSJ9." + b64url(string(payload)) + "." + sig
		req := &Request{Method: "GET", Path: "/v2/users/me", Headers: map[string]string{"authorization": "Bearer " + tok}}
		d, err := a.Decide(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = a.claims.parseJWT(tok)
		var m map[string]any
		named := json.Unmarshal(payload, &m) == nil && m["urn:zitadel:iam:user:resourceowner:id"] == deadOrg
		if named && looksLikeJWT(tok) && len(tok) <= a.maxToken && d.Allow {
			t.Fatalf("allowed a token naming deactivated org %s: %+v", deadOrg, d)
		}
		if m == nil {
			return
		}
		st, err := structpb.NewStruct(m)
		if err != nil {
			return
		}
		req.Headers = nil
		req.JWTMetadata = &structpb.Struct{Fields: map[string]*structpb.Value{"payload": structpb.NewStructValue(st)}}
		d, err = a.Decide(req)
		if err != nil {
			t.Fatal(err)
		}
		if named && d.Allow {
			t.Fatalf("allowed jwt_authn claims naming deactivated org %s: %+v", deadOrg, d)
		}
	})
}

// TestRawHeaderMap covers Envoy's encode_raw_headers: headers as a list, repeated ones kept apart.
func TestRawHeaderMap(t *testing.T) {
	t.Parallel()
	a := testAuthorizer(t, Config{}, testSnapshot(t), 0)
	cr := &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{
		Http: &authv3.AttributeContext_HttpRequest{HeaderMap: &corev3.HeaderMap{Headers: []*corev3.HeaderValue{
			{Key: ":method", RawValue: []byte("GET")},
			{Key: ":path", RawValue: []byte("/oauth/v2/authorize?client_id=x")},
			{Key: "X-Zitadel-OrgID", RawValue: []byte("1")},
			{Key: "x-zitadel-orgid", RawValue: []byte(deadOrg)},
		}}},
	}}}
	resp, err := a.Check(context.Background(), cr)
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetStatus().GetCode() != int32(codes.PermissionDenied) {
		t.Fatalf("raw headers naming a deactivated org: %v", resp.GetStatus())
	}
}
