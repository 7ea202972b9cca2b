package authz

import (
	"encoding/base64"
	"net/url"
	"path"
	"strings"

	"google.golang.org/protobuf/types/known/structpb"
)

// Request is what the decision reads of one HTTP request. The gRPC server and the HTTP check handler both build
// one; the decision never modifies it and keeps no reference to it after returning.
type Request struct {
	Method string // e.g. "POST"
	Path   string // the URL path as sent (not decoded), without the query
	Query  string // the raw query, without '?'
	// Headers holds the request headers with lower-case names; repeated headers are joined with "," (as Envoy
	// sends them). Where a header names a subject, every value of it is checked: the upstream may read the
	// first (Go's servers, ZITADEL) or another.
	Headers map[string]string
	// Body is the request body or a prefix of it, when the proxy forwards it ("" otherwise). A body is taken as
	// a prefix when the header x-envoy-auth-partial-body is "true" or it is shorter than Content-Length; where
	// the decision depends on the body, a prefix is refused (413, reason body_incomplete), never allowed.
	Body string
	// Route holds the facts the proxy's route configuration states about the request: Envoy's
	// context_extensions, or the X-Deact-* headers the HTTP check endpoint reads. Keys: op, org_id,
	// project_id, app_id, client_id (values may be comma-separated lists). They are always honoured.
	Route map[string]string
	// JWTMetadata is Envoy's jwt_authn dynamic metadata (filter_metadata["envoy.filters.http.jwt_authn"]):
	// every struct-valued field is taken as a verified claims payload.
	JWTMetadata *structpb.Struct

	truncated bool // the HTTP check endpoint read only a prefix of the body
}

// Route fact keys, shared by context_extensions and (prefixed with X-Deact-) the HTTP check headers.
const (
	FactOp        = "op"
	FactOrgID     = "org_id"
	FactProjectID = "project_id"
	FactAppID     = "app_id"
	FactClientID  = "client_id"
)

// canonicalPath returns the path a Go upstream (ZITADEL) routes on: percent-decoded (once, "%2F" included, as
// grpc-gateway's default unescaping does), dot segments and repeated slashes removed. A path that needs none of
// that is returned as is, without allocating; an encoded "/oauth/v2/%74oken" must not slip past a rule for
// "/oauth/v2/token".
func canonicalPath(p string) string {
	if p == "" {
		return "/"
	}
	if !strings.Contains(p, "%") && !strings.Contains(p, "/.") && !strings.Contains(p, "//") && p[0] == '/' {
		return p
	}
	if strings.Contains(p, "%") {
		if d, err := url.PathUnescape(p); err == nil {
			p = d
		}
	}
	if p == "" || p[0] != '/' {
		p = "/" + p
	}
	return path.Clean(p)
}

// servletPath returns the path a servlet container or IIS (Commvault's web servers) routes on, given the
// canonical path: '\' is a separator (IIS; "%5C" decodes to it), ";params" are cut from every segment (Tomcat's
// path parameters, ";jsessionid=..." and "/..;/" among them), dot segments are removed after both. ok is false
// when that changes nothing, which is the case, without allocating, for a path with neither ';' nor '\'.
func servletPath(canon string) (p string, ok bool) {
	if strings.IndexByte(canon, ';') < 0 && strings.IndexByte(canon, '\\') < 0 { // ContainsAny, at a fraction of its cost
		return canon, false
	}
	p = strings.ReplaceAll(canon, "\\", "/")
	var b strings.Builder
	for seg := range strings.SplitSeq(p, "/") {
		seg, _, _ = strings.Cut(seg, ";")
		b.WriteByte('/')
		b.WriteString(seg)
	}
	p = path.Clean(b.String())
	return p, p != canon
}

// params iterates over the pairs of a URL-encoded query or form body without allocating; values are still
// encoded (see unescape).
type params struct{ s string }

func (it *params) next() (key, val string, ok bool) {
	for it.s != "" {
		var pair string
		pair, it.s, _ = strings.Cut(it.s, "&")
		if pair == "" {
			continue
		}
		key, val, _ = strings.Cut(pair, "=")
		return key, val, true
	}
	return "", "", false
}

// unescape decodes a query component; it allocates only when there is something to decode. Invalid escapes
// make the pair unusable, as they do for Go's url.ParseQuery (so for an upstream built on it).
func unescape(s string) (string, bool) {
	if !hasEscape(s) {
		return s, true
	}
	d, err := url.QueryUnescape(s)
	return d, err == nil
}

// hasEscape reports whether a query component has anything to decode ('%' or '+'): strings.ContainsAny, at a
// fraction of its cost on the hot path.
func hasEscape(s string) bool {
	return strings.IndexByte(s, '%') >= 0 || strings.IndexByte(s, '+') >= 0
}

// keyIs compares an encoded key with a plain one.
func keyIs(raw, want string) bool {
	if raw == want {
		return true
	}
	if !hasEscape(raw) {
		return false
	}
	k, ok := unescape(raw)
	return ok && k == want
}

// credentials iterates over the credentials of an Authorization header. A repeated header reaches deact as
// the values joined with ",", and neither a bearer token (token68) nor Basic credentials contain a comma, so each
// comma-separated item is one header value: every one is checked, whichever the upstream reads.
type credentials struct{ l list }

// next returns the scheme (as sent) and the credential of the next value that has both.
func (c *credentials) next() (scheme, cred string, ok bool) {
	for {
		v, more := c.l.next()
		if !more {
			return "", "", false
		}
		if scheme, cred, ok = strings.Cut(v, " "); ok {
			if cred = strings.TrimSpace(cred); cred != "" {
				return scheme, cred, true
			}
		}
	}
}

// bearerTokens iterates over the bearer (or DPoP) tokens of an Authorization header.
type bearerTokens struct{ c credentials }

func newBearerTokens(auth string) bearerTokens { return bearerTokens{credentials{list{auth}}} }

func (b *bearerTokens) next() (string, bool) {
	for {
		scheme, cred, ok := b.c.next()
		if !ok {
			return "", false
		}
		if strings.EqualFold(scheme, "Bearer") || strings.EqualFold(scheme, "DPoP") {
			return cred, true
		}
	}
}

// bearerToken returns the first token of an "Authorization: Bearer ..." (or DPoP) header.
func bearerToken(auth string) string {
	it := newBearerTokens(auth)
	tok, _ := it.next()
	return tok
}

// basicUser returns the user (the OAuth client_id, RFC 6749 §2.3.1: form-encoded before base64) of one
// "Basic ..." credential.
func basicUser(cred string) string {
	if cred == "" || len(cred) > 4096 {
		return ""
	}
	var buf [3072]byte
	n, err := base64.StdEncoding.Decode(buf[:], []byte(cred))
	if err != nil {
		return ""
	}
	user, _, _ := strings.Cut(string(buf[:n]), ":")
	if u, ok := unescape(user); ok {
		return u
	}
	return user
}

// list iterates over a comma-separated list, trimming spaces and skipping empty items.
type list struct{ s string }

func (l *list) next() (string, bool) {
	for l.s != "" {
		var item string
		item, l.s, _ = strings.Cut(l.s, ",")
		if item = strings.TrimSpace(item); item != "" {
			return item, true
		}
	}
	return "", false
}

// containsFold reports whether v contains sub, ignoring ASCII and Unicode simple case (strings.EqualFold),
// without allocating. It is meant for short values: media types, Accept values, Commvault task type names.
func containsFold(v, sub string) bool {
	n := len(sub)
	for i := 0; i+n <= len(v); i++ {
		if strings.EqualFold(v[i:i+n], sub) {
			return true
		}
	}
	return false
}
