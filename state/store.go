package state

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Typed errors of Store writes. The admin API maps them to the statuses ZITADEL and Commvault use.
var (
	ErrAlreadyDeactivated = errors.New("already deactivated")
	ErrNotDeactivated     = errors.New("not deactivated")
	ErrNotFound           = errors.New("not found")
	ErrConflict           = errors.New("conflicting record")
	ErrContention         = errors.New("too much contention on the record, try again")
)

// Store writes deactivation state to etcd. Every write is a compare-and-swap transaction that also appends an
// audit record, and returns only after etcd committed it (a crash after the return loses nothing). Store is
// safe for concurrent use.
type Store struct {
	cli *clientv3.Client
	now func() time.Time
}

// NewStore returns a Store writing through cli.
func NewStore(cli *clientv3.Client) *Store {
	return &Store{cli: cli, now: func() time.Time { return time.Now().UTC() }}
}

// Client returns the etcd client the store writes through.
func (s *Store) Client() *clientv3.Client { return s.cli }

// Result describes a committed write.
type Result struct {
	Revision  int64     // etcd revision of the write: the "sequence" reported to clients
	ChangedAt time.Time // write time, UTC
	OrgID     string    // the org that owns the changed record (ZITADEL's resourceOwner)
}

// Change names who makes a change and why; it becomes the record's Meta and the audit entry's actor.
type Change struct {
	Actor  string
	Reason string
}

// AuditEntry is one committed change.
type AuditEntry struct {
	At       time.Time       `json:"at"`
	Actor    string          `json:"actor"`
	Action   string          `json:"action"`
	Key      string          `json:"key"`
	Reason   string          `json:"reason,omitempty"`
	Before   json.RawMessage `json:"before,omitempty"`
	After    json.RawMessage `json:"after,omitempty"`
	Revision int64           `json:"revision,omitempty"` // filled on read: the entry's own revision
}

const maxCASRetries = 64

// txnParts are the extra comparisons and operations a mutation adds to its transaction.
type txnParts struct {
	cmps []clientv3.Cmp
	ops  []clientv3.Op
}

