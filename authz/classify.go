package authz

import (
	"encoding/json"
	"strings"

	"github.com/deact/deact/state"
	"google.golang.org/protobuf/types/known/structpb"
)

// decide classifies req and checks every subject it finds against snap, stopping at the first deny. It is the
// one decision function behind Check, the HTTP handler and Decide. It takes no lock, makes no etcd call and, for
// requests whose subjects come from route facts, headers or a cached token, does not allocate.
//
// A path that a Go upstream and a servlet container or IIS would route differently (';' path parameters, '\'
// separators) is decided once per reading, and a deny in either wins: deact cannot know which server is behind
// the route, and the presets have both.
func (a *Authorizer) decide(snap *state.Snapshot, req *Request, d *Decision, visit func(Subject)) {
	canon := canonicalPath(req.Path)
	a.decidePath(snap, req, canon, d, visit)
	if alt, ok := servletPath(canon); ok && (d.Allow || snap == nil) {
		var d2 Decision
		a.decidePath(snap, req, alt, &d2, visit)
		if !d2.Allow || (d.Op == OpOther && d2.Op != OpOther) {
			*d = d2
		}
	}
}

func (a *Authorizer) decidePath(snap *state.Snapshot, req *Request, canon string, d *Decision, visit func(Subject)) {
	*d = Decision{Allow: true, Revision: snap.Revision()}
	var m match
	rt := a.matchRoute(req.Method, canon, &m)
	op, mask := OpOther, state.Ops(0)
	if rt != nil {
		d.Route, d.Surface = rt.name, rt.surface
		op, mask = rt.op, rt.mask
	}
	if v := req.Route[FactOp]; v != "" {
		o, ok := parseOpFast(strings.TrimSpace(v))
		if !ok {
			// A route that states an op deact does not know is a configuration error: fail closed, loudly.
			d.Allow, d.Reason = false, ReasonBadRouteFact
			return
		}
		// The route's own mask (an authorize request checks login and token) holds when the fact agrees with it.
		if rt == nil || o != rt.op || rt.body == bodyCommvaultTask {
			op, mask = o, o.stateOps()
		}
	} else if rt != nil && rt.body == bodyCommvaultTask {
		op, mask = commvaultTaskOp(req)
	}
	d.Op = op
	if op == OpOther {
		return
	}
	e := evaluator{snap: snap, mask: mask, apps: op.appsApply(), visit: visit}
	a.subjects(req, rt, &m, op, &e)
	if !e.denied && e.body != bodyRead {
		// The body could name what the rest of the request does not: a body deact did not read whole decides no
		// allow.
		reason := ReasonBodyIncomplete
		if e.body == bodyUnreadable {
			reason = ReasonBodyUnreadable
		}
		e.deny(reason, Subject{}, Subject{})
	}
	if e.denied {
		d.Allow, d.Reason, d.Subject, d.Via = false, e.reason, e.subj, e.via
	}
}

// zitadelOrgHeaders are the spellings of ZITADEL's org header: grpc-gateway passes a "Grpc-Metadata-" header on
// as the metadata it names.
var zitadelOrgHeaders = [...]string{"x-zitadel-orgid", "grpc-metadata-x-zitadel-orgid"}

// subjects walks the request's sources in order of trust and checks each subject as it is found.
func (a *Authorizer) subjects(req *Request, rt *route, m *match, op Op, e *evaluator) {
	if e.checkList(SubjectOrg, req.Route[FactOrgID]) ||
		e.checkList(SubjectProject, req.Route[FactProjectID]) ||
		e.checkList(SubjectApp, req.Route[FactAppID]) ||
		e.checkList(SubjectClient, req.Route[FactClientID]) {
		return
	}
	for _, h := range zitadelOrgHeaders {
		if e.checkList(SubjectOrg, req.Headers[h]) {
			return
		}
	}
	var tv tokenView
	if rt != nil {
		for i := range rt.sources {
			if a.checkSource(req, m, &rt.sources[i], e, &tv) {
				return
			}
		}
		switch rt.body {
		case bodyLoginName:
			if loginNamesInBody(req, e, false) {
				return
			}
		case bodyCommvaultLogin:
			l := list{req.Headers["username"]}
			for v, ok := l.next(); ok; v, ok = l.next() {
				if e.checkLogin(v) {
					return
				}
			}
			if loginNamesInBody(req, e, true) {
				return
			}
		}
	}
	if op == OpLogin || op == OpToken || (rt != nil && rt.oauth) {
		if a.oauthParams(req, e) {
			return
		}
	}
	a.tokenSubjects(req, e, &tv)
}

