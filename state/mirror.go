package state

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// The mirrored layer: what an upstream product (ZITADEL, Commvault) says exists and what it deactivated, written
// by the source that follows it (package source) and never by the admin APIs. It lives under StatePrefix so every
// replica watches it, in its own subtree per source, apart from deact's local records: a reconcile can never
// touch a local deactivation, and the snapshot denies a subject when any layer does (see mirror_merge.go).
//
//	/deact/v1/state/mirror/{source}/org/{orgId}
//	/deact/v1/state/mirror/{source}/project/{projectId}
//	/deact/v1/state/mirror/{source}/app/{projectId}/{appId}
//
// Source status, written by the source's leader, lives outside StatePrefix (replicas need not wake up for it):
//
//	/deact/v1/sources/{source}
const (
	MirrorPrefix  = StatePrefix + "mirror/"
	SourcesPrefix = Prefix + "sources/"
)

// MirrorKind is the kind of upstream entity a mirrored record describes.
type MirrorKind uint8

const (
	MirrorOrg MirrorKind = iota + 1
	MirrorProject
	MirrorApp
)

var mirrorKindNames = [...]string{MirrorOrg: "org", MirrorProject: "project", MirrorApp: "app"}

// String returns "org", "project" or "app".
func (k MirrorKind) String() string {
	if k >= MirrorOrg && k <= MirrorApp {
		return mirrorKindNames[k]
	}
	return fmt.Sprintf("MirrorKind(%d)", uint8(k))
}

// ParseMirrorKind parses "org", "project" or "app".
func ParseMirrorKind(s string) (MirrorKind, error) {
	for k := MirrorOrg; k <= MirrorApp; k++ {
		if s == mirrorKindNames[k] {
			return k, nil
		}
	}
	return 0, fmt.Errorf("unknown mirror kind %q (want org, project or app)", s)
}

func (k MirrorKind) MarshalText() ([]byte, error) {
	if k < MirrorOrg || k > MirrorApp {
		return nil, fmt.Errorf("invalid mirror kind %d", uint8(k))
	}
	return []byte(k.String()), nil
}

func (k *MirrorKind) UnmarshalText(b []byte) error {
	v, err := ParseMirrorKind(string(b))
	*k = v
	return err
}

// MirrorRecord is one upstream entity as a source last saw it.
//
// A record is written only if its Sequence (the upstream's per-aggregate sequence, e.g. ZITADEL's event
// sequence) is newer than the stored one, so late, replayed and out-of-order deliveries change nothing. A record
// with Removed set is a tombstone: it denies every op for its subject until PruneMirrorTombstones deletes it
// after the retention, because tokens issued before the removal still verify until they expire.
type MirrorRecord struct {
	Source    string     `json:"source"`
	Kind      MirrorKind `json:"kind"`
	ID        string     `json:"id"`
	ProjectID string     `json:"projectId,omitempty"` // apps: the project (part of the key); projects: unused
	OrgID     string     `json:"orgId,omitempty"`     // projects and apps: the owning org (ZITADEL's resourceOwner)
	// Disabled (orgs) is what the upstream disables: a ZITADEL org that is inactive disables login and token.
	Disabled Ops `json:"-"`
	// Deactivated (projects and apps) says the upstream deactivated the project or app.
	Deactivated bool      `json:"deactivated,omitempty"`
	Removed     bool      `json:"removed,omitempty"`
	RemovedAt   time.Time `json:"removedAt,omitzero"`  // set to now by ApplyMirror when a tombstone has none
	ClientIDs   []string  `json:"clientIds,omitempty"` // apps: OAuth client IDs, indexed like local ones
	Domains     []string  `json:"domains,omitempty"`   // orgs: domain names, indexed like local ones
	Sequence    uint64    `json:"sequence"`
	ChangedAt   time.Time `json:"changedAt,omitzero"` // when the upstream made the change
	Name        string    `json:"name,omitempty"`
	// Partial marks a record that carries only state (an event: "app deactivated" names no client IDs). ApplyMirror
	// keeps the stored OrgID, ProjectID, Name, ClientIDs and Domains where a partial record leaves them empty. A
	// tombstone always keeps them: a removed app's client IDs must still find it. Not stored.
	Partial bool `json:"-"`
}