// update runs a compare-and-swap loop on one key: read, mutate, commit if unchanged, else retry.
func update[T any](ctx context.Context, s *Store, key, action string, c Change,
	mutate func(cur *T, exists bool, now time.Time) (*T, txnParts, error)) (*T, Result, error) {
	for range maxCASRetries {
		resp, err := s.cli.Get(ctx, key)
		if err != nil {
			return nil, Result{}, fmt.Errorf("read %s: %w", key, err)
		}
		cur := new(T)
		var modRev int64
		var before []byte
		exists := len(resp.Kvs) == 1
		if exists {
			before = resp.Kvs[0].Value
			modRev = resp.Kvs[0].ModRevision
			if err := json.Unmarshal(before, cur); err != nil {
				return nil, Result{}, fmt.Errorf("stored record %s is unreadable: %w", key, err)
			}
		}
		now := s.now()
		next, parts, err := mutate(cur, exists, now)
		if err != nil {
			return nil, Result{}, err
		}
		after, err := json.Marshal(next)
		if err != nil {
			return nil, Result{}, err
		}
		audit, err := s.auditOp(AuditEntry{At: now, Actor: c.Actor, Action: action, Key: key, Reason: c.Reason, Before: before, After: after})
		if err != nil {
			return nil, Result{}, err
		}
		cmps := append([]clientv3.Cmp{clientv3.Compare(clientv3.ModRevision(key), "=", modRev)}, parts.cmps...)
		ops := append([]clientv3.Op{clientv3.OpPut(key, string(after)), audit}, parts.ops...)
		tresp, err := s.cli.Txn(ctx).If(cmps...).Then(ops...).Commit()
		if err != nil {
			return nil, Result{}, fmt.Errorf("commit %s: %w", key, err)
		}
		if tresp.Succeeded {
			return next, Result{Revision: tresp.Header.Revision, ChangedAt: now}, nil
		}
	}
	return nil, Result{}, ErrContention
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

// DeactivateOrg disables ops for the org, creating its record if deact had none. With exact the org's disabled
// set becomes exactly ops (Commvault's deactivateOptions); otherwise ops are added to it (ZITADEL). It fails with
// ErrAlreadyDeactivated when the write would change nothing.
func (s *Store) DeactivateOrg(ctx context.Context, id string, ops Ops, exact bool, c Change) (Result, error) {
	if err := ValidateID("org", id); err != nil {
		return Result{}, err
	}
	if ops == 0 {
		return Result{}, errors.New("deactivation disables no operation")
	}
	_, res, err := update(ctx, s, OrgKey(id), "deactivate org", c, func(o *Org, exists bool, now time.Time) (*Org, txnParts, error) {
		next := ops
		if !exact {
			next |= o.Disabled
		}
		if exists && next == o.Disabled {
			return nil, txnParts{}, fmt.Errorf("org %s: %w", id, ErrAlreadyDeactivated)
		}
		o.ID, o.Disabled, o.Meta = id, next, Meta{Reason: c.Reason, ChangedBy: c.Actor, ChangedAt: now}
		return o, txnParts{}, nil
	})
	res.OrgID = id
	return res, err
}

// ReactivateOrg enables every op of the org again. It fails with ErrNotDeactivated when the org is active or
// unknown.
func (s *Store) ReactivateOrg(ctx context.Context, id string, c Change) (Result, error) {
	if err := ValidateID("org", id); err != nil {
		return Result{}, err
	}
	_, res, err := update(ctx, s, OrgKey(id), "reactivate org", c, func(o *Org, exists bool, now time.Time) (*Org, txnParts, error) {
		if !exists || o.Disabled == 0 {
			return nil, txnParts{}, fmt.Errorf("org %s: %w", id, ErrNotDeactivated)
		}
		o.Disabled, o.Meta = 0, Meta{Reason: c.Reason, ChangedBy: c.Actor, ChangedAt: now}
		return o, txnParts{}, nil
	})
	res.OrgID = id
	return res, err
}

// SetProjectState deactivates or reactivates a project (and so all its apps). orgID, when not empty, must match
// the project's org (a project of another org is ErrNotFound); a deactivation of an unknown project creates its
// record with orgID, a reactivation of one is ErrNotFound.
func (s *Store) SetProjectState(ctx context.Context, id, orgID string, deactivate bool, c Change) (Result, error) {
	if err := ValidateID("project", id); err != nil {
		return Result{}, err
	}
	p, res, err := update(ctx, s, ProjectKey(id), action("project", deactivate), c, func(p *Project, exists bool, now time.Time) (*Project, txnParts, error) {
		if err := ownedBy("project "+id, exists, p.OrgID, orgID, deactivate); err != nil {
			return nil, txnParts{}, err
		}
		if err := flip("project "+id, p.IsDeactivated(), deactivate); err != nil {
			return nil, txnParts{}, err
		}
		p.ID, p.State, p.Meta = id, stateName(deactivate), Meta{Reason: c.Reason, ChangedBy: c.Actor, ChangedAt: now}
		if p.OrgID == "" {
			p.OrgID = orgID
		}
		return p, txnParts{}, nil
	})
	if p != nil {
		res.OrgID = p.OrgID
	}
	return res, err
}

// SetAppState deactivates or reactivates an app, with the same org rule as SetProjectState.
func (s *Store) SetAppState(ctx context.Context, projectID, appID, orgID string, deactivate bool, c Change) (Result, error) {
	if err := errors.Join(ValidateID("project", projectID), ValidateID("app", appID)); err != nil {
		return Result{}, err
	}
	a, res, err := update(ctx, s, AppKey(projectID, appID), action("app", deactivate), c, func(a *App, exists bool, now time.Time) (*App, txnParts, error) {
		if err := ownedBy("app "+appID, exists, a.OrgID, orgID, deactivate); err != nil {
			return nil, txnParts{}, err
		}
		if err := flip("app "+appID, a.IsDeactivated(), deactivate); err != nil {
			return nil, txnParts{}, err
		}
		a.ID, a.ProjectID, a.State, a.Meta = appID, projectID, stateName(deactivate), Meta{Reason: c.Reason, ChangedBy: c.Actor, ChangedAt: now}
		if a.OrgID == "" {
			a.OrgID = orgID
		}
		return a, txnParts{}, nil
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

// ownedBy checks a record's org against the caller's; unknown records may only be created by a deactivation.
func ownedBy(what string, exists bool, have, want string, deactivate bool) error {
	if !exists && !deactivate {
		return fmt.Errorf("%s: %w", what, ErrNotFound)
	}
	if exists && want != "" && have != "" && have != want {
		return fmt.Errorf("%s: %w", what, ErrNotFound)
	}
	return nil
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
// maintains the client-ID index. A client ID already held by another app is ErrConflict.
func (s *Store) PutApp(ctx context.Context, app App, c Change) (Result, error) {
	if err := errors.Join(ValidateID("project", app.ProjectID), ValidateID("app", app.ID), ValidateID("org", app.OrgID)); err != nil {
		return Result{}, err
	}
	clients, err := normalizeAll("client", app.ClientIDs, func(s string) string { return s })
	if err != nil {
		return Result{}, err
	}
	_, res, err := update(ctx, s, AppKey(app.ProjectID, app.ID), "register app", c, func(a *App, exists bool, now time.Time) (*App, txnParts, error) {
		if exists && a.OrgID != "" && a.OrgID != app.OrgID {
			return nil, txnParts{}, fmt.Errorf("app %s belongs to another org: %w", app.ID, ErrConflict)
		}
		entry := func(id string) any {
			return Client{ClientID: id, AppID: app.ID, ProjectID: app.ProjectID, OrgID: app.OrgID}
		}
		parts, err := s.index(ctx, a.ClientIDs, clients, ClientKey, entry,
			func(b []byte) bool { var cl Client; return json.Unmarshal(b, &cl) == nil && cl.AppID == app.ID })
		if err != nil {
			return nil, txnParts{}, err
		}
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

// PutAccount registers a user or service account's org, for token grants that name only the account.
func (s *Store) PutAccount(ctx context.Context, acct Account, c Change) (Result, error) {
	if err := errors.Join(ValidateID("account", acct.ID), ValidateID("org", acct.OrgID)); err != nil {
		return Result{}, err
	}
	_, res, err := update(ctx, s, AccountKey(acct.ID), "register account", c, func(a *Account, _ bool, _ time.Time) (*Account, txnParts, error) {
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
