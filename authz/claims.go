package authz

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"hash/maphash"
	"strconv"
	"strings"
	"time"

	"github.com/dgraph-io/ristretto/v2"
	"google.golang.org/protobuf/types/known/structpb"
)

// ClaimMapping says which JWT claims name which subjects in tokens of one issuer. A claim's value may be a
// string, a number or an array of them. Project claims are looked up as project IDs, so an "aud" that lists
// client IDs next to project IDs is fine: only registered projects can deny.
type ClaimMapping struct {
	Issuer  string   `json:"issuer"`  // exact "iss" value; "" for the mapping used when no issuer matches
	Org     []string `json:"org"`     // claims holding org IDs
	Client  []string `json:"client"`  // claims holding OAuth client IDs
	Project []string `json:"project"` // claims holding project IDs
	Account []string `json:"account"` // claims holding user or service account IDs
}

// ZITADELClaims is the default mapping, for tokens issued by ZITADEL: the user's org
// (urn:zitadel:iam:user:resourceowner:id) and the requested org scope (urn:zitadel:iam:org:id), the client
// (azp, client_id), the audience's projects (aud) and the user (sub).
func ZITADELClaims() ClaimMapping {
	return ClaimMapping{
		Org:     []string{"urn:zitadel:iam:user:resourceowner:id", "urn:zitadel:iam:org:id"},
		Client:  []string{"azp", "client_id"},
		Project: []string{"aud"},
		Account: []string{"sub"},
	}
}

func (m *ClaimMapping) validate() error {
	if len(m.Org)+len(m.Client)+len(m.Project)+len(m.Account) == 0 {
		return errors.New("maps no claim")
	}
	for _, names := range [][]string{m.Org, m.Client, m.Project, m.Account} {
		for _, n := range names {
			if n == "" {
				return errors.New("has an empty claim name")
			}
		}
	}
	return nil
}

// claimMapper applies the configured mappings; it is immutable after New.
type claimMapper struct {
	byIssuer map[string]*ClaimMapping
	def      *ClaimMapping
	extra    []string // claims read by custom rules, kept verbatim in parsed claims
}

func newClaimMapper(ms []ClaimMapping, extra []string) (claimMapper, error) {
	cm := claimMapper{byIssuer: map[string]*ClaimMapping{}, extra: extra}
	for i := range ms {
		m := ms[i]
		if err := m.validate(); err != nil {
			return cm, fmt.Errorf("claim mapping %d (issuer %q): %w", i, m.Issuer, err)
		}
		if m.Issuer == "" {
			if cm.def != nil {
				return cm, fmt.Errorf("claim mapping %d: a second mapping without issuer", i)
			}
			cm.def = &m
			continue
		}
		if _, dup := cm.byIssuer[m.Issuer]; dup {
			return cm, fmt.Errorf("claim mapping %d: issuer %q appears twice", i, m.Issuer)
		}
		cm.byIssuer[m.Issuer] = &m
	}
	if cm.def == nil {
		z := ZITADELClaims()
		cm.def = &z
	}
	return cm, nil
}

func (cm *claimMapper) forIssuer(iss string) *ClaimMapping {
	if m, ok := cm.byIssuer[iss]; ok {
		return m
	}
	return cm.def
}

// claims is what deact keeps of a parsed token: the subjects it names, never its deactivation state (that is
// looked up in the current snapshot at every decision). Immutable once cached.
type claims struct {
	subjects []Subject
	extra    map[string][]string // claims custom rules read
	exp      int64               // unix seconds, 0 if none
}

