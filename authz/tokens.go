package authz

import (
	"strings"

	"google.golang.org/protobuf/types/known/structpb"
)

// tokenView is the bearer token of a request, parsed at most once per decision.
type tokenView struct {
	loaded   bool
	meta     *structpb.Struct // Envoy jwt_authn metadata: verified payloads as struct fields
	c        *claims
	tooLarge bool
	// auth and mdAuth are the Authorization and Grpc-Metadata-Authorization headers, looked up once.
	auth, mdAuth string
	authLoaded   bool
}

// authorization returns req's Authorization header, looked up once per decision: the OAuth parameters (Basic
// client credentials) and the bearer tokens both read it.
func (tv *tokenView) authorization(req *Request) string {
	if !tv.authLoaded {
		tv.auth, tv.authLoaded = req.Headers["authorization"], true
	}
	return tv.auth
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
	tv.mdAuth = req.Headers[grpcMetadataAuthorization]
	tv.authorization(req)
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
