package authz

import (
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// HTTP check endpoint headers. The proxy must set (not pass through) the X-Deact-* headers: they are trusted
// like Envoy's context_extensions. nginx's proxy_set_header and Envoy's authorization_request.headers_to_add
// both replace a client's value.
const (
	HeaderOriginalURI    = "X-Original-URI"
	HeaderOriginalMethod = "X-Original-Method"
	// Forward-auth proxies (Caddy forward_auth, Traefik ForwardAuth) describe the original request this way;
	// both set these from the real request, replacing a client's own.
	HeaderForwardedURI    = "X-Forwarded-Uri"
	HeaderForwardedMethod = "X-Forwarded-Method"
	HeaderForwardedHost   = "X-Forwarded-Host"
	HeaderOp              = "X-Deact-Op"
	HeaderOrgID           = "X-Deact-Org-Id"
	HeaderProjectID       = "X-Deact-Project-Id"
	HeaderAppID           = "X-Deact-App-Id"
	HeaderClientID        = "X-Deact-Client-Id"
)

var factHeaders = [...]struct{ header, fact string }{
	{HeaderOp, FactOp}, {HeaderOrgID, FactOrgID}, {HeaderProjectID, FactProjectID},
	{HeaderAppID, FactAppID}, {HeaderClientID, FactClientID},
}

// HTTPHandler serves the check endpoint at /check (and /check/... for Envoy's HTTP ext_authz with
// path_prefix: /check), any method, deciding with the same code as Check:
//
//   - The original request is X-Original-URI and X-Original-Method (nginx auth_request); else X-Forwarded-Uri,
//     X-Forwarded-Method and X-Forwarded-Host (Caddy forward_auth, Traefik ForwardAuth; the host becomes the
//     "host" and ":authority" headers); without either it is the request's own method, path after /check and
//     query (Envoy HTTP mode). The method always comes from the family the URI came from, so a client's
//     X-Forwarded-Method cannot change what nginx described, nor a client's X-Original-* what Caddy or Traefik
//     did: the proxy must still remove the other family's headers (deploy/caddy and deploy/traefik do).
//   - Route facts come from X-Deact-Op, X-Deact-Org-Id, X-Deact-Project-Id, X-Deact-App-Id, X-Deact-Client-Id;
//     other headers (Authorization, x-zitadel-orgid, ...) are read as sent. nginx does not forward the body,
//     so there an OAuth client_id comes from the query, Basic auth or X-Deact-Client-Id.
//   - Allow: 200 with an empty body (Envoy's HTTP mode treats only 200 as OK; nginx any 2xx), plus
//     x-deact-revision if configured. Deny: 403, or 401 for op api and unreadable tokens (the statuses nginx
//     passes on), with the body and headers of the gRPC denied response and x-deact-reason (body_incomplete and
//     body_unreadable refusals too: nginx passes only 401 and 403 on). Replica not ready or node fenced: 503. A
//     body over MaxBodyBytes is read as a prefix (see Request.Body).
//
// For nginx, set proxy_pass_request_body off and proxy_set_header Content-Length "" in the auth location, as
// nginx's documentation does: a Content-Length without its body would make the handler wait for it.
func (a *Authorizer) HTTPHandler() http.Handler { return http.HandlerFunc(a.serveCheck) }

func (a *Authorizer) serveCheck(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rest, ok := strings.CutPrefix(r.URL.EscapedPath(), "/check")
	if !ok || (rest != "" && rest[0] != '/') {
		http.NotFound(w, r)
		return
	}
	var req Request
	if err := a.requestFromHTTP(r, rest, &req); err != nil {
		http.Error(w, "cannot read request body", http.StatusBadRequest)
		return
	}

	var d Decision
	if err := a.decideNow(&req, &d); err != nil {
		a.recordUnavailable(transportHTTP, start)
		w.Header().Set("Retry-After", "1")
		http.Error(w, unavailableMessage(err), http.StatusServiceUnavailable)
		return
	}
	if d.Allow {
		if a.revisionHeader {
			w.Header().Set(HeaderRevision, strconv.FormatInt(d.Revision, 10))
		}
		w.WriteHeader(http.StatusOK)
		a.record(r.Context(), transportHTTP, &d, start)
		return
	}
	dn := shape(&d, &req)
	for _, h := range dn.headers {
		w.Header().Set(h[0], h[1])
	}
	if a.revisionHeader {
		w.Header().Set(HeaderRevision, strconv.FormatInt(d.Revision, 10))
	}
	code := http.StatusForbidden
	if dn.status == http.StatusUnauthorized {
		code = http.StatusUnauthorized
	}
	w.WriteHeader(code)
	_, _ = io.WriteString(w, dn.body)
	a.record(r.Context(), transportHTTP, &d, start)
}

// requestFromHTTP fills req from a check request (see HTTPHandler); rest is the path after /check. Its error is
// the body's read error.
func (a *Authorizer) requestFromHTTP(r *http.Request, rest string, req *Request) error {
	uri, methodHeader, host := r.Header.Get(HeaderOriginalURI), HeaderOriginalMethod, ""
	if uri == "" {
		if uri = r.Header.Get(HeaderForwardedURI); uri != "" {
			methodHeader, host = HeaderForwardedMethod, r.Header.Get(HeaderForwardedHost)
		}
	}
	if uri != "" {
		uri, _, _ = strings.Cut(uri, "#")
		req.Path, req.Query, _ = strings.Cut(uri, "?")
		req.Method = r.Header.Get(methodHeader)
	} else {
		req.Path, req.Query = rest, r.URL.RawQuery
		if req.Path == "" {
			req.Path = "/"
		}
	}
	if req.Method == "" {
		req.Method = r.Method
	}
	req.Headers = make(map[string]string, len(r.Header))
	for k, vs := range r.Header {
		req.Headers[strings.ToLower(k)] = strings.Join(vs, ",")
	}
	if host != "" {
		req.Headers["host"], req.Headers[":authority"] = host, host
	}
	for _, f := range factHeaders {
		if v := r.Header.Get(f.header); v != "" {
			if req.Route == nil {
				req.Route = make(map[string]string, len(factHeaders))
			}
			req.Route[f.fact] = v
		}
	}
	if r.Body != nil {
		// A body over MaxBodyBytes is read up to the limit and decided as a prefix: where the decision depends on
		// it that is a refusal (413, body_incomplete), elsewhere the body does not matter.
		b, err := io.ReadAll(io.LimitReader(r.Body, a.maxBody+1))
		if err != nil {
			return err
		}
		if int64(len(b)) > a.maxBody {
			b, req.truncated = b[:a.maxBody], true
		}
		req.Body = string(b)
	}
	return nil
}
