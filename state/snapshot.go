package state

import (
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strings"
)

// Snapshot is an immutable view of the deactivation state at one revision. Lookups never lock and never
// allocate; a Snapshot is safe for any number of concurrent readers and is never modified once published.
//
// Each record kind is a table split into 256 shards; applying a batch copies only the shards it touches, so a
// change costs O(size of one shard) however large the state is.
type Snapshot struct {
	revision int64 // revision of the newest change this snapshot contains
	tables   [nKinds]table
	// appIDs indexes the app table (keyed "project/app") by app ID: each item holds an *AppSet. It is derived,
	// so it is not counted as records.
	appIDs table
	layers *layerSet // the mirrored layers of subjects some source mirrors (mirror_merge.go); nil if none
}

const (
	nKinds    = int(kindAccount) + 1
	shardBits = 8
	nShards   = 1 << shardBits
)

// item is a decoded record and the ModRevision of the key it came from.
type item struct {
	val any
	rev int64
}

func (s *Snapshot) get(k kind, id string) (item, bool) { return s.tables[k].get(id) }

func lookup[T any](s *Snapshot, k kind, id string) *T {
	if s == nil {
		return nil
	}
	it, ok := s.get(k, id)
	if !ok {
		return nil
	}
	v, _ := it.val.(*T)
	return v
}

// Org returns what deact holds of the organization with this ID, or nil when it has no record of it.
func (s *Snapshot) Org(id string) *OrgState { return lookup[OrgState](s, kindOrg, id) }

// Project returns the project with this ID, or nil.
func (s *Snapshot) Project(id string) *ProjectState { return lookup[ProjectState](s, kindProject, id) }

// App returns the application with this ID in this project, or nil.
func (s *Snapshot) App(projectID, appID string) *AppState {
	set := s.Apps(appID)
	if set == nil {
		return nil
	}
	for _, a := range set.Apps {
		if a.ProjectID == projectID {
			return a
		}
	}
	return nil
}

// Apps returns every app record with this app ID, or nil. ZITADEL app IDs are unique per instance, so there is
// normally one; a request that names only the app ID must be denied if any of them is deactivated, which
// AppSet.Deactivated has precomputed.
func (s *Snapshot) Apps(appID string) *AppSet {
	if s == nil {
		return nil
	}
	it, ok := s.appIDs.get(appID)
	if !ok {
		return nil
	}
	v, _ := it.val.(*AppSet)
	return v
}

// Client returns the client-ID index entry, or nil.
func (s *Snapshot) Client(clientID string) *Client { return lookup[Client](s, kindClient, clientID) }

// Domain returns the org domain entry for a lower-case domain name, or nil.
func (s *Snapshot) Domain(domain string) *Domain { return lookup[Domain](s, kindDomain, domain) }

// Account returns the user or service account entry, or nil.
func (s *Snapshot) Account(id string) *Account { return lookup[Account](s, kindAccount, id) }

// OrgState is what a snapshot keeps of an org: only what decisions need, so a million records fit in a small
// heap. The full record is read from etcd through the Store.
type OrgState struct {
	ID       string
	Disabled Ops
}

// ProjectState is what a snapshot keeps of a project.
type ProjectState struct {
	ID, OrgID   string
	Deactivated bool
	// OtherOrgIDs are owning orgs other layers name when they disagree with OrgID (mirror_merge.go); a decision
	// checks them as well. Nil almost always.
	OtherOrgIDs []string
}

// IsDeactivated reports whether the project is deactivated.
func (p *ProjectState) IsDeactivated() bool { return p.Deactivated }

// AppState is what a snapshot keeps of an app.
type AppState struct {
	ID, ProjectID, OrgID string
	Deactivated          bool
	OtherOrgIDs          []string // as for ProjectState
}

// IsDeactivated reports whether the app is deactivated.
func (a *AppState) IsDeactivated() bool { return a.Deactivated }

// AppSet is every app record of one app ID, ordered by project ID. Deactivated is true when any of them is: one
// record can never shadow another's deactivation.
type AppSet struct {
	Deactivated bool
	Apps        []*AppState
	one         [1]*AppState // Apps of the usual set of one record: one allocation per set, not two
}