// mirrorRecordNoMethods is MirrorRecord without its JSON methods. The stored form spells Disabled the way
// ParseOps reads it ("login,token"), for whoever reads etcd by hand.
type mirrorRecordNoMethods MirrorRecord

func (r MirrorRecord) MarshalJSON() ([]byte, error) {
	j := struct {
		mirrorRecordNoMethods
		Disabled string `json:"disabled,omitempty"`
	}{mirrorRecordNoMethods: mirrorRecordNoMethods(r)}
	if r.Disabled != 0 {
		j.Disabled = r.Disabled.String()
	}
	return json.Marshal(j)
}

func (r *MirrorRecord) UnmarshalJSON(b []byte) error {
	var j struct {
		mirrorRecordNoMethods
		Disabled string `json:"disabled,omitempty"`
	}
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	*r = MirrorRecord(j.mirrorRecordNoMethods)
	if j.Disabled != "" && j.Disabled != "none" {
		ops, err := ParseOps(j.Disabled)
		if err != nil {
			return err
		}
		r.Disabled = ops
	}
	return nil
}

// Denies reports whether the record alone denies anything for its subject.
func (r *MirrorRecord) Denies() bool { return r.Removed || r.Deactivated || r.Disabled != 0 }

// StateName is "removed", "deactivated" or "active", for status output and audit.
func (r *MirrorRecord) StateName() string {
	switch {
	case r.Removed:
		return "removed"
	case r.Deactivated || r.Disabled != 0:
		return Deactivated
	}
	return Active
}

// Key is the record's etcd key; it assumes a validated record.
func (r *MirrorRecord) Key() string { return MirrorKey(r.Source, r.Kind, r.ProjectID, r.ID) }

// MirrorKey is the key of a mirrored record; projectID is used for apps only. It assumes validated IDs.
func MirrorKey(source string, k MirrorKind, projectID, id string) string {
	if k == MirrorApp {
		return MirrorPrefix + source + "/" + k.String() + "/" + projectID + "/" + id
	}
	return MirrorPrefix + source + "/" + k.String() + "/" + id
}

// parseMirrorKey splits a mirror key; ok is false for anything that is not one.
func parseMirrorKey(key string) (source string, k MirrorKind, projectID, id string, ok bool) {
	rest, found := strings.CutPrefix(key, MirrorPrefix)
	if !found {
		return "", 0, "", "", false
	}
	parts := strings.Split(rest, "/")
	if len(parts) < 3 {
		return "", 0, "", "", false
	}
	k, err := ParseMirrorKind(parts[1])
	if err != nil {
		return "", 0, "", "", false
	}
	switch {
	case k == MirrorApp && len(parts) == 4 && parts[2] != "" && parts[3] != "":
		return parts[0], k, parts[2], parts[3], parts[0] != ""
	case k != MirrorApp && len(parts) == 3 && parts[2] != "":
		return parts[0], k, "", parts[2], parts[0] != ""
	}
	return "", 0, "", "", false
}

// Bounds of one mirrored record, so a hostile or broken upstream cannot make a record etcd refuses.
const (
	maxMirrorList = 100 // client IDs of an app, domains of an org
	maxNameLen    = 200
)

// ErrInvalidMirror is wrapped by every validation failure of a MirrorRecord.
var ErrInvalidMirror = errors.New("invalid mirrored record")

// MirrorRecordError is ApplyMirror's rejection of its input: record Index is invalid, and nothing was written.
type MirrorRecordError struct {
	Index int
	Err   error
}

func (e *MirrorRecordError) Error() string {
	return fmt.Sprintf("mirrored record %d: %v", e.Index, e.Err)
}
func (e *MirrorRecordError) Unwrap() error { return e.Err }