// checkLogin checks the org domain of a login name: "domain\user" or "user@domain".
func (e *evaluator) checkLogin(name string) bool {
	name = strings.TrimSpace(name)
	if i := strings.IndexByte(name, '\\'); i > 0 {
		return e.check(SubjectDomain, state.NormalizeDomain(name[:i]))
	}
	if i := strings.LastIndexByte(name, '@'); i >= 0 && i < len(name)-1 {
		return e.check(SubjectDomain, state.NormalizeDomain(name[i+1:]))
	}
	return e.denied
}

// checkAs checks one value found by a custom rule source.
func (e *evaluator) checkAs(s *source, v string) bool {
	switch {
	case s.login:
		return e.checkLogin(v)
	case s.kind == SubjectDomain:
		return e.check(SubjectDomain, state.NormalizeDomain(strings.TrimSpace(v)))
	}
	return e.check(s.kind, strings.TrimSpace(v))
}

func (a *Authorizer) checkSource(req *Request, m *match, s *source, e *evaluator, tv *tokenView) bool {
	switch s.from {
	case fromHeader:
		l := list{req.Headers[s.name]}
		for v, ok := l.next(); ok; v, ok = l.next() {
			if e.checkAs(s, v) {
				return true
			}
		}
	case fromPath:
		return e.checkAs(s, m.caps[s.idx])
	case fromQuery:
		return checkParam(req.Query, s, e)
	case fromForm:
		if formDeclared(req) && req.bodyIncomplete() {
			e.bodyFailed(bodyIncomplete)
		}
		if isForm(req) {
			return checkParam(req.Body, s, e)
		}
	case fromJWT:
		a.loadToken(req, tv)
		if tv.meta != nil {
			for _, v := range tv.meta.GetFields() {
				if st := v.GetStructValue(); st != nil && checkClaimValue(e, s, st.GetFields()[s.name]) {
					return true
				}
			}
		}
		return a.eachToken(req, tv, func(c *claims) bool {
			for _, v := range c.extra[s.name] {
				if e.checkAs(s, v) {
					return true
				}
			}
			return false
		})
	}
	return e.denied
}

func checkClaimValue(e *evaluator, s *source, v *structpb.Value) bool {
	if s.login || s.kind == SubjectDomain {
		switch x := v.GetKind().(type) {
		case *structpb.Value_StringValue:
			return e.checkAs(s, x.StringValue)
		case *structpb.Value_ListValue:
			for _, item := range x.ListValue.GetValues() {
				if e.checkAs(s, item.GetStringValue()) {
					return true
				}
			}
		}
		return e.denied
	}
	return checkValue(e, s.kind, v)
}

func checkParam(raw string, s *source, e *evaluator) bool {
	it := params{raw}
	for k, v, ok := it.next(); ok; k, v, ok = it.next() {
		if !keyIs(k, s.name) {
			continue
		}
		if val, ok := unescape(v); ok && e.checkAs(s, val) {
			return true
		}
	}
	return e.denied
}

// formDeclared reports whether the request says its body is a form: the upstream (Go's ParseForm, a servlet's
// getParameter) reads the body only then.
func formDeclared(req *Request) bool {
	return hasMediaSubstring(req.Headers["content-type"], "application/x-www-form-urlencoded")
}

