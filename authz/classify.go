package authz

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"strings"

	"github.com/deact/deact/state"
	"google.golang.org/protobuf/types/known/structpb"
)

// decide classifies req and checks every subject it finds against snap, stopping at the first deny. It is the
// one decision function behind Check, the HTTP handler and Decide. It takes no lock, makes no etcd call and, for
// requests whose subjects come from route facts, headers or a cached token, does not allocate.
func (a *Authorizer) decide(snap *state.Snapshot, req *Request, d *Decision, visit func(Subject)) {
	*d = Decision{Allow: true, Revision: snap.Revision()}
	var m match
	rt := a.matchRoute(req.Method, canonicalPath(req.Path), &m)
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
		op, mask = commvaultTaskOp(req.Body)
	}
	d.Op = op
	if op == OpOther {
		return
	}
	e := evaluator{snap: snap, mask: mask, apps: op.appsApply(), visit: visit}
	a.subjects(req, rt, &m, op, &e)
	if e.denied {
		d.Allow, d.Reason, d.Subject, d.Via = false, e.reason, e.subj, e.via
	}
}

// subjects walks the request's sources in order of trust and checks each subject as it is found.
func (a *Authorizer) subjects(req *Request, rt *route, m *match, op Op, e *evaluator) {
	if e.checkList(SubjectOrg, req.Route[FactOrgID]) ||
		e.checkList(SubjectProject, req.Route[FactProjectID]) ||
		e.checkList(SubjectApp, req.Route[FactAppID]) ||
		e.checkList(SubjectClient, req.Route[FactClientID]) {
		return
	}
	if e.checkList(SubjectOrg, req.Headers["x-zitadel-orgid"]) {
		return
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
			if e.checkLogin(req.Headers["username"]) || loginNamesInBody(req, e, true) {
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
		if tv.c != nil {
			for _, v := range tv.c.extra[s.name] {
				if e.checkAs(s, v) {
					return true
				}
			}
		}
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

func isForm(req *Request) bool {
	return req.Body != "" && hasMediaSubstring(req.Headers["content-type"], "application/x-www-form-urlencoded")
}

// oauthParams checks the OAuth 2 parameters of a request to an authorization server: client_id (query, form
// body, HTTP Basic), scopes naming orgs, domains and projects, login_hint, and the JWTs of the jwt-bearer grant
// (RFC 7523: the assertion's iss/sub are accounts), private_key_jwt client authentication (client_assertion:
// iss/sub are the client) and token exchange (RFC 8693: subject_token and actor_token claims). Refresh tokens
// and authorization codes are opaque and checked through the client only.
func (a *Authorizer) oauthParams(req *Request, e *evaluator) bool {
	if a.oauthFrom(req.Query, e) {
		return true
	}
	if isForm(req) && a.oauthFrom(req.Body, e) {
		return true
	}
	if u := basicUser(req.Headers["authorization"]); u != "" {
		return e.check(SubjectClient, u)
	}
	return false
}

const (
	scopeOrgID     = "urn:zitadel:iam:org:id:"
	scopeOrgDomain = "urn:zitadel:iam:org:domain:primary:"
	scopeProject   = "urn:zitadel:iam:org:project:id:"
)

var oauthKeys = [...]string{"client_id", "scope", "login_hint", "assertion", "client_assertion", "subject_token", "actor_token"}

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
		case "subject_token", "actor_token":
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
	tok := bearerToken(req.Headers["authorization"])
	if tok == "" || !looksLikeJWT(tok) {
		return // no token, or an opaque one: nothing to read, pass through
	}
	tv.c, tv.tooLarge = a.parsedClaims(tok)
}

// tokenSubjects checks the subjects the request's token names.
func (a *Authorizer) tokenSubjects(req *Request, e *evaluator, tv *tokenView) bool {
	a.loadToken(req, tv)
	if tv.tooLarge {
		e.deny(ReasonTokenTooLarge, Subject{}, Subject{})
		return true
	}
	if tv.meta != nil {
		for _, v := range tv.meta.GetFields() {
			if st := v.GetStructValue(); st != nil && a.claims.checkStruct(st, e) {
				return true
			}
		}
	}
	for _, s := range tv.c.subjectsOrNil() {
		if e.check(s.Kind, s.ID) {
			return true
		}
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

// loginNamesInBody checks the login names of a login request body: JSON (any "username" or "loginName" field,
// nested ones included, e.g. ZITADEL's checks.user.loginName), XML (attributes or elements of those names, e.g.
// Commvault's DM2ContentIndexing_CheckCredentialReq) or a form. A "domain" field names an org domain directly
// where domainField is set (Commvault).
func loginNamesInBody(req *Request, e *evaluator, domainField bool) bool {
	if req.Body == "" {
		return false
	}
	walkBody(req, func(k, v string) bool {
		switch {
		case strings.EqualFold(k, "username"), strings.EqualFold(k, "loginName"):
			return e.checkLogin(v)
		case domainField && strings.EqualFold(k, "domain") && strings.TrimSpace(v) != "":
			return e.check(SubjectDomain, state.NormalizeDomain(strings.TrimSpace(v)))
		}
		return false
	})
	return e.denied
}

// commvaultTaskOp classifies a Commvault CreateTask by its subtasks. Without a body the task cannot be told
// apart, so both backup and restore flags deny; a body without a backup or restore subtask is op other.
func commvaultTaskOp(body string) (Op, state.Ops) {
	if strings.TrimSpace(body) == "" {
		return OpBackup, state.OpBackup | state.OpRestore
	}
	var backup, restore bool
	walkBody(&Request{Body: body}, func(k, v string) bool {
		if !strings.EqualFold(k, "subTaskType") && !strings.EqualFold(k, "operationType") {
			return false
		}
		switch {
		case hasMediaSubstring(v, "restore"):
			restore = true
		case hasMediaSubstring(v, "backup"):
			backup = true
		case strings.EqualFold(k, "subTaskType") && v == "2": // TMMsg: BACKUP
			backup = true
		case strings.EqualFold(k, "subTaskType") && v == "3": // TMMsg: RESTORE
			restore = true
		}
		return false
	})
	switch {
	case backup && restore:
		return OpRestore, state.OpBackup | state.OpRestore
	case restore:
		return OpRestore, state.OpRestore
	case backup:
		return OpBackup, state.OpBackup
	}
	return OpOther, 0
}

// maxBodyItems bounds the fields walkBody visits, so a hostile body costs bounded work.
const maxBodyItems = 4096

// walkBody calls f for every (name, scalar value) of a JSON, XML or form body, until f returns true.
func walkBody(req *Request, f func(k, v string) bool) {
	body := strings.TrimLeft(req.Body, " \t\r\n")
	if body == "" {
		return
	}
	budget := maxBodyItems
	switch body[0] {
	case '{', '[':
		dec := json.NewDecoder(strings.NewReader(body))
		dec.UseNumber()
		var v any
		if dec.Decode(&v) == nil {
			walkJSON("", v, f, &budget, 0)
		}
	case '<':
		walkXML(body, f, budget)
	default:
		if isForm(req) {
			it := params{body}
			for k, v, ok := it.next(); ok && budget > 0; k, v, ok = it.next() {
				budget--
				key, ok1 := unescape(k)
				val, ok2 := unescape(v)
				if ok1 && ok2 && f(key, val) {
					return
				}
			}
		}
	}
}

func walkJSON(key string, v any, f func(k, v string) bool, budget *int, depth int) bool {
	if *budget <= 0 || depth > 64 {
		return true
	}
	*budget--
	switch v := v.(type) {
	case map[string]any:
		for k, x := range v {
			if walkJSON(k, x, f, budget, depth+1) {
				return true
			}
		}
	case []any:
		for _, x := range v {
			if walkJSON(key, x, f, budget, depth+1) {
				return true
			}
		}
	case string:
		return f(key, v)
	case json.Number:
		return f(key, v.String())
	}
	return false
}

func walkXML(body string, f func(k, v string) bool, budget int) {
	dec := xml.NewDecoder(strings.NewReader(body))
	dec.Strict = false
	var elem string
	for ; budget > 0; budget-- {
		tok, err := dec.Token()
		if err != nil {
			return // io.EOF or a syntax error: nothing more to read
		}
		switch t := tok.(type) {
		case xml.StartElement:
			elem = t.Name.Local
			for _, at := range t.Attr {
				if f(at.Name.Local, at.Value) {
					return
				}
			}
		case xml.CharData:
			if s := string(bytes.TrimSpace(t)); s != "" && elem != "" && f(elem, s) {
				return
			}
		case xml.EndElement:
			elem = ""
		}
	}
}