// normalize validates the record and puts it in its canonical form (sorted, deduplicated lists; UTC times).
func (r *MirrorRecord) normalize() error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: %s", ErrInvalidMirror, fmt.Sprintf(format, a...))
	}
	if err := ValidateID("source", r.Source); err != nil {
		return err
	}
	if r.Kind < MirrorOrg || r.Kind > MirrorApp {
		return bad("unknown kind %d", uint8(r.Kind))
	}
	if err := ValidateID(r.Kind.String(), r.ID); err != nil {
		return err
	}
	if r.Sequence == 0 {
		return bad("%s %s has no sequence", r.Kind, r.ID)
	}
	if len(r.Name) > maxNameLen {
		return bad("name longer than %d bytes", maxNameLen)
	}
	if r.Disabled&^OpsAll != 0 {
		return bad("unknown ops %d", uint8(r.Disabled))
	}
	if r.OrgID != "" {
		if err := ValidateID("org", r.OrgID); err != nil {
			return err
		}
	}
	switch r.Kind {
	case MirrorOrg:
		if r.Deactivated || r.ProjectID != "" || len(r.ClientIDs) > 0 {
			return bad("org %s: only Disabled, Domains and Name describe an org", r.ID)
		}
		if r.OrgID != "" && r.OrgID != r.ID {
			return bad("org %s names another org %s", r.ID, r.OrgID)
		}
		r.OrgID = ""
	case MirrorProject:
		if r.Disabled != 0 || r.ProjectID != "" || len(r.ClientIDs) > 0 || len(r.Domains) > 0 {
			return bad("project %s: only Deactivated, OrgID and Name describe a project", r.ID)
		}
	case MirrorApp:
		if err := ValidateID("project", r.ProjectID); err != nil {
			return err
		}
		if r.Disabled != 0 || len(r.Domains) > 0 {
			return bad("app %s: only Deactivated, OrgID, ClientIDs and Name describe an app", r.ID)
		}
	}
	var err error
	if r.ClientIDs, err = canonicalList("client", r.ClientIDs, func(s string) string { return s }); err != nil {
		return err
	}
	if r.Domains, err = canonicalList("domain", r.Domains, NormalizeDomain); err != nil {
		return err
	}
	if !r.Removed {
		r.RemovedAt = time.Time{}
	}
	r.RemovedAt, r.ChangedAt = r.RemovedAt.UTC(), r.ChangedAt.UTC()
	return nil
}

func canonicalList(kind string, ids []string, norm func(string) string) ([]string, error) {
	if len(ids) > maxMirrorList {
		return nil, fmt.Errorf("%w: more than %d %s IDs", ErrInvalidMirror, maxMirrorList, kind)
	}
	out, err := normalizeAll(kind, ids, norm)
	if err != nil || len(out) == 0 {
		return nil, err
	}
	slices.Sort(out)
	return out, nil
}

// MirrorOutcome is what ApplyMirror did with one record.
type MirrorOutcome uint8

const (
	MirrorWritten   MirrorOutcome = iota + 1 // newer than the stored record (or the first): written
	MirrorUnchanged                          // same sequence and same content as the stored record
	MirrorStale                              // older than the stored record: ignored
)

var mirrorOutcomeNames = [...]string{MirrorWritten: "written", MirrorUnchanged: "unchanged", MirrorStale: "stale"}

func (o MirrorOutcome) String() string {
	if o >= MirrorWritten && o <= MirrorStale {
		return mirrorOutcomeNames[o]
	}
	return "unknown"
}

// MirrorResult counts what ApplyMirror did. Outcomes[i] is the outcome of the i-th record given.
type MirrorResult struct {
	Written, Unchanged, Stale int
	Outcomes                  []MirrorOutcome
	Revision                  int64 // etcd revision of the last write, or of the last read when nothing was written
}

// mirrorBatch is how many records one ApplyMirror transaction holds: with its audit entry it stays under etcd's
// default --max-txn-ops (128), which an external etcd may keep.
const mirrorBatch = 100