func isForm(req *Request) bool { return req.Body != "" && formDeclared(req) }

// oauthParams checks the OAuth 2 parameters of a request to an authorization server: client_id (query, form
// body, HTTP Basic), scopes naming orgs, domains and projects, login_hint, and the JWTs of the jwt-bearer grant
// (RFC 7523: the assertion's iss/sub are accounts), private_key_jwt client authentication (client_assertion:
// iss/sub are the client) and token exchange (RFC 8693: subject_token and actor_token claims). Refresh tokens
// and authorization codes are opaque and checked through the client only.
func (a *Authorizer) oauthParams(req *Request, e *evaluator) bool {
	if a.oauthFrom(req.Query, e) {
		return true
	}
	if formDeclared(req) {
		switch {
		case req.bodyIncomplete():
			e.bodyFailed(bodyIncomplete) // a prefix, or none of the form the upstream will read
		case req.Body != "" && req.encoded():
			e.bodyFailed(bodyUnreadable)
		}
	}
	if isForm(req) && a.oauthFrom(req.Body, e) {
		return true
	}
	c := credentials{list{req.Headers["authorization"]}}
	for scheme, cred, ok := c.next(); ok; scheme, cred, ok = c.next() {
		if strings.EqualFold(scheme, "Basic") && e.check(SubjectClient, basicUser(cred)) {
			return true
		}
	}
	return false
}

const (
	scopeOrgID     = "urn:zitadel:iam:org:id:"
	scopeOrgDomain = "urn:zitadel:iam:org:domain:primary:"
	scopeProject   = "urn:zitadel:iam:org:project:id:"
)

var oauthKeys = [...]string{"client_id", "scope", "login_hint", "assertion", "client_assertion", "subject_token", "actor_token", "access_token"}

func (a *Authorizer) oauthFrom(raw string, e *evaluator) bool {
	it := params{raw}
	for k, v, ok := it.next(); ok; k, v, ok = it.next() {
		key := ""
		for _, want := range oauthKeys {
			if keyIs(k, want) {
				key = want
				break
			}
		}
		if key == "" {
			continue
		}
		val, ok := unescape(v)
		if !ok {
			continue
		}
		switch key {
		case "client_id":
			e.check(SubjectClient, val)
		case "scope":
			checkScopes(val, e)
		case "login_hint":
			e.checkLogin(val)
		case "assertion", "client_assertion":
			if len(val) > a.maxToken && looksLikeJWT(val) {
				e.deny(ReasonTokenTooLarge, Subject{}, Subject{})
				break
			}
			kind := SubjectAccount
			if key == "client_assertion" {
				kind = SubjectClient
			}
			iss, sub := jwtIssSub(val)
			e.check(kind, sub)
			if iss != sub {
				e.check(kind, iss)
			}
		case "subject_token", "actor_token", "access_token": // access_token: RFC 6750 §2.2/2.3, userinfo takes it
			if looksLikeJWT(val) {
				c, tooLarge := a.parsedClaims(val)
				if tooLarge {
					e.deny(ReasonTokenTooLarge, Subject{}, Subject{})
				}
				for _, s := range c.subjectsOrNil() {
					if e.check(s.Kind, s.ID) {
						break
					}
				}
			}
		}
		if e.denied {
			return true
		}
	}
	return false
}

func checkScopes(scopes string, e *evaluator) bool {
	for scopes != "" {
		var s string
		s, scopes, _ = strings.Cut(scopes, " ")
		switch {
		case strings.HasPrefix(s, scopeOrgID):
			e.check(SubjectOrg, s[len(scopeOrgID):])
		case strings.HasPrefix(s, scopeOrgDomain):
			e.check(SubjectDomain, state.NormalizeDomain(s[len(scopeOrgDomain):]))
		case strings.HasPrefix(s, scopeProject):
			if id, ok := strings.CutSuffix(s[len(scopeProject):], ":aud"); ok {
				e.check(SubjectProject, id)
			}
		}
		if e.denied {
			return true
		}
	}
	return false
}