// Revision is the etcd revision of the newest change in this snapshot.
func (s *Snapshot) Revision() int64 {
	if s == nil {
		return 0
	}
	return s.revision
}

// Len is the number of records in the snapshot.
func (s *Snapshot) Len() int {
	n := 0
	for _, c := range s.kindCounts() {
		n += c
	}
	return n
}

// kindCounts is the number of records of each kind.
func (s *Snapshot) kindCounts() (n [nKinds]int) {
	if s == nil {
		return n
	}
	for k := range s.tables {
		for _, sh := range s.tables[k].shards {
			n[k] += sh.len()
		}
	}
	return n
}

// each calls f for every record's (kind name, id, mod revision); for tests and diagnostics.
func (s *Snapshot) each(f func(k kind, id string, it item)) {
	for k := range s.tables {
		for _, sh := range s.tables[k].shards {
			sh.each(func(id string, it item) { f(kind(k), id, it) })
		}
	}
}

// builder makes the next snapshot from a base: the first change to a shard gives the builder its own copy of
// the shard's header, and snapshot packs what changed.
type builder struct {
	s        *Snapshot
	owned    [nKinds][nShards]bool
	ownedIDs [nShards]bool
	lb       layerBuild
	// prev is the snapshot a list replaces, whose records it may take as they are (putListed); nil for others.
	prev *Snapshot
	// hint is how many records each kind is expected to have, when known (a list counts them first): the
	// shards a list fills are made that size at once instead of doubling to it.
	hint [nKinds]int
}

func newBuilder(base *Snapshot) *builder {
	b := &builder{s: &Snapshot{}}
	if base != nil {
		*b.s = *base
	}
	return b
}

// snapshot packs every shard the builder changed and returns the snapshot to publish. The builder must not be
// used after.
func (b *builder) snapshot() *Snapshot {
	for k := range b.owned {
		for i, owned := range b.owned[k] {
			if owned {
				b.s.tables[k].shards[i].pack()
			}
		}
	}
	for i, owned := range b.ownedIDs {
		if owned {
			b.s.appIDs.shards[i].pack()
		}
	}
	if b.lb.setCopied {
		for k := range b.lb.copied {
			for i, owned := range b.lb.copied[k] {
				if owned {
					b.s.layers.subjects[k].shards[i].pack()
				}
			}
		}
	}
	return b.s
}

func (b *builder) shard(k kind, id string) *shard {
	return own(&b.s.tables[k], &b.owned[k], shardOf(id), shardHint(b.hint[k]))
}

// appIDShard is shard for the app-ID index.
func (b *builder) appIDShard(appID string) *shard {
	return own(&b.s.appIDs, &b.ownedIDs, shardOf(appID), shardHint(b.hint[kindApp]))
}

// shardHint is the room to make in each shard of a table of n records: the mean and three standard deviations
// of a shard's share, so that hardly any shard grows, nor keeps more than a few percent unused (at 10⁶
// records 10%, at 10⁷ 3%). 0 when n is unknown.
func shardHint(n int) int {
	if n <= 0 {
		return 0
	}
	mean := float64(n) / nShards
	return int(mean+3*math.Sqrt(mean)) + 4
}

// reindexApp replaces (or, with a nil next, removes) the record of (projectID, appID) in its app set. Sets are
// immutable once published: a change makes a new one.
func (b *builder) reindexApp(projectID, appID string, next *AppState) {
	var apps []*AppState
	if next != nil {
		appID = next.ID // the key's own string, shared with the record, rather than the caller's
	}
	if old := b.s.Apps(appID); old != nil {
		apps = make([]*AppState, 0, len(old.Apps)+1)
		for _, a := range old.Apps {
			if a.ProjectID != projectID {
				apps = append(apps, a)
			}
		}
	}
	if next != nil {
		apps = append(apps, next)
		slices.SortFunc(apps, func(x, y *AppState) int { return strings.Compare(x.ProjectID, y.ProjectID) })
	}
	m := b.appIDShard(appID)
	if len(apps) == 0 {
		m.del(appID)
		return
	}
	set := &AppSet{Apps: apps}
	if len(apps) == 1 {
		set.one[0] = apps[0]
		set.Apps = set.one[:]
	}
	for _, a := range apps {
		set.Deactivated = set.Deactivated || a.Deactivated
	}
	m.set(appID, item{val: set})
}