// parseJWT reads a JWS compact token's payload WITHOUT verifying its signature. That is safe here because deact
// is a deny-list in front of an upstream that verifies the token itself: a forged token can only make deact deny
// (by naming a deactivated subject), never get a request past the upstream's own verification. Tokens that are
// not three base64url segments with a JSON object payload are reported as errNotJWT.
func (cm *claimMapper) parseJWT(tok string) (*claims, error) {
	_, rest, ok := strings.Cut(tok, ".")
	if !ok {
		return nil, errNotJWT
	}
	payload, sig, ok := strings.Cut(rest, ".")
	if !ok || strings.Contains(sig, ".") || payload == "" {
		return nil, errNotJWT
	}
	raw, err := base64RawURL(payload)
	if err != nil {
		return nil, errNotJWT
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil || m == nil {
		return nil, errNotJWT
	}
	return cm.fromMap(m), nil
}

var errNotJWT = errors.New("not a JWT")

// base64RawURL decodes a JWT segment (base64url; padding tolerated).
func base64RawURL(s string) ([]byte, error) {
	return base64.RawURLEncoding.DecodeString(strings.TrimRight(s, "="))
}

func (cm *claimMapper) fromMap(m map[string]any) *claims {
	c := &claims{}
	iss, _ := m["iss"].(string)
	mp := cm.forIssuer(iss)
	for _, g := range []struct {
		kind  SubjectKind
		names []string
	}{{SubjectOrg, mp.Org}, {SubjectClient, mp.Client}, {SubjectProject, mp.Project}, {SubjectAccount, mp.Account}} {
		for _, n := range g.names {
			claimStrings(m[n], func(s string) { c.subjects = append(c.subjects, Subject{g.kind, s}) })
		}
	}
	for _, n := range cm.extra {
		claimStrings(m[n], func(s string) {
			if c.extra == nil {
				c.extra = map[string][]string{}
			}
			c.extra[n] = append(c.extra[n], s)
		})
	}
	if n, ok := m["exp"].(json.Number); ok {
		if v, err := n.Int64(); err == nil {
			c.exp = v
		} else if f, err := n.Float64(); err == nil && f > 0 && f < 1e15 {
			c.exp = int64(f)
		}
	}
	return c
}

// claimStrings calls f for each string or number in a claim value (one value or an array of them).
func claimStrings(v any, f func(string)) {
	switch v := v.(type) {
	case string:
		if v != "" {
			f(v)
		}
	case json.Number:
		f(v.String())
	case []any:
		for _, x := range v {
			switch x := x.(type) {
			case string:
				if x != "" {
					f(x)
				}
			case json.Number:
				f(x.String())
			}
		}
	}
}

// checkStruct evaluates the subjects of one verified claims payload from Envoy's jwt_authn metadata, reading
// the protobuf struct in place.
func (cm *claimMapper) checkStruct(st *structpb.Struct, e *evaluator) bool {
	mp := cm.forIssuer(st.GetFields()["iss"].GetStringValue())
	for _, g := range [...]struct {
		kind  SubjectKind
		names []string
	}{{SubjectOrg, mp.Org}, {SubjectClient, mp.Client}, {SubjectProject, mp.Project}, {SubjectAccount, mp.Account}} {
		for _, n := range g.names {
			if checkValue(e, g.kind, st.GetFields()[n]) {
				return true
			}
		}
	}
	return false
}

// checkValue evaluates a struct value that is a string, a number or a list of them.
func checkValue(e *evaluator, kind SubjectKind, v *structpb.Value) bool {
	switch x := v.GetKind().(type) {
	case *structpb.Value_StringValue:
		return e.check(kind, x.StringValue)
	case *structpb.Value_NumberValue:
		return e.check(kind, strconv.FormatFloat(x.NumberValue, 'f', -1, 64))
	case *structpb.Value_ListValue:
		for _, item := range x.ListValue.GetValues() {
			switch y := item.GetKind().(type) {
			case *structpb.Value_StringValue:
				if e.check(kind, y.StringValue) {
					return true
				}
			case *structpb.Value_NumberValue:
				if e.check(kind, strconv.FormatFloat(y.NumberValue, 'f', -1, 64)) {
					return true
				}
			}
		}
	}
	return e.denied
}

// tokenCache holds parsed claims by token. Keys are hashed with two process-random seeds (128 bits; ristretto
// stores only the hashes, never the token), entries live at most until the token's exp and never longer than
// maxTTL, and the cache is bounded by entry count.
type tokenCache struct {
	c      *ristretto.Cache[string, *claims]
	maxTTL time.Duration
	now    func() time.Time
}

// notJWT is cached for tokens that look like JWTs but do not parse, so garbage is not re-parsed per request.
var notJWT = &claims{}

func newTokenCache(entries int64, maxTTL time.Duration) (*tokenCache, error) {
	s1, s2 := maphash.MakeSeed(), maphash.MakeSeed()
	c, err := ristretto.NewCache(&ristretto.Config[string, *claims]{
		NumCounters:        entries * 10,
		MaxCost:            entries,
		BufferItems:        64,
		IgnoreInternalCost: true,
		KeyToHash: func(k string) (uint64, uint64) {
			return maphash.String(s1, k), maphash.String(s2, k)
		},
	})
	if err != nil {
		return nil, err
	}
	return &tokenCache{c: c, maxTTL: maxTTL, now: time.Now}, nil
}

func (tc *tokenCache) get(tok string) (*claims, bool) { return tc.c.Get(tok) }

func (tc *tokenCache) put(tok string, c *claims) {
	ttl := tc.maxTTL
	if c == notJWT {
		ttl = min(ttl, time.Minute)
	} else if c.exp > 0 {
		left := time.Unix(c.exp, 0).Sub(tc.now())
		if left <= 0 {
			return // expired: the upstream will refuse it; not worth a slot
		}
		ttl = min(ttl, left)
	}
	tc.c.SetWithTTL(tok, c, 1, ttl)
}

func (tc *tokenCache) close() { tc.c.Close() }

// looksLikeJWT reports whether tok has the shape of a JWS compact token (three non-empty dot-separated parts);
// JWE (five parts) and opaque tokens pass through untouched.
func looksLikeJWT(tok string) bool {
	first := strings.IndexByte(tok, '.')
	if first <= 0 {
		return false
	}
	second := strings.IndexByte(tok[first+1:], '.')
	if second <= 0 {
		return false
	}
	return strings.IndexByte(tok[first+1+second+1:], '.') < 0
}