// ApplyMirror writes mirrored records in transactions of at most mirrorBatch records. Each record is written
// only if it is newer than the stored one: a higher Sequence, or the same Sequence with other content (the
// listing and the event of one upstream version complete each other). The same sequence with the same content
// is Unchanged, not a write; an older sequence is Stale. A reconcile that no longer finds an entity writes a
// tombstone at the held sequence (other content at the same sequence is written), and a later listing that
// shows it again at that sequence undoes that tombstone; a removal the upstream reported has a higher sequence. The
// comparison holds against concurrent writers: each transaction commits only if none of its keys changed since
// it read them, and is retried otherwise.
//
// Records are validated first; an invalid one fails the whole call with a *MirrorRecordError and nothing is
// written. Two records for one key in one call: the one ApplyMirror would keep wins (the later one on a tie).
// Every batch whose writes change what is denied appends one audit entry naming those records.
func (s *Store) ApplyMirror(ctx context.Context, recs []MirrorRecord, c Change) (MirrorResult, error) {
	res := MirrorResult{Outcomes: make([]MirrorOutcome, len(recs))}
	norm := make([]MirrorRecord, len(recs))
	for i, r := range recs {
		r.ClientIDs, r.Domains = slices.Clone(r.ClientIDs), slices.Clone(r.Domains)
		if err := r.normalize(); err != nil {
			return MirrorResult{}, &MirrorRecordError{Index: i, Err: err}
		}
		norm[i] = r
	}
	// Within the call, only the record that would win for each key goes to etcd; the others are stale, or
	// unchanged when identical to the winner.
	winner := make(map[string]int, len(norm))
	var order []int
	for i := range norm {
		key := norm[i].Key()
		j, seen := winner[key]
		if !seen {
			winner[key] = i
			order = append(order, i)
			continue
		}
		switch o, w := mirrorNext(&norm[j], &norm[i]); o {
		case MirrorWritten:
			res.Outcomes[j] = MirrorStale
			norm[i] = *w // with what it kept of the one it replaces
			winner[key] = i
			order[slices.Index(order, j)] = i
		case MirrorUnchanged:
			res.Outcomes[i] = MirrorUnchanged
		default:
			res.Outcomes[i] = MirrorStale
		}
	}
	for len(order) > 0 {
		n := min(len(order), mirrorBatch)
		rev, err := s.applyMirrorBatch(ctx, norm, order[:n], res.Outcomes, c)
		if err != nil {
			return res, err
		}
		res.Revision = max(res.Revision, rev)
		order = order[n:]
	}
	for _, o := range res.Outcomes {
		switch o {
		case MirrorWritten:
			res.Written++
		case MirrorUnchanged:
			res.Unchanged++
		case MirrorStale:
			res.Stale++
		}
	}
	return res, nil
}

// auditedMirror is one record of a mirror audit entry.
type auditedMirror struct {
	Key      string `json:"key"`
	Sequence uint64 `json:"sequence"`
	State    string `json:"state"`
	Disabled string `json:"disabled,omitempty"`
}

