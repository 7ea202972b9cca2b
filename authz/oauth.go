package authz

import (
	"encoding/json"
	"strings"

	"github.com/deact/deact/state"
)

// oauthParams checks the OAuth 2 parameters of a request to an authorization server: client_id (query, form
// body, HTTP Basic), scopes naming orgs, domains and projects, login_hint, and the JWTs of the jwt-bearer grant
// (RFC 7523: the assertion's iss/sub are accounts), private_key_jwt client authentication (client_assertion:
// iss/sub are the client) and token exchange (RFC 8693: subject_token and actor_token claims). Refresh tokens
// and authorization codes are opaque and checked through the client only.
func (a *Authorizer) oauthParams(req *Request, in *bodyInput, e *evaluator, tv *tokenView) bool {
	if a.oauthFrom(req.Query, e) {
		return true
	}
	if in.typedFrom(req).formDeclared() {
		switch in.load(req); {
		case in.incomplete:
			e.bodyFailed(bodyIncomplete) // a prefix, or none of the form the upstream will read
		case in.encoded:
			e.bodyFailed(bodyUnreadable)
		}
	}
	if in.isForm() && a.oauthFrom(in.body, e) {
		return true
	}
	c := credentials{list{tv.authorization(req)}}
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
