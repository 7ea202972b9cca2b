package authz

import (
	"github.com/deact/deact/state"
)

// SubjectKind is the kind of entity a request names.
type SubjectKind uint8

const (
	SubjectNone    SubjectKind = iota
	SubjectOrg                 // an organization ID
	SubjectProject             // a project ID
	SubjectApp                 // an application ID
	SubjectClient              // an OAuth client_id, resolved through the client index
	SubjectAccount             // a user or service account ID, resolved to its org
	SubjectDomain              // an org domain (lower case), resolved to its org
)

var subjectNames = [...]string{"none", "org", "project", "app", "client", "account", "domain"}

// String returns the kind's name as used in logs: org, project, app, client, account or domain.
func (k SubjectKind) String() string {
	if int(k) < len(subjectNames) {
		return subjectNames[k]
	}
	return "unknown"
}

// Subject is one entity a request names or implies.
type Subject struct {
	Kind SubjectKind
	ID   string
}

// Reason is a stable, machine-readable code for a decision, sent to clients in the x-deact-reason header of a
// deny and used in logs. It never carries an ID.
type Reason string

const (
	ReasonNone               Reason = ""
	ReasonOrgDeactivated     Reason = "org_deactivated"     // an org implied by the request is deactivated for the op
	ReasonProjectDeactivated Reason = "project_deactivated" // the project of the app or token is deactivated
	ReasonAppDeactivated     Reason = "app_deactivated"     // the app (or the client's app) is deactivated
	ReasonStale              Reason = "state_stale"         // the replica is staler than the op's deny-after bound
	ReasonTokenTooLarge      Reason = "token_too_large"     // a JWT larger than Config.MaxTokenBytes: not inspected, denied
	ReasonBadRouteFact       Reason = "bad_route_config"    // the route states an op deact does not know: fail closed
	// ReasonBodyIncomplete: the decision depends on the body and deact saw only a prefix of it (the proxy cut it
	// at its limit, or sent none of an announced body); refused with 413 rather than allowed unseen.
	ReasonBodyIncomplete Reason = "body_incomplete"
	// ReasonBodyUnreadable: the decision depends on the body and deact cannot read it (compressed, a malformed
	// frame or document); refused with 400. The upstream would reject such a body too.
	ReasonBodyUnreadable Reason = "body_unreadable"
)

// Decision is the outcome for one request. The zero value is not meaningful; Allow is the only field an
// enforcing caller needs, the others explain it.
type Decision struct {
	Action  Action
	Allow   bool
	Reason  Reason  // ReasonNone on allow
	Subject Subject // the deactivated record that caused a deny
	// Via is the subject as the request named it when the deny came through a lookup (a client_id whose app's
	// org is deactivated: Via is the client, Subject the org); equal to Subject otherwise.
	Via      Subject
	Surface  Surface // how to shape the deny
	Route    string  // name of the matched rule or preset route, "" if none
	Revision int64   // revision of the snapshot decided on
}

// evaluator checks subjects against one snapshot for one op as classification finds them, and records the
// first one that denies. It never allocates; visit, when set (tests, Classify), sees every subject.
//
// The result is held by value, not written through a pointer: snapshot lookups make the evaluator's pointees
// escape, and a *Decision among them would move every caller's Decision to the heap.
type evaluator struct {
	snap  *state.Snapshot
	mask  state.Ops
	apps  bool
	visit func(Subject)

	denied    bool
	reason    Reason
	subj, via Subject
	body      bodyStatus // the worst reading of a body the decision depends on
}

// bodyFailed records that a body the decision depends on was not read whole.
func (e *evaluator) bodyFailed(st bodyStatus) {
	if st > e.body {
		e.body = st
	}
}

func (e *evaluator) deny(reason Reason, subj, via Subject) {
	e.denied, e.reason, e.subj, e.via = true, reason, subj, via
}