func (s *Store) applyMirrorBatch(ctx context.Context, recs []MirrorRecord, idx []int, out []MirrorOutcome, c Change) (int64, error) {
	gets := make([]clientv3.Op, len(idx))
	for i, j := range idx {
		gets[i] = clientv3.OpGet(recs[j].Key())
	}
	for range maxCASRetries {
		resp, err := s.cli.Txn(ctx).Then(gets...).Commit()
		if err != nil {
			return 0, fmt.Errorf("read mirrored records: %w", err)
		}
		var cmps []clientv3.Cmp
		var puts []clientv3.Op
		var audited []auditedMirror
		for i, j := range idx {
			key := recs[j].Key()
			var held *MirrorRecord
			var modRev int64
			if kvs := resp.Responses[i].GetResponseRange().Kvs; len(kvs) == 1 {
				modRev = kvs[0].ModRevision
				held = new(MirrorRecord)
				if err := json.Unmarshal(kvs[0].Value, held); err != nil || held.normalize() != nil {
					held = nil // unreadable: the upstream's record replaces it
				}
			}
			o, next := mirrorNext(held, &recs[j])
			out[j] = o
			if o != MirrorWritten {
				continue
			}
			if next.Removed && next.RemovedAt.IsZero() {
				next.RemovedAt = s.now()
			}
			b, err := json.Marshal(next)
			if err != nil {
				return 0, err
			}
			cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(key), "=", modRev))
			puts = append(puts, clientv3.OpPut(key, string(b)))
			// The audit names changes of what is denied; a bootstrap that mirrors a million active apps is not news.
			if held == nil && next.Denies() || held != nil && (held.StateName() != next.StateName() || held.Disabled != next.Disabled) {
				a := auditedMirror{Key: key, Sequence: next.Sequence, State: next.StateName()}
				if next.Disabled != 0 {
					a.Disabled = next.Disabled.String()
				}
				audited = append(audited, a)
			}
		}
		if len(puts) == 0 {
			return resp.Header.Revision, nil
		}
		if len(audited) > 0 {
			after, err := json.Marshal(audited)
			if err != nil {
				return 0, err
			}
			now := s.now()
			op, err := s.auditOp(AuditEntry{At: now, Actor: c.Actor, Action: "mirror " + recs[idx[0]].Source,
				Key: MirrorPrefix + recs[idx[0]].Source + "/", Reason: c.Reason, After: after})
			if err != nil {
				return 0, err
			}
			puts = append(puts, op)
		}
		tresp, err := s.cli.Txn(ctx).If(cmps...).Then(puts...).Commit()
		if err != nil {
			return 0, fmt.Errorf("write mirrored records: %w", err)
		}
		if tresp.Succeeded {
			return tresp.Header.Revision, nil
		}
	}
	return 0, ErrContention
}

// mirrorNext decides what becomes of the held record (nil: none) when next arrives, and returns the record to
// write when the outcome is MirrorWritten.
func mirrorNext(held, next *MirrorRecord) (MirrorOutcome, *MirrorRecord) {
	if held == nil {
		return MirrorWritten, next
	}
	if next.Sequence < held.Sequence {
		return MirrorStale, nil
	}
	// A listing at a tombstone's own sequence that shows the entity again undoes it. An upstream removal is an
	// event of its own, with a higher sequence than any listing of the live entity, so this only happens to a
	// tombstone a reconcile wrote at the held sequence because a listing missed the entity.
	w := *next
	if w.Removed || w.Partial {
		keep := func(dst *string, src string) {
			if *dst == "" {
				*dst = src
			}
		}
		keep(&w.OrgID, held.OrgID)
		keep(&w.Name, held.Name)
		if len(w.ClientIDs) == 0 {
			w.ClientIDs = held.ClientIDs
		}
		if len(w.Domains) == 0 {
			w.Domains = held.Domains
		}
	}
	if w.Removed && held.Removed && !held.RemovedAt.IsZero() && (w.RemovedAt.IsZero() || held.RemovedAt.Before(w.RemovedAt)) {
		w.RemovedAt = held.RemovedAt // the retention counts from the first removal seen
	}
	if mirrorSame(held, &w) {
		return MirrorUnchanged, nil
	}
	return MirrorWritten, &w
}

func mirrorSame(a, b *MirrorRecord) bool {
	x, err1 := json.Marshal(a)
	y, err2 := json.Marshal(b)
	return err1 == nil && err2 == nil && bytes.Equal(x, y)
}

