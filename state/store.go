package state

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Typed errors of Store writes. The admin API maps them to the statuses ZITADEL and Commvault use.
var (
	ErrAlreadyDeactivated = errors.New("already deactivated")
	ErrNotDeactivated     = errors.New("not deactivated")
	ErrNotFound           = errors.New("not found")
	ErrConflict           = errors.New("conflicting record")
	ErrForbidden          = errors.New("not allowed for this scope")
	ErrContention         = errors.New("too much contention on the record, try again")
	// ErrOtherOrg is a record registered to an org the change may not act on. It is a conflict too
	// (errors.Is(err, ErrConflict) holds); the native API answers it as forbidden.
	ErrOtherOrg error = otherOrgError{}
)

type otherOrgError struct{}

func (otherOrgError) Error() string        { return "registered to an org outside the caller's scope" }
func (otherOrgError) Is(target error) bool { return target == ErrConflict }

// Store writes deactivation state to etcd. Every write is a compare-and-swap transaction that also appends an
// audit record, and returns only after etcd committed it (a crash after the return loses nothing). Store is
// safe for concurrent use.
type Store struct {
	cli *clientv3.Client
	now func() time.Time
	// last holds what the store last wrote or read of each key it writes, so that a write usually costs etcd
	// one transaction and no read before it (see update).
	last writeCache
}

// NewStore returns a Store writing through cli.
func NewStore(cli *clientv3.Client) *Store {
	return &Store{cli: cli, now: func() time.Time { return time.Now().UTC() }}
}

// Result describes a committed write.
type Result struct {
	Revision  int64     // etcd revision of the write: the "sequence" reported to clients
	ChangedAt time.Time // write time, UTC
	OrgID     string    // the org that owns the changed record (ZITADEL's resourceOwner)
}

// Change names who makes a change, through which API and why; it becomes the record's Meta and the audit
// entry's actor. A Scoped change (one made with a token for some orgs) may act only on records owned by one of
// Orgs: it never changes a record no org owns, never becomes its owner, and creates records only for those
// orgs. An unscoped change (deact's own callers, tokens for all orgs) may act on every record.
type Change struct {
	Actor  string
	Reason string
	Via    Source // the API the change came through; empty is SourceNative
	Scoped bool
	Orgs   []string
}

// allows reports whether the change may act on records of org ("" is no org: only an unscoped change may).
func (c Change) allows(org string) bool {
	return !c.Scoped || (org != "" && slices.Contains(c.Orgs, org))
}

func (c Change) source() Source {
	if c.Via == "" {
		return SourceNative
	}
	return c.Via
}

// AuditEntry is one committed change.
type AuditEntry struct {
	At       time.Time       `json:"at"`
	Actor    string          `json:"actor"`
	Action   string          `json:"action"`
	Key      string          `json:"key"`
	Reason   string          `json:"reason,omitempty"`
	Detail   string          `json:"detail,omitempty"` // what changed, e.g. "disabled: login,token -> login,token,backup"
	Before   json.RawMessage `json:"before,omitempty"`
	After    json.RawMessage `json:"after,omitempty"`
	Revision int64           `json:"revision,omitempty"` // filled on read: the entry's own revision
}

const maxCASRetries = 64

// txnParts are the extra comparisons and operations a mutation adds to its transaction.
type txnParts struct {
	cmps   []clientv3.Cmp
	ops    []clientv3.Op
	detail string // for the audit entry
}

func (p *txnParts) add(q txnParts) {
	p.cmps = append(p.cmps, q.cmps...)
	p.ops = append(p.ops, q.ops...)
}

