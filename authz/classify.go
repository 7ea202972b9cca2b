package authz

import (
	"strings"
	"time"

	"github.com/deact/deact/state"
	"google.golang.org/protobuf/types/known/structpb"
)

// decideNow classifies req and decides it against the current snapshot, applying the fence and the staleness
// policy. It returns ErrNotReady (and no decision) before the replica is ready, and ErrFenced while the node is
// fenced. It neither logs nor counts; Check and the HTTP handler do.
func (a *Authorizer) decideNow(req *Request, d *Decision) error {
	snap := a.snapshot()
	if snap == nil {
		return ErrNotReady
	}
	a.decide(snap, req, d, nil)
	// Op other reads no state, so no answer for it can be stale.
	if d.Action == ActionOther {
		return nil
	}
	bound := a.stale[d.Action]
	if a.fenced == nil && (bound == 0 || !d.Allow) {
		return nil // nothing here reads the clock
	}
	// One clock reading serves the fence and the staleness bound. It is taken after the decision, so that the
	// snapshot the decision read is no older than the moment the fence held and the staleness is measured.
	now := a.monoNow()
	if a.fenced != nil && a.fenced(now) {
		return ErrFenced
	}
	if d.Allow && bound > 0 && a.staleness(now) > bound {
		d.Allow, d.Reason = false, ReasonStale
	}
	return nil
}

// monoNow is now, read from the monotonic clock alone: time.Since of a time with a monotonic reading reads only
// that clock, where time.Now reads the wall clock too. Its monotonic reading is exact and its wall part is the
// epoch's plus the time since; NodeReporter.FencedAt and Replica.StalenessAt use only the monotonic one.
func (a *Authorizer) monoNow() time.Time { return a.epoch.Add(time.Since(a.epoch)) }

// Classify returns the op of req and every subject it names, in the order the decision checks them, without
// consulting any state. A path that a Go server and a servlet container read differently (';', '\') is
// classified both ways: the op is the first reading's that is not other, the subjects those of both. It is for
// tests that hold configuration generated from the presets (package envoy) to the classifier; it allocates.
func (a *Authorizer) Classify(req *Request) (Action, []Subject) {
	var subjects []Subject
	var d Decision
	a.decide(nil, req, &d, func(s Subject) { subjects = append(subjects, s) })
	return d.Action, subjects
}

// decide classifies req and checks every subject it finds against snap, stopping at the first deny. It is the
// one decision function behind Check, the HTTP handler and Classify. It takes no lock, makes no etcd call and
// allocates nothing where the package doc says so.
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
		if !d2.Allow || (d.Action == ActionOther && d2.Action != ActionOther) {
			*d = d2
		}
	}
}

func (a *Authorizer) decidePath(snap *state.Snapshot, req *Request, canon string, d *Decision, visit func(Subject)) {
	*d = Decision{Allow: true, Revision: snap.Revision()}
	var m match
	var in bodyInput // looked up when a source first reads the body
	rt := a.matchRoute(req.Method, canon, &m)
	op, mask := ActionOther, state.Ops(0)
	if rt != nil {
		d.Route, d.Surface = rt.name, rt.surface
		op, mask = rt.op, rt.mask
	}
	if v := req.Route[FactOp]; v != "" {
		o, ok := parseActionFast(strings.TrimSpace(v))
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
		op, mask = commvaultTaskOp(in.load(req))
	}
	d.Action = op
	if op == ActionOther {
		return
	}
	e := evaluator{snap: snap, mask: mask, apps: op.appsApply(), visit: visit}
	a.subjects(req, &in, rt, &m, op, &e)
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

// subjects walks the request's sources in order of trust and checks each subject as it is found. in is
// req's body, loaded by the first source that reads it.
func (a *Authorizer) subjects(req *Request, in *bodyInput, rt *route, m *match, op Action, e *evaluator) {
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
			if a.checkSource(req, in, m, &rt.sources[i], e, &tv) {
				return
			}
		}
		switch rt.body {
		case bodyLoginName:
			if loginNamesInBody(in.load(req), e, false) {
				return
			}
		case bodyCommvaultLogin:
			l := list{req.Headers["username"]}
			for v, ok := l.next(); ok; v, ok = l.next() {
				if e.checkLogin(v) {
					return
				}
			}
			if loginNamesInBody(in.load(req), e, true) {
				return
			}
		}
	}
	if op == ActionLogin || op == ActionToken || (rt != nil && rt.oauth) {
		if a.oauthParams(req, in, e, &tv) {
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

func (a *Authorizer) checkSource(req *Request, in *bodyInput, m *match, s *source, e *evaluator, tv *tokenView) bool {
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
		if in.typedFrom(req).formDeclared() && in.load(req).incomplete {
			e.bodyFailed(bodyIncomplete)
		}
		if in.isForm() {
			return checkParam(in.body, s, e)
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
