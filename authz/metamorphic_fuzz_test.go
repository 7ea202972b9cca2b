package authz

import (
	"context"
	"encoding/base64"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"unicode"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/encoding/protowire"
)

// The metamorphic relation (issue 14 item 8): take requests deact denies and change them in ways that must not
// matter to the decision (padding fields, reordering, repeated headers, case, path parameters and separators,
// encodings, cutting the body at a proxy's limit); every variant is still denied or refused, never allowed.

type bodyFormat uint8

const (
	fmtNone bodyFormat = iota
	fmtForm
	fmtJSON
	fmtXML
	fmtGRPC // one gRPC frame of a protobuf message
)

// mReq is a request the transformations rewrite.
type mReq struct {
	method, path, query string
	headers             [][2]string
	body                string
	format              bodyFormat
	proto               []byte // fmtGRPC: the message, re-framed after each change
	route               map[string]string
	fold                bool // the route is a servlet/IIS one: path case does not matter
	raw                 bool // send as Envoy's header_map, names as spelled
}

// deniedSeeds are requests denied against testSnapshot (org 666 off for everything, domain evil.example; client
// 668@dead of a deactivated app; org 671 backup off).
func deniedSeeds() []mReq {
	session := protowire.AppendTag(nil, 2, protowire.BytesType)
	session = protowire.AppendString(session, "bob@evil.example")
	session = protowire.AppendBytes(protowire.AppendTag(nil, 1, protowire.BytesType), session) // Checks.user
	session = protowire.AppendBytes(protowire.AppendTag(nil, 1, protowire.BytesType), session) // CreateSessionRequest.checks
	deadJWT := unsigned(`{"iss":"x","sub":"u","urn:zitadel:iam:user:resourceowner:id":"666"}`)
	return []mReq{
		{method: "POST", path: "/oauth/v2/token", format: fmtForm, headers: hdr("content-type", ctForm),
			body: "grant_type=client_credentials&client_id=668%40dead&scope=openid"},
		{method: "POST", path: "/oauth/v2/token", format: fmtForm, body: "grant_type=client_credentials&scope=openid",
			headers: hdr("content-type", ctForm, "authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte("668%40dead:x")))},
		{method: "POST", path: "/v2/sessions", format: fmtJSON, headers: hdr("content-type", ctJSON),
			body: `{"checks":{"user":{"loginName":"bob@evil.example"}},"lifetime":"600s"}`},
		{method: "POST", path: "/zitadel.session.v2.SessionService/CreateSession", format: fmtGRPC, proto: session,
			headers: hdr("content-type", "application/grpc")},
		{method: "POST", path: "/webconsole/api/Login", format: fmtXML, fold: true, headers: hdr("content-type", ctXML),
			body: `<?xml version="1.0"?><DM2ContentIndexing_CheckCredentialReq mode="4" username="evil.example\bob" password="cA=="/>`},
		{method: "POST", path: "/webconsole/api/Login", format: fmtJSON, fold: true, headers: hdr("content-type", ctJSON),
			body: `{"mode":4,"username":"bob@evil.example","password":"cA=="}`},
		{method: "POST", path: "/webconsole/api/retrieveToClient", fold: true, headers: hdr("accept", ctJSON),
			route: map[string]string{FactOrgID: "666"}},
		{method: "POST", path: "/webconsole/api/CreateTask", format: fmtXML, fold: true, headers: hdr("content-type", ctXML),
			body:  `<TMMsg_CreateTaskReq><taskInfo><subTasks><subTask subTaskType="BACKUP" operationType="BACKUP"/></subTasks></taskInfo></TMMsg_CreateTaskReq>`,
			route: map[string]string{FactOrgID: "671"}},
		{method: "GET", path: "/v2/users/me", headers: hdr("authorization", "Bearer "+deadJWT)},
		{method: "GET", path: "/management/v1/orgs/me", headers: hdr("x-zitadel-orgid", "666")},
		{method: "POST", path: "/ui/login/loginname", format: fmtForm, headers: hdr("content-type", ctForm),
			body: "authRequestID=1&loginName=bob%40evil.example"},
		{method: "GET", path: "/oauth/v2/authorize", query: "client_id=x&scope=openid%20urn%3Azitadel%3Aiam%3Aorg%3Aid%3A666"},
	}
}

func (r *mReq) frame() {
	if r.format == fmtGRPC {
		r.body = string(grpcFrame(0, r.proto))
	}
}

// apply rewrites r by the transformation program p, one op per byte, its parameter the next byte.
func (r *mReq) apply(p []byte) {
	r.frame()
	arg := func(i int) int {
		if i+1 < len(p) {
			return int(p[i+1])
		}
		return 0
	}
	for i := 0; i < len(p) && i < 32; i += 2 {
		n := arg(i)
		switch p[i] % 16 {
		case 0: // a padding field
			pad := strings.Repeat("x", n*32)
			switch r.format {
			case fmtForm:
				if n%2 == 0 {
					r.body = "pad=" + pad + "&" + r.body
				} else {
					r.body += "&pad=" + pad
				}
			case fmtJSON:
				r.body = strings.Replace(r.body, "{", `{"pad":"`+pad+`",`, 1)
			case fmtXML:
				r.body = strings.Replace(r.body, "<DM2", "<!-- "+pad+" --><DM2", 1)
				r.body = strings.Replace(r.body, "<TMMsg", "<!-- "+pad+" --><TMMsg", 1)
			case fmtGRPC:
				r.proto = protowire.AppendBytes(protowire.AppendTag(r.proto, 15, protowire.BytesType), []byte(pad))
				r.frame()
			}
		case 1: // reorder: form pairs rotate, headers reverse
			if r.format == fmtForm {
				pairs := strings.Split(r.body, "&")
				k := n % len(pairs)
				r.body = strings.Join(append(pairs[k:], pairs[:k]...), "&")
			}
			for a, b := 0, len(r.headers)-1; a < b; a, b = a+1, b-1 {
				r.headers[a], r.headers[b] = r.headers[b], r.headers[a]
			}
		case 2: // repeat a subject-bearing header with a harmless value, before or after
			extra := [][2]string{{"authorization", "Bearer opaque-token"}, {"x-zitadel-orgid", orgOther},
				{"username", "alice@other.example"}, {"authorization", "Basic " + base64.StdEncoding.EncodeToString([]byte("someone:x"))}}[n%4]
			if n%8 < 4 {
				r.headers = append([][2]string{extra}, r.headers...)
			} else {
				r.headers = append(r.headers, extra)
			}
		case 3: // header names' case, as Envoy's header_map keeps it
			r.raw = true
			for k := range r.headers {
				if n%2 == 0 {
					r.headers[k][0] = strings.ToUpper(r.headers[k][0])
				} else {
					r.headers[k][0] = titleCase(r.headers[k][0])
				}
			}
		case 4: // a path parameter after a segment
			segs := strings.Split(r.path, "/")
			k := 1 + n%(len(segs)-1)
			segs[k] += ";jsessionid=" + strconv.Itoa(n)
			r.path = strings.Join(segs, "/")
		case 5: // '\' or "%5C" for a '/' (servlet/IIS routes)
			if !r.fold {
				continue
			}
			sep := `\`
			if n%2 == 1 {
				sep = "%5C"
			}
			if k := strings.LastIndexByte(r.path, '/'); k > 0 {
				r.path = r.path[:k] + sep + r.path[k+1:]
			}
		case 6: // dot segments, repeated slashes, a trailing slash
			r.path = []string{"/." + r.path, "/x/.." + r.path, "/" + r.path, r.path + "/"}[n%4]
		case 7: // percent-encode a letter of the path
			r.path = encodeAt(r.path, n%len(r.path))
		case 8: // path case, where the upstream folds it
			if r.fold {
				if n%2 == 0 {
					r.path = strings.ToUpper(r.path)
				} else {
					r.path = strings.ToLower(r.path)
				}
			}
		case 9: // encode a character of the body the way its format allows
			switch r.format {
			case fmtForm:
				r.body = encodeAt(r.body, n%len(r.body))
			case fmtJSON:
				r.body = []func(string) string{
					func(s string) string { return strings.Replace(s, "bob@", `bob\u0040`, 1) },
					func(s string) string { return strings.Replace(s, `"loginName"`, `"login\u004eame"`, 1) },
					func(s string) string { return strings.Replace(s, `"username"`, `"user\u006eame"`, 1) },
				}[n%3](r.body)
			case fmtXML:
				r.body = strings.Replace(r.body, "evil.example", "evil&#x2E;example", 1)
			}
		case 10: // protojson's proto name, Go's case folding
			if r.format == fmtJSON {
				r.body = strings.Replace(r.body, `"loginName"`, []string{`"login_name"`, `"LoginName"`}[n%2], 1)
			}
		case 11: // the content type's case and parameters
			for k := range r.headers {
				if strings.EqualFold(r.headers[k][0], "content-type") {
					r.headers[k][1] = strings.ToUpper(r.headers[k][1]) + "; charset=utf-8"
				}
			}
		case 12: // whitespace a parser skips
			switch r.format {
			case fmtJSON:
				r.body = " \n" + strings.ReplaceAll(r.body, ":", " : ")
			case fmtXML:
				r.body = strings.Replace(r.body, " username=", "\n\tusername = ", 1)
			}
		case 13: // a duplicate key whose other value is harmless, before the real one
			switch r.format {
			case fmtForm:
				r.body = "client_id=someone&loginName=alice%40other.example&" + r.body
			case fmtJSON:
				r.body = strings.Replace(r.body, `{"checks":{"user":{`, `{"checks":{"user":{"loginName":"alice@other.example",`, 1)
			}
		case 14: // cut the body at the proxy's limit: Envoy says so
			if len(r.body) > 1 {
				whole := len(r.body)
				r.body = r.body[:n*len(r.body)/256] // none of it, when the proxy forwards no body
				r.headers = append(r.headers, [2]string{HeaderPartialBody, "true"}, [2]string{"content-length", strconv.Itoa(whole)})
				return // nothing more to change in a cut body
			}
		case 15: // an encoded query parameter name; grpc-gateway's Grpc-Metadata- spelling of a header
			r.query = strings.Replace(r.query, "scope=", "sc%6Fpe=", 1)
			for k := range r.headers {
				switch name := strings.ToLower(r.headers[k][0]); {
				case name == "authorization" && strings.HasPrefix(r.headers[k][1], "Bearer "), name == "x-zitadel-orgid":
					r.headers[k][0] = "Grpc-Metadata-" + r.headers[k][0]
				}
			}
		}
	}
}

// titleCase spells a header name the way HTTP/1 clients do: "Content-Type".
func titleCase(s string) string {
	b := []byte(strings.ToLower(s))
	for i := range b {
		if (i == 0 || b[i-1] == '-') && 'a' <= b[i] && b[i] <= 'z' {
			b[i] -= 'a' - 'A'
		}
	}
	return string(b)
}

// encodeAt percent-encodes the letter or digit at k, unless it is part of an escape already (encoding that
// would make an invalid escape, a different request that every upstream refuses).
func encodeAt(s string, k int) string {
	if !isAlnum(s[k]) || strings.Contains(s[max(0, k-2):k], "%") {
		return s
	}
	return s[:k] + fmt.Sprintf("%%%02X", s[k]) + s[k+1:]
}

func isAlnum(c byte) bool {
	return c < unicode.MaxASCII && (unicode.IsLetter(rune(c)) || unicode.IsDigit(rune(c)))
}

func (r *mReq) checkRequest() *authv3.CheckRequest {
	target := r.path
	if r.query != "" {
		target += "?" + r.query
	}
	return envoyRequest(r.method, target, r.body, r.headers, r.raw, r.route)
}

// httpRequest is the request to /check, the original one named by X-Original-URI so that any path spelling
// gets through, its body and headers as sent.
func (r *mReq) httpRequest() *http.Request {
	req := httptest.NewRequest("POST", "/check", strings.NewReader(r.body))
	target := r.path
	if r.query != "" {
		target += "?" + r.query
	}
	req.Header.Set(HeaderOriginalURI, target)
	req.Header.Set(HeaderOriginalMethod, r.method)
	for _, kv := range r.headers {
		if !strings.EqualFold(kv[0], "content-length") {
			req.Header.Add(kv[0], kv[1])
		}
	}
	for k, v := range r.route {
		req.Header.Set("X-Deact-"+strings.ReplaceAll(k, "_", "-"), v)
	}
	return req
}

// FuzzMetamorphicDenied: every variant of a denied request is denied or refused, through Check and /check.
func FuzzMetamorphicDenied(f *testing.F) {
	seeds := deniedSeeds()
	for i := range seeds {
		f.Add(uint8(i), []byte{})
		for op := byte(0); op < 16; op++ {
			f.Add(uint8(i), []byte{op, 7, 2, 5})
		}
	}
	f.Add(uint8(2), []byte{0, 255, 14, 128})  // padded far past 8 KiB, then cut in the middle
	f.Add(uint8(4), []byte{0, 255, 14, 200})  // a login behind a long comment, cut
	f.Add(uint8(7), []byte{0, 255, 14, 100})  // a backup task cut before its subtask
	f.Add(uint8(6), []byte{4, 2, 5, 0, 8, 0}) // ;jsessionid, '\', upper case
	f.Add(uint8(8), []byte{2, 0, 3, 1})       // another Authorization first, names in title case
	a := testAuthorizer(f, Config{}, testSnapshot(f), 0)
	h := a.HTTPHandler()
	f.Fuzz(func(t *testing.T, seed uint8, program []byte) {
		r := seeds[int(seed)%len(seeds)]
		r.headers = append([][2]string(nil), r.headers...)
		r.proto = append([]byte(nil), r.proto...)
		r.apply(program)
		resp, err := a.Check(context.Background(), r.checkRequest())
		if err != nil {
			t.Fatal(err)
		}
		if resp.GetStatus().GetCode() == int32(codes.OK) {
			t.Fatalf("variant allowed by Check: %s %s?%s headers %q body %q", r.method, r.path, r.query, r.headers, r.body)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r.httpRequest())
		if rec.Code == http.StatusOK {
			t.Fatalf("variant allowed by /check: %s %s?%s headers %q body %q", r.method, r.path, r.query, r.headers, r.body)
		}
	})
}