// update runs a compare-and-swap loop on one key: take the key's value, mutate it, commit if unchanged, else
// retry with the value the failed transaction returned.
//
// The value it starts from is a guess, so that a write usually costs etcd one round trip, the transaction: what
// this store last wrote or read of the key, else a serializable read (the nearest member's copy, without the
// leader's read-index round). The transaction's ModRevision compare makes the guess safe: a write is only ever
// committed on top of the value it was computed from. A guess that was stale fails the compare, and the
// transaction's answer carries the current value. A refusal (mutate's error) decided on a guess is checked
// against a linearizable read before it is returned, so every answer is as exact as a read-then-write.
func update[T any](ctx context.Context, s *Store, key, action string, c Change,
	mutate func(cur *T, exists bool, now time.Time) (*T, txnParts, error)) (*T, Result, error) {
	kv, ok := s.last.get(key)
	exact := false // kv is what etcd held at a linearizable point, not a guess
	if !ok {
		var err error
		if kv, err = s.readKV(ctx, key, clientv3.WithSerializable()); err != nil {
			return nil, Result{}, err
		}
	}
	for range maxCASRetries {
		next, after, parts, now, err := mutateKV(key, kv, s.now, mutate)
		if err != nil {
			if exact {
				return nil, Result{}, err
			}
			if kv, err = s.readKV(ctx, key); err != nil {
				return nil, Result{}, err
			}
			exact = true
			continue
		}
		audit, err := s.auditOp(AuditEntry{At: now, Actor: c.Actor, Action: action, Key: key, Reason: c.Reason, Detail: parts.detail, Before: kv.value, After: after})
		if err != nil {
			return nil, Result{}, err
		}
		cmps := append([]clientv3.Cmp{clientv3.Compare(clientv3.ModRevision(key), "=", kv.modRev)}, parts.cmps...)
		ops := append([]clientv3.Op{clientv3.OpPut(key, string(after)), audit}, parts.ops...)
		tresp, err := s.cli.Txn(ctx).If(cmps...).Then(ops...).Else(clientv3.OpGet(key)).Commit()
		if err != nil {
			s.last.forget(key) // it may have committed or not
			return nil, Result{}, fmt.Errorf("commit %s: %w", key, err)
		}
		if tresp.Succeeded {
			s.last.put(key, cachedKV{value: after, modRev: tresp.Header.Revision})
			return next, Result{Revision: tresp.Header.Revision, ChangedAt: now}, nil
		}
		// The key or another compared one changed: the answer holds the key as the transaction saw it.
		kv, exact = kvOf(tresp.Responses[0].GetResponseRange().GetKvs()), true
		s.last.put(key, kv)
	}
	return nil, Result{}, ErrContention
}

// mutateKV decodes key's value kv into a T, mutates it at clock's time and encodes the result.
func mutateKV[T any](key string, kv cachedKV, clock func() time.Time, mutate func(cur *T, exists bool, now time.Time) (*T, txnParts, error)) (next *T, after []byte, parts txnParts, now time.Time, err error) {
	cur := new(T)
	exists := kv.modRev != 0
	if exists {
		if err := json.Unmarshal(kv.value, cur); err != nil {
			return nil, nil, txnParts{}, now, fmt.Errorf("stored record %s is unreadable: %w", key, err)
		}
	}
	now = clock()
	if next, parts, err = mutate(cur, exists, now); err != nil {
		return nil, nil, txnParts{}, now, err
	}
	after, err = json.Marshal(next)
	return next, after, parts, now, err
}

// readKV reads one key (linearizably unless opts say otherwise) and remembers it for the next write.
func (s *Store) readKV(ctx context.Context, key string, opts ...clientv3.OpOption) (cachedKV, error) {
	resp, err := s.cli.Get(ctx, key, opts...)
	if err != nil {
		return cachedKV{}, fmt.Errorf("read %s: %w", key, err)
	}
	kv := kvOf(resp.Kvs)
	s.last.put(key, kv)
	return kv, nil
}

func kvOf(kvs []*mvccpb.KeyValue) cachedKV {
	if len(kvs) != 1 {
		return cachedKV{}
	}
	return cachedKV{value: kvs[0].Value, modRev: kvs[0].ModRevision}
}

func (s *Store) auditOp(e AuditEntry) (clientv3.Op, error) {
	var rnd [4]byte
	_, _ = rand.Read(rnd[:])
	b, err := json.Marshal(e)
	if err != nil {
		return clientv3.Op{}, err
	}
	return clientv3.OpPut(fmt.Sprintf("%s%019d-%s", AuditPrefix, e.At.UnixNano(), hex.EncodeToString(rnd[:])), string(b)), nil
}