// put applies a put of key at rev; an older revision than the one held is ignored (per-key guard).
func (b *builder) put(key string, value []byte, rev int64) error {
	if strings.HasPrefix(key, MirrorPrefix) {
		return b.putMirror(key, value, rev)
	}
	k, id := parseKey(key)
	if k == kindUnknown {
		return nil // a key we do not understand (a newer deact's record): ignore, never fail the batch
	}
	if it, ok := b.s.get(k, id); ok && it.rev >= rev {
		return nil
	}
	return b.putRecord(k, strings.Clone(id), value, rev) // a copy: do not keep the whole key alive for its ID
}

// putListed is put for a record a list delivers, key and value being the received frame's bytes, valid during
// the call only: of the key only the ID is copied, never the whole key, so a list allocates little more than
// what the snapshot keeps. A list holds each key once, so there is no older revision to guard against. A
// record the previous snapshot (prev) holds at the same revision is the same record: it is taken as it was
// decoded then, so that a relist beside a live snapshot allocates the new tables but not their records again.
func (b *builder) putListed(key, value []byte, rev int64) error {
	k, rawID := parseKey(key)
	if k == kindUnknown {
		return b.put(string(key), value, rev) // mirror records, and keys this version ignores, take the general path
	}
	if b.prev != nil {
		// A subject with layers shows a merged record, not the one its key holds: decode that one again.
		if id, it, ok := b.prev.tables[k].find(string(rawID)); ok && it.rev == rev && b.prev.layersOf(k, id) == nil {
			b.showRecord(k, id, it)
			return nil
		}
	}
	return b.putRecord(k, string(rawID), value, rev)
}

// putRecord decodes the record of (k, id) and shows it. id is the snapshot's own string.
func (b *builder) putRecord(k kind, id string, value []byte, rev int64) error {
	v, err := decode(k, id, value, b.s)
	if err != nil {
		// A record we cannot read must not become an allow: orgs, projects and apps are held deactivated;
		// index entries are dropped. The caller logs and counts the error.
		key := keyOf(k, id)
		err = fmt.Errorf("decode %s: %w", key, err)
		switch k {
		case kindOrg:
			v = &OrgState{ID: id, Disabled: OpsAll}
		case kindProject:
			v = &ProjectState{ID: id, Deactivated: true}
		case kindApp:
			project, app, _ := strings.Cut(id, "/")
			v = &AppState{ID: app, ProjectID: project, Deactivated: true}
		default:
			b.del(key, rev)
			return err
		}
	}
	b.showRecord(k, id, item{val: v, rev: rev})
	return err
}

// showRecord shows the record it of (k, id), under the layers the subject has, and counts its revision.
func (b *builder) showRecord(k kind, id string, it item) {
	b.show(k, id, it)
	b.relayer(k, id)
	b.bump(it.rev)
}

// clientEntry is the snapshot's entry of client id, whose record names these app, project and org IDs: when
// apps has that app (a list reads apps before clients), the entry holds the strings its record holds, a copy
// each of three IDs less per client, made of the record's bytes only when it has not.
func clientEntry(id string, appID, projectID, orgID []byte, apps *Snapshot) *Client {
	c := &Client{ClientID: id}
	if it, ok := apps.appIDs.getBytes(appID); ok {
		var set []*AppState
		if s, _ := it.val.(*AppSet); s != nil {
			set = s.Apps
		}
		for _, a := range set {
			if a.ProjectID == string(projectID) {
				c.AppID, c.ProjectID = a.ID, a.ProjectID
				if a.OrgID == string(orgID) {
					c.OrgID = a.OrgID
				}
				break
			}
		}
	}
	if c.AppID == "" {
		c.AppID, c.ProjectID = string(appID), string(projectID)
	}
	if c.OrgID == "" {
		c.OrgID = string(orgID)
	}
	return c
}