// ListMirror calls fn for every record the source holds of kind (0: every kind), in key order, with its
// ModRevision, reading pages at one revision so the listing is consistent. A record that cannot be decoded is
// reported as an error rather than skipped: a reconciler must not mistake it for an absent one. An error from fn
// stops the listing and is returned.
func (s *Store) ListMirror(ctx context.Context, source string, kind MirrorKind, fn func(MirrorRecord, int64) error) error {
	if err := ValidateID("source", source); err != nil {
		return err
	}
	prefix := MirrorPrefix + source + "/"
	if kind != 0 {
		if kind < MirrorOrg || kind > MirrorApp {
			return fmt.Errorf("%w: unknown kind %d", ErrInvalidMirror, uint8(kind))
		}
		prefix += kind.String() + "/"
	}
	return s.rangePages(ctx, prefix, func(key string, value []byte, modRev int64) error {
		var r MirrorRecord
		if err := json.Unmarshal(value, &r); err != nil {
			return fmt.Errorf("mirrored record %s is unreadable: %w", key, err)
		}
		return fn(r, modRev)
	})
}

// rangePages calls fn for every key under prefix, 1000 at a time, all at the revision of the first page.
func (s *Store) rangePages(ctx context.Context, prefix string, fn func(key string, value []byte, modRev int64) error) error {
	end := clientv3.GetPrefixRangeEnd(prefix)
	key := prefix
	var rev int64
	for {
		opts := []clientv3.OpOption{clientv3.WithRange(end), clientv3.WithLimit(1000)}
		if rev != 0 {
			opts = append(opts, clientv3.WithRev(rev))
		}
		resp, err := s.cli.Get(ctx, key, opts...)
		if err != nil {
			return fmt.Errorf("list %s: %w", prefix, err)
		}
		if rev == 0 {
			rev = resp.Header.Revision
		}
		for _, kv := range resp.Kvs {
			if err := fn(string(kv.Key), kv.Value, kv.ModRevision); err != nil {
				return err
			}
		}
		if !resp.More || len(resp.Kvs) == 0 {
			return nil
		}
		key = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
}

// PruneMirrorTombstones deletes the source's tombstones removed before the cutoff and returns how many it
// deleted. A tombstone rewritten after the listing (a newer event) is left alone: each delete is conditional on
// the revision it was listed at.
func (s *Store) PruneMirrorTombstones(ctx context.Context, source string, before time.Time) (int64, error) {
	type victim struct {
		key string
		rev int64
	}
	var victims []victim
	err := s.ListMirror(ctx, source, 0, func(r MirrorRecord, modRev int64) error {
		if r.Removed && !r.RemovedAt.IsZero() && r.RemovedAt.Before(before) {
			if r.normalize() == nil {
				victims = append(victims, victim{r.Key(), modRev})
			}
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	var n int64
	for _, v := range victims {
		// One transaction per key: a conditional delete of many keys would fail together when one changed.
		resp, err := s.cli.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(v.key), "=", v.rev)).
			Then(clientv3.OpDelete(v.key)).Commit()
		if err != nil {
			return n, fmt.Errorf("prune %s: %w", v.key, err)
		}
		if resp.Succeeded {
			n++
		}
	}
	return n, nil
}

// MirrorSources lists the sources that hold mirrored records, by skipping from one source's subtree to the next
// (one small read per source, however many records they hold).
func (s *Store) MirrorSources(ctx context.Context) ([]string, error) {
	var out []string
	key := MirrorPrefix
	end := clientv3.GetPrefixRangeEnd(MirrorPrefix)
	for {
		resp, err := s.cli.Get(ctx, key, clientv3.WithRange(end), clientv3.WithLimit(1), clientv3.WithKeysOnly())
		if err != nil {
			return nil, err
		}
		if len(resp.Kvs) == 0 {
			return out, nil
		}
		src, _, _ := strings.Cut(strings.TrimPrefix(string(resp.Kvs[0].Key), MirrorPrefix), "/")
		if src == "" {
			return out, nil
		}
		out = append(out, src)
		key = MirrorPrefix + src + "0" // '0' follows '/': the first key after every "{src}/..." key
	}
}

// MirroredRecords returns what every source holds of one subject (projectID for apps only), for status output.
func (s *Store) MirroredRecords(ctx context.Context, kind MirrorKind, projectID, id string) ([]Versioned[MirrorRecord], error) {
	probe := MirrorRecord{Source: "probe", Kind: kind, ID: id, ProjectID: projectID, Sequence: 1}
	if err := probe.normalize(); err != nil {
		return nil, err
	}
	sources, err := s.MirrorSources(ctx)
	if err != nil {
		return nil, err
	}
	var out []Versioned[MirrorRecord]
	for _, src := range sources {
		if ValidateID("source", src) != nil {
			continue
		}
		v, err := get[MirrorRecord](ctx, s, MirrorKey(src, kind, projectID, id))
		switch {
		case errors.Is(err, ErrNotFound):
		case err != nil:
			return nil, err
		default:
			out = append(out, v)
		}
	}
	return out, nil
}

// SourceStatus is a source's report of its sync, written by its leader (PutSourceStatus) and read by the admin
// API and deactctl. It is the last report: UpdatedAt says how old it is, and a leader that died leaves it as it
// was. Durations are nanoseconds in JSON.
type SourceStatus struct {
	Source      string    `json:"source"`
	Kind        string    `json:"kind,omitempty"`     // connector type, e.g. "zitadel"
	Upstream    string    `json:"upstream,omitempty"` // the upstream's base URL, never with credentials
	Leader      string    `json:"leader"`             // node ID of the leader that wrote this
	LeaderSince time.Time `json:"leaderSince,omitzero"`
	UpdatedAt   time.Time `json:"updatedAt"`

	LastReconcileAt       time.Time     `json:"lastReconcileAt,omitzero"` // end of the last reconcile, success or not
	LastReconcileDuration time.Duration `json:"lastReconcileDuration,omitempty"`
	LastReconcileChanged  int64         `json:"lastReconcileChanged"`
	LastReconcileError    string        `json:"lastReconcileError,omitempty"` // empty when the last reconcile succeeded
	LastReconcileOKAt     time.Time     `json:"lastReconcileOkAt,omitzero"`
	Reconciles            int64         `json:"reconciles"`
	ReconcileErrors       int64         `json:"reconcileErrors"`

	LastEventAt    time.Time `json:"lastEventAt,omitzero"` // when the last event was received
	LastEventType  string    `json:"lastEventType,omitempty"`
	EventsAccepted int64     `json:"eventsAccepted"` // applied and changed something
	EventsRejected int64     `json:"eventsRejected"` // refused: bad signature, malformed, unknown
	EventsIgnored  int64     `json:"eventsIgnored"`  // valid but stale, replayed or irrelevant
	LagMs          int64     `json:"lagMs"`          // receive time minus upstream creation time of the last event

	Records          int64     `json:"records"` // mirrored records held after the last reconcile
	Tombstones       int64     `json:"tombstones"`
	TombstonesPruned int64     `json:"tombstonesPruned"`
	LastError        string    `json:"lastError,omitempty"` // the last failure of any kind (unreachable, 401/403, ...)
	LastErrorAt      time.Time `json:"lastErrorAt,omitzero"`
}

// SourceKey is the key of a source's status.
func SourceKey(source string) string { return SourcesPrefix + source }

// PutSourceStatus writes a source's status.
func (s *Store) PutSourceStatus(ctx context.Context, st SourceStatus) error {
	if err := ValidateID("source", st.Source); err != nil {
		return err
	}
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	_, err = s.cli.Put(ctx, SourceKey(st.Source), string(b))
	return err
}

// ListSourceStatus returns every source's last status, ordered by source name.
func (s *Store) ListSourceStatus(ctx context.Context) ([]SourceStatus, error) {
	var out []SourceStatus
	err := s.rangePages(ctx, SourcesPrefix, func(key string, value []byte, _ int64) error {
		var st SourceStatus
		if err := json.Unmarshal(value, &st); err != nil {
			return fmt.Errorf("source status %s is unreadable: %w", key, err)
		}
		out = append(out, st)
		return nil
	})
	return out, err
}