// DeactivateOrg disables ops for the org through the change's source (c.Via), creating its record if deact had
// none. The ops are added to what that source disabled before; with exact, the source's own set becomes exactly
// ops. What other sources disabled is never touched: deactivations through different APIs add up. It fails
// with ErrAlreadyDeactivated when the source's set, with the unattributed ops, already holds ops.
func (s *Store) DeactivateOrg(ctx context.Context, id string, ops Ops, exact bool, c Change) (Result, error) {
	src := c.source()
	if err := errors.Join(ValidateID("org", id), checkSource(src)); err != nil {
		return Result{}, err
	}
	if ops == 0 {
		return Result{}, errors.New("deactivation disables no operation")
	}
	if !c.allows(id) {
		return Result{}, fmt.Errorf("org %s: %w", id, ErrForbidden)
	}
	_, res, err := update(ctx, s, OrgKey(id), "deactivate org", c, func(o *Org, exists bool, now time.Time) (*Org, txnParts, error) {
		had := o.DisabledBy[src]
		next := ops | had
		if exact {
			next = ops
		}
		// Ops no source is named for (records from before sources were kept) count as the source's own: any
		// source's reactivate takes them away, and a deactivation they already cover changes nothing.
		if exists && (next == had || (!exact && ops&^(had|o.Unattributed()) == 0)) {
			return nil, txnParts{}, fmt.Errorf("org %s: %w", id, ErrAlreadyDeactivated)
		}
		before := o.Disabled
		o.setSource(src, next)
		o.ID, o.Meta = id, Meta{Reason: c.Reason, ChangedBy: c.Actor, ChangedAt: now}
		return o, txnParts{detail: opsDetail(src, had, next, before, o.Disabled)}, nil
	})
	res.OrgID = id
	return res, err
}

// ReactivateOrg enables again what the change's source (c.Via) disabled, and what no source is named for
// (records written before sources were kept, imports without them). What other sources disabled stays
// disabled. It fails with ErrNotDeactivated when that changes nothing.
func (s *Store) ReactivateOrg(ctx context.Context, id string, c Change) (Result, error) {
	src := c.source()
	if err := errors.Join(ValidateID("org", id), checkSource(src)); err != nil {
		return Result{}, err
	}
	return s.enableOrg(ctx, id, c, func(o *Org) string {
		had := o.DisabledBy[src]
		o.Disabled &^= o.Unattributed()
		o.setSource(src, 0)
		return opsDetail(src, had, 0, 0, 0)
	}, "through "+string(src))
}

// EnableOrgOps enables ops of the org again whichever source disabled them: the native API's reactivate, an
// operator's override. It fails with ErrNotDeactivated when that changes nothing.
func (s *Store) EnableOrgOps(ctx context.Context, id string, ops Ops, c Change) (Result, error) {
	if err := ValidateID("org", id); err != nil {
		return Result{}, err
	}
	return s.enableOrg(ctx, id, c, func(o *Org) string {
		o.Disabled &^= ops & o.Unattributed()
		for _, src := range sortedSources(o.DisabledBy) {
			o.setSource(src, o.DisabledBy[src]&^ops)
		}
		return "enable " + ops.String()
	}, "for "+ops.String())
}

func (s *Store) enableOrg(ctx context.Context, id string, c Change, enable func(*Org) string, what string) (Result, error) {
	if !c.allows(id) {
		return Result{}, fmt.Errorf("org %s: %w", id, ErrForbidden)
	}
	_, res, err := update(ctx, s, OrgKey(id), "reactivate org", c, func(o *Org, exists bool, now time.Time) (*Org, txnParts, error) {
		if !exists || o.Disabled == 0 {
			return nil, txnParts{}, fmt.Errorf("org %s: %w", id, ErrNotDeactivated)
		}
		before := o.Disabled
		detail := enable(o)
		if o.Disabled == before {
			return nil, txnParts{}, fmt.Errorf("org %s: %w %s (still disabled: %s)", id, ErrNotDeactivated, what, o.disabledBySummary())
		}
		o.Meta = Meta{Reason: c.Reason, ChangedBy: c.Actor, ChangedAt: now}
		return o, txnParts{detail: fmt.Sprintf("%s; disabled: %s -> %s", detail, before, o.Disabled)}, nil
	})
	res.OrgID = id
	return res, err
}

// setSource sets what src disabled and recomputes Disabled, keeping the unattributed ops.
func (o *Org) setSource(src Source, ops Ops) {
	rest := o.Unattributed()
	if ops == 0 {
		delete(o.DisabledBy, src)
	} else {
		if o.DisabledBy == nil {
			o.DisabledBy = map[Source]Ops{}
		}
		o.DisabledBy[src] = ops
	}
	if len(o.DisabledBy) == 0 {
		o.DisabledBy = nil
	}
	o.Disabled = rest | union(o.DisabledBy)
}