// jwtIssSub reads iss and sub of an assertion JWT, unverified (see claimMapper.parseJWT for why that is safe).
// Assertions are single-use, so they are not cached.
func jwtIssSub(tok string) (iss, sub string) {
	if !looksLikeJWT(tok) {
		return "", ""
	}
	_, rest, _ := strings.Cut(tok, ".")
	payload, _, _ := strings.Cut(rest, ".")
	raw, err := base64RawURL(payload)
	if err != nil {
		return "", ""
	}
	var c struct {
		Iss string `json:"iss"`
		Sub string `json:"sub"`
	}
	if json.Unmarshal(raw, &c) != nil {
		return "", ""
	}
	return c.Iss, c.Sub
}

// tokenView is the bearer token of a request, parsed at most once per decision.
type tokenView struct {
	loaded   bool
	meta     *structpb.Struct // Envoy jwt_authn metadata: verified payloads as struct fields
	c        *claims
	tooLarge bool
	// auth and mdAuth are the Authorization and Grpc-Metadata-Authorization headers, looked up once.
	auth, mdAuth string
}

func (a *Authorizer) loadToken(req *Request, tv *tokenView) {
	if tv.loaded {
		return
	}
	tv.loaded = true
	if len(req.JWTMetadata.GetFields()) > 0 {
		tv.meta = req.JWTMetadata
		return
	}
	tv.auth, tv.mdAuth = req.Headers["authorization"], req.Headers[grpcMetadataAuthorization]
	tok := bearerToken(tv.auth)
	if tok == "" {
		tok = bearerToken(tv.mdAuth)
	}
	if tok == "" || !looksLikeJWT(tok) {
		return // no token, or an opaque one: nothing to read, pass through
	}
	tv.c, tv.tooLarge = a.parsedClaims(tok)
}

// grpcMetadataAuthorization is another spelling of Authorization: grpc-gateway (ZITADEL's REST APIs) passes a
// "Grpc-Metadata-" header on as the metadata it names.
const grpcMetadataAuthorization = "grpc-metadata-authorization"

// eachToken calls f with the claims of every bearer JWT of the request, the first from tv (parsed once per
// decision), until f returns true. An Authorization header repeated with another token reaches deact as one
// joined value, and Grpc-Metadata-Authorization is the same header to grpc-gateway; the upstream reads one of
// them, so each counts. jwt_authn metadata, when present, stands for the token and f is not called.
func (a *Authorizer) eachToken(req *Request, tv *tokenView, f func(c *claims) bool) bool {
	a.loadToken(req, tv)
	if tv.meta != nil {
		return false
	}
	if tv.c != nil && f(tv.c) {
		return true
	}
	first := true
	if auth := tv.auth; strings.IndexByte(auth, ',') >= 0 {
		if a.moreTokens(auth, &first, tv, f) {
			return true
		}
	} else if auth != "" {
		first = false // one value: tv holds its token, if it has one
	}
	return a.moreTokens(tv.mdAuth, &first, tv, f)
}

// moreTokens is eachToken for one header; first is set until the token tv holds has gone by.
func (a *Authorizer) moreTokens(auth string, first *bool, tv *tokenView, f func(c *claims) bool) bool {
	if auth == "" {
		return false
	}
	it := newBearerTokens(auth)
	for tok, ok := it.next(); ok; tok, ok = it.next() {
		if *first {
			*first = false // tv holds it
			continue
		}
		if !looksLikeJWT(tok) {
			continue
		}
		c, tooLarge := a.parsedClaims(tok)
		if tooLarge {
			tv.tooLarge = true
			continue
		}
		if c != nil && f(c) {
			return true
		}
	}
	return false
}