// check evaluates one subject the request names; it reports whether a deny has been reached (so callers may
// stop looking for more).
func (e *evaluator) check(kind SubjectKind, id string) bool {
	if e.denied {
		return true
	}
	if id == "" {
		return false
	}
	via := Subject{Kind: kind, ID: id}
	if e.visit != nil {
		e.visit(via)
	}
	if e.snap == nil {
		return false // classifying only (Classify): nothing to look up
	}
	switch kind {
	case SubjectOrg:
		e.org(id, via)
	case SubjectProject:
		e.project(id, via)
	case SubjectApp:
		e.app(id, via)
	case SubjectClient:
		// The entry names its app exactly (project and app), and its org: check both. It is a chain when layers
		// disagree about whose client this is (state.Client.Next): every entry is checked.
		for c := e.snap.Client(id); c != nil && !e.denied; c = c.Next {
			var checked string
			if a := e.snap.App(c.ProjectID, c.AppID); a != nil {
				checked = e.appRecord(a, via)
			} else {
				checked = e.project(c.ProjectID, via)
			}
			if c.OrgID != checked { // the entry's org is almost always its app's: one lookup of it is enough
				e.org(c.OrgID, via)
			}
		}
	case SubjectAccount:
		if a := e.snap.Account(id); a != nil {
			e.org(a.OrgID, via)
		}
	case SubjectDomain:
		for d := e.snap.Domain(id); d != nil && !e.denied; d = d.Next {
			e.org(d.OrgID, via)
		}
	}
	return e.denied
}

func (e *evaluator) org(id string, via Subject) {
	if e.denied || id == "" {
		return
	}
	if o := e.snap.Org(id); o != nil && o.Disabled&e.mask != 0 {
		e.deny(ReasonOrgDeactivated, Subject{SubjectOrg, id}, via)
	}
}

// project checks a project and its orgs. It returns the project's org, which it has checked ("" when there is
// no such project or a deny stopped it first), so that a caller about to check the same org can skip it.
func (e *evaluator) project(id string, via Subject) (org string) {
	if e.denied || id == "" {
		return ""
	}
	p := e.snap.Project(id)
	if p == nil {
		return ""
	}
	if e.apps && p.IsDeactivated() {
		e.deny(ReasonProjectDeactivated, Subject{SubjectProject, id}, via)
		return ""
	}
	e.org(p.OrgID, via)
	for _, o := range p.OtherOrgIDs {
		e.org(o, via)
	}
	return p.OrgID
}

// app checks a request that names an app ID alone: it is denied if any app record with that ID is deactivated,
// or any of their projects or orgs, so that no record can shadow another's deactivation.
func (e *evaluator) app(id string, via Subject) {
	if e.denied || id == "" {
		return
	}
	set := e.snap.Apps(id)
	if set == nil {
		return
	}
	if e.apps && set.Deactivated {
		e.deny(ReasonAppDeactivated, Subject{SubjectApp, id}, via)
		return
	}
	for _, a := range set.Apps {
		e.appRecord(a, via)
	}
}

// appRecord checks one app record, found exactly by project and app ID. It returns the app's org, which it
// has checked ("" when a deny stopped it first).
func (e *evaluator) appRecord(a *state.AppState, via Subject) (org string) {
	if e.denied {
		return ""
	}
	if e.apps && a.IsDeactivated() {
		e.deny(ReasonAppDeactivated, Subject{SubjectApp, a.ID}, via)
		return ""
	}
	if e.project(a.ProjectID, via) != a.OrgID { // the project's org is almost always the app's: look it up once
		e.org(a.OrgID, via)
	}
	for _, o := range a.OtherOrgIDs {
		e.org(o, via)
	}
	return a.OrgID
}

// checkList checks every item of a comma-separated list.
func (e *evaluator) checkList(kind SubjectKind, s string) bool {
	l := list{s}
	for item, ok := l.next(); ok; item, ok = l.next() {
		if e.check(kind, item) {
			return true
		}
	}
	return e.denied
}