// disabledBySummary says who holds what, e.g. "zitadel: login,token; unattributed: backup".
func (o *Org) disabledBySummary() string {
	var parts []string
	for _, src := range sortedSources(o.DisabledBy) {
		parts = append(parts, fmt.Sprintf("%s: %s", src, o.DisabledBy[src]))
	}
	if u := o.Unattributed(); u != 0 {
		parts = append(parts, "unattributed: "+u.String())
	}
	return strings.Join(parts, "; ")
}

func sortedSources(by map[Source]Ops) []Source {
	out := make([]Source, 0, len(by))
	for src := range by {
		out = append(out, src)
	}
	slices.Sort(out)
	return out
}

func opsDetail(src Source, had, next, before, after Ops) string {
	if before == 0 && after == 0 {
		return fmt.Sprintf("%s: %s -> %s", src, had, next)
	}
	return fmt.Sprintf("%s: %s -> %s; disabled: %s -> %s", src, had, next, before, after)
}

func checkSource(src Source) error {
	if !knownSource(src) {
		return fmt.Errorf("unknown source %q", src)
	}
	return nil
}

// SetProjectState deactivates or reactivates a project (and so all its apps). orgID, when not empty, must match
// the project's org (a project of another org is ErrNotFound); a deactivation of an unknown project creates its
// record with orgID, a reactivation of one is ErrNotFound. A project record without an org may be changed, and
// given an owner, only by an all-orgs change (else ErrForbidden). Creating a project, or giving one an owner,
// while apps of another org are registered under its ID is ErrConflict.
func (s *Store) SetProjectState(ctx context.Context, id, orgID string, deactivate bool, c Change) (Result, error) {
	if err := ValidateID("project", id); err != nil {
		return Result{}, err
	}
	p, res, err := update(ctx, s, ProjectKey(id), action("project", deactivate), c, func(p *Project, exists bool, now time.Time) (*Project, txnParts, error) {
		org, claims, err := owner("project "+id, exists, p.OrgID, orgID, deactivate, c)
		if err != nil {
			return nil, txnParts{}, err
		}
		if err := flip("project "+id, p.IsDeactivated(), deactivate); err != nil {
			return nil, txnParts{}, err
		}
		var parts txnParts
		if claims && org != "" {
			if parts, err = s.projectApps(ctx, id, org); err != nil {
				return nil, txnParts{}, err
			}
		}
		p.ID, p.OrgID, p.State, p.Meta = id, org, stateName(deactivate), Meta{Reason: c.Reason, ChangedBy: c.Actor, ChangedAt: now}
		return p, parts, nil
	})
	if p != nil {
		res.OrgID = p.OrgID
	}
	return res, err
}

// SetAppState deactivates or reactivates an app, with the same org rules as SetProjectState; creating an app
// record is refused (ErrConflict) when its ID is registered under another project, or its project belongs to
// another org.
func (s *Store) SetAppState(ctx context.Context, projectID, appID, orgID string, deactivate bool, c Change) (Result, error) {
	if err := errors.Join(ValidateID("project", projectID), ValidateID("app", appID)); err != nil {
		return Result{}, err
	}
	a, res, err := update(ctx, s, AppKey(projectID, appID), action("app", deactivate), c, func(a *App, exists bool, now time.Time) (*App, txnParts, error) {
		org, claims, err := owner("app "+appID, exists, a.OrgID, orgID, deactivate, c)
		if err != nil {
			return nil, txnParts{}, err
		}
		if err := flip("app "+appID, a.IsDeactivated(), deactivate); err != nil {
			return nil, txnParts{}, err
		}
		var parts txnParts
		if claims {
			if parts, err = s.claimApp(ctx, projectID, appID, org); err != nil {
				return nil, txnParts{}, err
			}
		}
		a.ID, a.ProjectID, a.OrgID, a.State = appID, projectID, org, stateName(deactivate)
		a.Meta = Meta{Reason: c.Reason, ChangedBy: c.Actor, ChangedAt: now}
		return a, parts, nil
	})
	if a != nil {
		res.OrgID = a.OrgID
	}
	return res, err
}

func action(what string, deactivate bool) string {
	if deactivate {
		return "deactivate " + what
	}
	return "reactivate " + what
}