// del applies a delete of key at rev.
func (b *builder) del(key string, rev int64) {
	if strings.HasPrefix(key, MirrorPrefix) {
		b.delMirror(key, rev)
		return
	}
	k, id := parseKey(key)
	if k == kindUnknown {
		return
	}
	it, ok := b.s.get(k, id)
	if !ok || it.rev >= rev {
		return
	}
	b.hide(k, id)
	b.relayer(k, id)
	b.bump(rev)
}

func (b *builder) bump(rev int64) {
	if rev > b.s.revision {
		b.s.revision = rev
	}
}

// decode turns a stored record into its snapshot form. id is the key's own string, shared rather than copied;
// apps is the snapshot being built, whose app records a client entry shares its IDs with. Records are read by
// decodeFast (jsonfast.go) and, when it declines, by encoding/json, into the same structs.
func decode(k kind, id string, value []byte, apps *Snapshot) (any, error) {
	switch k {
	case kindOrg:
		var o orgFlags
		if !decodeFast(value, []fastField{{name: "state", str: &o.State}, {name: "disableLogin", flag: &o.DisableLogin},
			{name: "disableToken", flag: &o.DisableToken}, {name: "disableBackup", flag: &o.DisableBackup},
			{name: "disableRestore", flag: &o.DisableRestore}}) {
			o = orgFlags{}
			if err := json.Unmarshal(value, &o); err != nil {
				return nil, err
			}
		}
		d, err := o.disabled()
		if err != nil {
			return nil, err
		}
		return &OrgState{ID: id, Disabled: d}, nil
	case kindProject, kindApp:
		var p projectFlags
		if !decodeFast(value, []fastField{{name: "orgId", str: &p.OrgID}, {name: "state", str: &p.State}}) {
			p = projectFlags{}
			if err := json.Unmarshal(value, &p); err != nil {
				return nil, err
			}
		}
		if err := checkState(p.State); err != nil {
			return nil, err
		}
		if k == kindProject {
			return &ProjectState{ID: id, OrgID: p.OrgID, Deactivated: p.State == Deactivated}, nil
		}
		// id is "project/app", from the key: the key, not the record's projectId field, says where it lives.
		project, app, _ := strings.Cut(id, "/")
		return &AppState{ID: app, ProjectID: project, OrgID: p.OrgID, Deactivated: p.State == Deactivated}, nil
	case kindClient:
		var self, app, project, org []byte // the key says whose entry it is: the record's clientId is not kept
		if decodeFast(value, []fastField{{name: "clientId", raw: &self}, {name: "appId", raw: &app},
			{name: "projectId", raw: &project}, {name: "orgId", raw: &org}}) {
			return clientEntry(id, app, project, org, apps), nil
		}
		var c Client
		if err := json.Unmarshal(value, &c); err != nil {
			return nil, err
		}
		return clientEntry(id, []byte(c.AppID), []byte(c.ProjectID), []byte(c.OrgID), apps), nil
	case kindDomain:
		var d Domain
		var self []byte // as for clients
		if !decodeFast(value, []fastField{{name: "domain", raw: &self}, {name: "orgId", str: &d.OrgID}}) {
			d = Domain{}
			if err := json.Unmarshal(value, &d); err != nil {
				return nil, err
			}
		}
		d.Domain = id
		return &d, nil
	case kindAccount:
		var a Account
		if !decodeFast(value, []fastField{{name: "id", str: &a.ID}, {name: "orgId", str: &a.OrgID}}) {
			a = Account{}
			if err := json.Unmarshal(value, &a); err != nil {
				return nil, err
			}
		}
		a.ID = id
		return &a, nil
	}
	return nil, fmt.Errorf("unknown kind %d", k)
}

// projectFlags is what a snapshot reads of a project or app record.
type projectFlags struct {
	OrgID string `json:"orgId"`
	State string `json:"state"`
}

// diff counts the records that differ between two snapshots (by presence or mod revision).
func diff(a, b *Snapshot) int {
	n := 0
	a.each(func(k kind, id string, it item) {
		if o, ok := b.get(k, id); !ok || o.rev != it.rev {
			n++
		}
	})
	b.each(func(k kind, id string, _ item) {
		if _, ok := a.get(k, id); !ok {
			n++
		}
	})
	return n
}