// tokenSubjects checks the subjects the request's tokens name.
func (a *Authorizer) tokenSubjects(req *Request, e *evaluator, tv *tokenView) bool {
	a.loadToken(req, tv)
	if tv.meta != nil {
		for _, v := range tv.meta.GetFields() {
			if st := v.GetStructValue(); st != nil && a.claims.checkStruct(st, e) {
				return true
			}
		}
	}
	if a.eachToken(req, tv, func(c *claims) bool {
		for _, s := range c.subjects {
			if e.check(s.Kind, s.ID) {
				return true
			}
		}
		return false
	}) {
		return true
	}
	if tv.tooLarge {
		e.deny(ReasonTokenTooLarge, Subject{}, Subject{})
		return true
	}
	return false
}

func (c *claims) subjectsOrNil() []Subject {
	if c == nil {
		return nil
	}
	return c.subjects
}

// parsedClaims returns the claims of a JWT, from the cache or parsed (and cached). A token larger than
// MaxTokenBytes is not parsed: tooLarge.
func (a *Authorizer) parsedClaims(tok string) (c *claims, tooLarge bool) {
	if len(tok) > a.maxToken {
		return nil, true
	}
	if a.cache != nil {
		if c, ok := a.cache.get(tok); ok {
			return c, false
		}
	}
	c, err := a.claims.parseJWT(tok)
	if err != nil {
		c = notJWT
	}
	if a.cache != nil {
		a.cache.put(tok, c)
	}
	return c, false
}

// loginNamesInBody checks the login names and user IDs of a login request body: any "username", "loginName" or
// "userId" field in any spelling an upstream accepts (fieldIs: protojson's "login_name" too), nested ones
// included (ZITADEL's checks.user.loginName), in JSON, XML (attributes or elements, e.g. Commvault's
// DM2ContentIndexing_CheckCredentialReq), a form, or the protobuf of a gRPC, gRPC-Web or Connect
// SessionService call. A "domain" field names an org domain directly where domainField is set (Commvault). A
// body deact cannot read whole is recorded on e (the decision refuses it unless something else denies).
func loginNamesInBody(req *Request, e *evaluator, domainField bool) bool {
	st := walkBody(req, func(k, v string) bool {
		switch {
		case fieldIs(k, "username"), fieldIs(k, "loginname"):
			return e.checkLogin(v)
		case fieldIs(k, "userid"):
			return e.check(SubjectAccount, strings.TrimSpace(v))
		case domainField && fieldIs(k, "domain") && strings.TrimSpace(v) != "":
			return e.check(SubjectDomain, state.NormalizeDomain(strings.TrimSpace(v)))
		}
		return false
	})
	e.bodyFailed(st)
	return e.denied
}

// commvaultTaskOp classifies a Commvault CreateTask by its subtasks. A task deact cannot tell apart (no body, as
// behind nginx, a body cut at the proxy's limit, or one it cannot read) is checked against both the backup and
// the restore flags; a whole body without a backup or restore subtask is op other.
func commvaultTaskOp(req *Request) (Op, state.Ops) {
	both := state.OpBackup | state.OpRestore
	if strings.TrimSpace(req.Body) == "" {
		return OpBackup, both
	}
	var backup, restore bool
	st := walkBody(req, func(k, v string) bool {
		if !fieldIs(k, "subtasktype") && !fieldIs(k, "operationtype") {
			return false
		}
		switch {
		case hasMediaSubstring(v, "restore"):
			restore = true
		case hasMediaSubstring(v, "backup"):
			backup = true
		case fieldIs(k, "subtasktype") && strings.TrimSpace(v) == "2": // TMMsg: BACKUP
			backup = true
		case fieldIs(k, "subtasktype") && strings.TrimSpace(v) == "3": // TMMsg: RESTORE
			restore = true
		}
		return false
	})
	switch {
	case st != bodyRead || (backup && restore):
		if restore {
			return OpRestore, both
		}
		return OpBackup, both
	case restore:
		return OpRestore, state.OpRestore
	case backup:
		return OpBackup, state.OpBackup
	}
	return OpOther, 0
}