// owner decides the org of a project or app record after a change and whether the change gives the record its
// owner (a new record, or an ownerless one given an org). Unknown records may only be created by a
// deactivation; a record of another org, or outside the change's scope, is ErrNotFound (the answer reveals no
// more than that); an ownerless record, or a new one without an org, is for all-orgs changes only.
func owner(what string, exists bool, have, want string, deactivate bool, c Change) (string, bool, error) {
	switch {
	case !exists && !deactivate:
		return "", false, fmt.Errorf("%s: %w", what, ErrNotFound)
	case !exists:
		if !c.allows(want) {
			return "", false, fmt.Errorf("%s: creating it for org %q: %w", what, want, ErrForbidden)
		}
		return want, true, nil
	case have != "":
		if (want != "" && want != have) || !c.allows(have) {
			return "", false, fmt.Errorf("%s: %w", what, ErrNotFound)
		}
		return have, false, nil
	case c.Scoped:
		return "", false, fmt.Errorf("%s has no owning org, only a token for all orgs may change it: %w", what, ErrForbidden)
	}
	return want, want != "", nil
}

func flip(what string, deactivated, deactivate bool) error {
	switch {
	case deactivate && deactivated:
		return fmt.Errorf("%s: %w", what, ErrAlreadyDeactivated)
	case !deactivate && !deactivated:
		return fmt.Errorf("%s: %w", what, ErrNotDeactivated)
	}
	return nil
}

// projectApps checks, inside the transaction, that every app registered under the project belongs to org (or
// to none): project IDs are unique in the upstream, and one org may not claim a project ID another org's apps
// name. The apps' prefix must be unchanged at commit.
func (s *Store) projectApps(ctx context.Context, projectID, org string) (txnParts, error) {
	prefix := AppKey(projectID, "")
	resp, err := s.cli.Get(ctx, prefix, clientv3.WithPrefix())
	if err != nil {
		return txnParts{}, err
	}
	for _, kv := range resp.Kvs {
		var a App
		if json.Unmarshal(kv.Value, &a) != nil || (a.OrgID != "" && a.OrgID != org) {
			return txnParts{}, fmt.Errorf("project %s has apps of another org: %w", projectID, ErrConflict)
		}
	}
	return txnParts{cmps: []clientv3.Cmp{
		clientv3.Compare(clientv3.ModRevision(prefix), "<", resp.Header.Revision+1).WithPrefix(),
	}}, nil
}

// claimApp checks, inside the transaction, that an app record (projectID, appID) may get org as its owner: the
// app ID is not registered under another project (the app-ID index), and when org is set, neither the project
// record nor another app of the project belongs to another org. It adds the app-ID index entry.
func (s *Store) claimApp(ctx context.Context, projectID, appID, org string) (txnParts, error) {
	var parts txnParts
	idx, err := s.cli.Get(ctx, AppIDKey(appID))
	if err != nil {
		return parts, err
	}
	var idxRev int64
	if len(idx.Kvs) == 1 {
		var e AppID
		if json.Unmarshal(idx.Kvs[0].Value, &e) != nil || e.ProjectID != projectID {
			return parts, fmt.Errorf("app id %s is registered under another project: %w", appID, ErrConflict)
		}
		if org != "" && e.OrgID != "" && e.OrgID != org {
			return parts, fmt.Errorf("app id %s is registered to another org: %w", appID, ErrConflict)
		}
		idxRev = idx.Kvs[0].ModRevision
	}
	b, _ := json.Marshal(AppID{AppID: appID, ProjectID: projectID, OrgID: org})
	parts.cmps = append(parts.cmps, clientv3.Compare(clientv3.ModRevision(AppIDKey(appID)), "=", idxRev))
	parts.ops = append(parts.ops, clientv3.OpPut(AppIDKey(appID), string(b)))
	if org == "" {
		return parts, nil
	}
	proj, err := s.cli.Get(ctx, ProjectKey(projectID))
	if err != nil {
		return parts, err
	}
	var projRev int64
	if len(proj.Kvs) == 1 {
		var p Project
		if json.Unmarshal(proj.Kvs[0].Value, &p) != nil || (p.OrgID != "" && p.OrgID != org) {
			return parts, fmt.Errorf("project %s belongs to another org: %w", projectID, ErrConflict)
		}
		projRev = proj.Kvs[0].ModRevision
	}
	parts.cmps = append(parts.cmps, clientv3.Compare(clientv3.ModRevision(ProjectKey(projectID)), "=", projRev))
	apps, err := s.projectApps(ctx, projectID, org)
	if err != nil {
		return parts, err
	}
	parts.add(apps)
	return parts, nil
}

// PutOrg registers an org's name and domains, keeping its deactivation state, and maintains the domain index.
// A domain already held by another org is ErrConflict.
func (s *Store) PutOrg(ctx context.Context, org Org, c Change) (Result, error) {
	if err := ValidateID("org", org.ID); err != nil {
		return Result{}, err
	}
	domains, err := normalizeAll("domain", org.Domains, NormalizeDomain)
	if err != nil {
		return Result{}, err
	}
	if !c.allows(org.ID) {
		return Result{}, fmt.Errorf("org %s: %w", org.ID, ErrForbidden)
	}
	_, res, err := update(ctx, s, OrgKey(org.ID), "register org", c, func(o *Org, exists bool, now time.Time) (*Org, txnParts, error) {
		parts, err := s.index(ctx, o.Domains, domains, DomainKey, func(d string) any { return Domain{Domain: d, OrgID: org.ID} },
			func(b []byte) bool { var d Domain; return json.Unmarshal(b, &d) == nil && d.OrgID == org.ID })
		if err != nil {
			return nil, txnParts{}, err
		}
		o.ID, o.Name, o.Domains, o.Meta = org.ID, org.Name, domains, Meta{Reason: c.Reason, ChangedBy: c.Actor, ChangedAt: now}
		return o, parts, nil
	})
	res.OrgID = org.ID
	return res, err
}

// PutApp registers an app (its project, owning org and client IDs), keeping its deactivation state, and
// maintains the client-ID index. A client ID already held by another app, an app of another org, an app ID
// registered under another project and a project of another org are ErrConflict; an app record without an
// owner may be given one only by an all-orgs change (else ErrForbidden).
func (s *Store) PutApp(ctx context.Context, app App, c Change) (Result, error) {
	if err := errors.Join(ValidateID("project", app.ProjectID), ValidateID("app", app.ID), ValidateID("org", app.OrgID)); err != nil {
		return Result{}, err
	}
	clients, err := normalizeAll("client", app.ClientIDs, func(s string) string { return s })
	if err != nil {
		return Result{}, err
	}
	if !c.allows(app.OrgID) {
		return Result{}, fmt.Errorf("app %s: %w", app.ID, ErrForbidden)
	}
	_, res, err := update(ctx, s, AppKey(app.ProjectID, app.ID), "register app", c, func(a *App, exists bool, now time.Time) (*App, txnParts, error) {
		if exists && a.OrgID != "" && a.OrgID != app.OrgID {
			return nil, txnParts{}, fmt.Errorf("app %s belongs to another org: %w", app.ID, ErrConflict)
		}
		if exists && a.OrgID == "" && c.Scoped {
			return nil, txnParts{}, fmt.Errorf("app %s has no owning org, only a token for all orgs may change it: %w", app.ID, ErrForbidden)
		}
		var parts txnParts
		if !exists || a.OrgID == "" {
			claim, err := s.claimApp(ctx, app.ProjectID, app.ID, app.OrgID)
			if err != nil {
				return nil, txnParts{}, err
			}
			parts.add(claim)
		}
		entry := func(id string) any { return app.clientEntry(id) }
		clientParts, err := s.index(ctx, a.ClientIDs, clients, ClientKey, entry, func(b []byte) bool {
			var cl Client
			return json.Unmarshal(b, &cl) == nil && cl.AppID == app.ID && cl.ProjectID == app.ProjectID
		})
		if err != nil {
			return nil, txnParts{}, err
		}
		parts.add(clientParts)
		// Entries whose org or project changed are rewritten too.
		for _, id := range clients {
			if slices.Contains(a.ClientIDs, id) {
				b, _ := json.Marshal(entry(id))
				parts.ops = append(parts.ops, clientv3.OpPut(ClientKey(id), string(b)))
			}
		}
		if a.State == "" {
			a.State = Active
		}
		a.ID, a.ProjectID, a.OrgID, a.ClientIDs = app.ID, app.ProjectID, app.OrgID, clients
		a.Meta = Meta{Reason: c.Reason, ChangedBy: c.Actor, ChangedAt: now}
		return a, parts, nil
	})
	res.OrgID = app.OrgID
	return res, err
}

// PutAccount registers a user or service account's org, for token grants that name only the account. Moving an
// account away from an org needs the right to act on that org too: an account registered to an org outside the
// change's scope is ErrOtherOrg (an ErrConflict), checked inside the write's transaction, so that two racing
// writers of two orgs cannot both own it.
func (s *Store) PutAccount(ctx context.Context, acct Account, c Change) (Result, error) {
	if err := errors.Join(ValidateID("account", acct.ID), ValidateID("org", acct.OrgID)); err != nil {
		return Result{}, err
	}
	if !c.allows(acct.OrgID) {
		return Result{}, fmt.Errorf("account %s: %w", acct.ID, ErrForbidden)
	}
	_, res, err := update(ctx, s, AccountKey(acct.ID), "register account", c, func(a *Account, exists bool, _ time.Time) (*Account, txnParts, error) {
		if exists && a.OrgID != acct.OrgID && !c.allows(a.OrgID) {
			return nil, txnParts{}, fmt.Errorf("account %s is %w", acct.ID, ErrOtherOrg)
		}
		*a = acct
		return a, txnParts{}, nil
	})
	res.OrgID = acct.OrgID
	return res, err
}

// index computes the transaction parts that move an index from old to new entries: new ones must be free or
// already ours (checked in the transaction), dropped ones are deleted.
func (s *Store) index(ctx context.Context, old, new []string, key func(string) string, entry func(string) any, ours func([]byte) bool) (txnParts, error) {
	var p txnParts
	for _, id := range old {
		if !slices.Contains(new, id) {
			p.ops = append(p.ops, clientv3.OpDelete(key(id)))
		}
	}
	for _, id := range new {
		if slices.Contains(old, id) {
			continue
		}
		resp, err := s.cli.Get(ctx, key(id))
		if err != nil {
			return p, err
		}
		var rev int64
		if len(resp.Kvs) == 1 {
			if !ours(resp.Kvs[0].Value) {
				return p, fmt.Errorf("%s is registered to another record: %w", id, ErrConflict)
			}
			rev = resp.Kvs[0].ModRevision
		}
		b, err := json.Marshal(entry(id))
		if err != nil {
			return p, err
		}
		p.cmps = append(p.cmps, clientv3.Compare(clientv3.ModRevision(key(id)), "=", rev))
		p.ops = append(p.ops, clientv3.OpPut(key(id), string(b)))
	}
	return p, nil
}

func normalizeAll(kind string, ids []string, norm func(string) string) ([]string, error) {
	out := make([]string, 0, len(ids))
	for _, id := range ids {
		id = norm(id)
		if err := ValidateID(kind, id); err != nil {
			return nil, err
		}
		if !slices.Contains(out, id) {
			out = append(out, id)
		}
	}
	return out, nil
}

// IndexAppIDs adds the app-ID index entry of every app record that has none (records written before deact kept
// the index), so that the store's uniqueness checks cover them too. Where several records share an app ID, the
// first in key order gets the entry and the others are counted in conflicts: they stay, and the replica denies
// the app ID while any of them is deactivated. It is idempotent and safe to run while the store is written.
func (s *Store) IndexAppIDs(ctx context.Context) (added, conflicts int, err error) {
	after := ""
	for {
		page, err := list[App](ctx, s, appsPrefix, after, 500)
		if err != nil {
			return added, conflicts, err
		}
		for _, v := range page.Items {
			a := v.Record
			if ValidateID("app", a.ID) != nil || ValidateID("project", a.ProjectID) != nil {
				continue
			}
			b, _ := json.Marshal(AppID{AppID: a.ID, ProjectID: a.ProjectID, OrgID: a.OrgID})
			resp, err := s.cli.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(AppIDKey(a.ID)), "=", 0)).
				Then(clientv3.OpPut(AppIDKey(a.ID), string(b))).Else(clientv3.OpGet(AppIDKey(a.ID))).Commit()
			if err != nil {
				return added, conflicts, err
			}
			if resp.Succeeded {
				added++
				continue
			}
			var e AppID
			if kvs := resp.Responses[0].GetResponseRange().GetKvs(); len(kvs) == 1 && json.Unmarshal(kvs[0].Value, &e) == nil && e.ProjectID == a.ProjectID {
				continue
			}
			conflicts++
		}
		if page.Next == "" {
			return added, conflicts, nil
		}
		after = page.Next
	}
}
