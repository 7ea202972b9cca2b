package state

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
)

// Merging the layers, deny wins. The snapshot's tables are what lookups read, one map read each; for a subject
// that no source mirrors they hold the local record as decoded, exactly as before sources existed. For a subject
// that some source mirrors, the table holds the merge of every layer, computed here when a record of any layer
// changes, and the layers themselves are kept aside (Snapshot.layers) so the next change can merge again:
//
//   - an org is disabled for the union of the ops its local record and every mirrored record (tombstones:
//     all ops) disable;
//   - a project or app is deactivated if its local record or any mirrored one is deactivated or removed; when
//     layers name different owning orgs, the first is OrgID and the others OtherOrgIDs, and decisions check all;
//   - a client ID or domain that several layers index (a local entry, mirrored apps or orgs) is a chain of
//     entries linked by Next, local first, and decisions check each.
//
// The visible item keeps the local record's ModRevision (0 when there is no local record), so the builder's
// per-key guard for local records works unchanged; mirrored records are guarded by their own revisions here.

// layerSet is the mirrored side of a snapshot: for every subject that some source mirrors, its layers. It is
// indexed by the kind and ID the snapshot's own tables use (org, project, app, client, domain).
type layerSet struct {
	subjects [nKinds]table // id → item{val: *layers}
}

// layers are what each layer holds of one subject. Immutable once published.
type layers struct {
	local   item         // the local record as the snapshot decoded it; val is nil when there is none
	mirrors []layerEntry // ordered by ref
}

// layerEntry is one mirrored record's contribution to a subject.
type layerEntry struct {
	ref string // key of the mirrored record it comes from
	rev int64  // that record's ModRevision
	val any    // *mirrorState for orgs, projects and apps; *Client for clients; *Domain for domains
}

// mirrorState is what a snapshot keeps of a mirrored record.
type mirrorState struct {
	id, projectID string // the upstream's own ID (for apps, the app ID), and the project of an app
	orgID         string
	disabled      Ops  // orgs: what it disables; a tombstone disables everything
	deactivated   bool // projects and apps: deactivated or removed
	clientIDs     []string
	domains       []string
}

// layerBuild is the builder's copy-on-write bookkeeping for the layer set.
type layerBuild struct {
	setCopied bool
	copied    [nKinds][nShards]bool
}

func (s *Snapshot) layersOf(k kind, id string) *layers {
	if s.layers == nil {
		return nil
	}
	it, ok := s.layers.subjects[k].get(id)
	if !ok {
		return nil
	}
	l, _ := it.val.(*layers)
	return l
}

func (b *builder) layerShard(k kind, id string) *shard {
	if !b.lb.setCopied {
		next := &layerSet{}
		if b.s.layers != nil {
			*next = *b.s.layers
		}
		b.s.layers = next
		b.lb.setCopied = true
	}
	return own(&b.s.layers.subjects[k], &b.lb.copied[k], shardOf(id), 0)
}

// mirrorSubject is the snapshot kind and ID of a mirrored record's subject: the ones the local record of the
// same entity has, whatever key layout the local tables use.
func mirrorSubject(k MirrorKind, projectID, id string) (kind, string) {
	var key string
	switch k {
	case MirrorOrg:
		key = OrgKey(id)
	case MirrorProject:
		key = ProjectKey(id)
	case MirrorApp:
		key = AppKey(projectID, id)
	default:
		return kindUnknown, ""
	}
	kd, sid := parseKey(key)
	return kd, strings.Clone(sid) // not the whole key we just built
}

// relayer is called after the builder changed the local record (k, id) in the visible table: when the subject
// is mirrored, that record becomes its local layer and the visible item the merge again.
func (b *builder) relayer(k kind, id string) {
	l := b.s.layersOf(k, id)
	if l == nil {
		return
	}
	next := &layers{mirrors: l.mirrors}
	if it, ok := b.s.get(k, id); ok {
		next.local = it
	}
	b.showLayers(k, id, next)
}

// setLayer replaces the entry from ref in the layers of (k, id) by e, or removes it when e is nil.
func (b *builder) setLayer(k kind, id, ref string, e *layerEntry) {
	next := &layers{}
	if l := b.s.layersOf(k, id); l != nil {
		next.local = l.local
		next.mirrors = make([]layerEntry, 0, len(l.mirrors)+1)
		for _, m := range l.mirrors {
			if m.ref != ref {
				next.mirrors = append(next.mirrors, m)
			}
		}
	} else if e == nil {
		return
	} else if it, ok := b.s.get(k, id); ok {
		next.local = it // not mirrored until now: the visible item is the local record
	}
	if e != nil {
		next.mirrors = append(next.mirrors, *e)
		slices.SortFunc(next.mirrors, func(x, y layerEntry) int { return strings.Compare(x.ref, y.ref) })
	}
	b.showLayers(k, id, next)
}

// showLayers stores the layers of (k, id) and publishes their merge in the visible table.
func (b *builder) showLayers(k kind, id string, l *layers) {
	if len(l.mirrors) == 0 {
		b.layerShard(k, id).del(id)
		if l.local.val != nil {
			b.show(k, id, l.local)
		} else {
			b.hide(k, id)
		}
		return
	}
	b.layerShard(k, id).set(id, item{val: l})
	b.show(k, id, item{val: merge(k, id, l), rev: l.local.rev})
}

// show and hide are the only writes of this file to the visible tables; they keep the app-ID index in step.
func (b *builder) show(k kind, id string, it item) {
	b.shard(k, id).set(id, it)
	if a, ok := it.val.(*AppState); ok {
		b.reindexApp(a.ProjectID, a.ID, a)
	}
}

func (b *builder) hide(k kind, id string) {
	if it, ok := b.s.get(k, id); ok {
		if a, ok := it.val.(*AppState); ok {
			b.reindexApp(a.ProjectID, a.ID, nil)
		}
	}
	b.shard(k, id).del(id)
}

// merge computes the visible record of a mirrored subject.
func merge(k kind, id string, l *layers) any {
	switch k {
	case kindOrg:
		o := OrgState{ID: id}
		if lo, ok := l.local.val.(*OrgState); ok {
			o = *lo
		}
		for _, m := range l.mirrors {
			o.Disabled |= m.val.(*mirrorState).disabled
		}
		return &o
	case kindProject:
		p := ProjectState{ID: id}
		if lp, ok := l.local.val.(*ProjectState); ok {
			p = *lp
		}
		for _, m := range l.mirrors {
			ms := m.val.(*mirrorState)
			p.Deactivated = p.Deactivated || ms.deactivated
			p.OrgID, p.OtherOrgIDs = addOwner(p.OrgID, p.OtherOrgIDs, ms.orgID)
		}
		return &p
	case kindApp:
		a := AppState{}
		if la, ok := l.local.val.(*AppState); ok {
			a = *la
		}
		for _, m := range l.mirrors {
			ms := m.val.(*mirrorState)
			if a.ID == "" {
				a.ID = ms.id // the app's own ID, whatever the snapshot keys apps by
			}
			a.Deactivated = a.Deactivated || ms.deactivated
			if a.ProjectID == "" {
				a.ProjectID = ms.projectID
			}
			a.OrgID, a.OtherOrgIDs = addOwner(a.OrgID, a.OtherOrgIDs, ms.orgID)
		}
		return &a
	case kindClient:
		if l.local.val == nil && len(l.mirrors) == 1 {
			return l.mirrors[0].val // one claim: its entry is immutable and has no Next
		}
		var chain []Client
		if lc, ok := l.local.val.(*Client); ok {
			chain = append(chain, *lc)
		}
		for _, m := range l.mirrors {
			c := *m.val.(*Client)
			if !slices.ContainsFunc(chain, func(x Client) bool { return x.AppID == c.AppID && x.ProjectID == c.ProjectID && x.OrgID == c.OrgID }) {
				chain = append(chain, c)
			}
		}
		for i := len(chain) - 2; i >= 0; i-- {
			chain[i].Next = &chain[i+1]
		}
		return &chain[0]
	case kindDomain:
		if l.local.val == nil && len(l.mirrors) == 1 {
			return l.mirrors[0].val
		}
		var chain []Domain
		if ld, ok := l.local.val.(*Domain); ok {
			chain = append(chain, *ld)
		}
		for _, m := range l.mirrors {
			d := *m.val.(*Domain)
			if !slices.ContainsFunc(chain, func(x Domain) bool { return x.OrgID == d.OrgID }) {
				chain = append(chain, d)
			}
		}
		for i := len(chain) - 2; i >= 0; i-- {
			chain[i].Next = &chain[i+1]
		}
		return &chain[0]
	}
	return l.local.val
}

// addOwner adds an owning org named by one layer: the first becomes the owner, later different ones are kept as
// others, so a request is checked against every org any layer says the subject belongs to.
func addOwner(owner string, others []string, org string) (string, []string) {
	switch {
	case org == "" || org == owner || slices.Contains(others, org):
		return owner, others
	case owner == "":
		return org, others
	}
	return owner, append(slices.Clip(others), org)
}

// putMirror applies a put of a mirrored record at rev. A record that cannot be read denies its subject (it keeps
// the index entries the previous version had), like an unreadable local record.
func (b *builder) putMirror(key string, value []byte, rev int64) error {
	source, mk, projectID, id, ok := parseMirrorKey(key)
	if !ok {
		return nil // not a key this version understands: ignore, never fail the batch
	}
	k, sid := mirrorSubject(mk, projectID, id)
	if k == kindUnknown {
		return nil
	}
	var prev *mirrorState
	if l := b.s.layersOf(k, sid); l != nil {
		for _, m := range l.mirrors {
			if m.ref == key {
				if m.rev >= rev {
					return nil
				}
				prev = m.val.(*mirrorState)
			}
		}
	}
	ms, err := decodeMirror(source, mk, projectID, id, value)
	if err != nil {
		err = fmt.Errorf("decode %s: %w", key, err)
		ms = &mirrorState{id: id, projectID: projectID, disabled: OpsAll, deactivated: true}
		if prev != nil {
			ms.orgID, ms.clientIDs, ms.domains = prev.orgID, prev.clientIDs, prev.domains
		}
	}
	b.setLayer(k, sid, key, &layerEntry{ref: key, rev: rev, val: ms})
	b.reindexMirror(key, rev, mk, projectID, id, prev, ms)
	b.bump(rev)
	return err
}

// delMirror applies a delete of a mirrored record (a pruned tombstone, a source's records dropped by hand).
func (b *builder) delMirror(key string, rev int64) {
	_, mk, projectID, id, ok := parseMirrorKey(key)
	if !ok {
		return
	}
	k, sid := mirrorSubject(mk, projectID, id)
	l := b.s.layersOf(k, sid)
	if l == nil {
		return
	}
	i := slices.IndexFunc(l.mirrors, func(m layerEntry) bool { return m.ref == key })
	if i < 0 || l.mirrors[i].rev >= rev {
		return
	}
	prev := l.mirrors[i].val.(*mirrorState)
	b.setLayer(k, sid, key, nil)
	b.reindexMirror(key, rev, mk, projectID, id, prev, nil)
	b.bump(rev)
}

// reindexMirror moves the client-ID and domain index entries a mirrored record contributes from prev to next
// (either may be nil).
func (b *builder) reindexMirror(ref string, rev int64, mk MirrorKind, projectID, id string, prev, next *mirrorState) {
	var oldIDs, newIDs []string
	k := kindClient
	if mk == MirrorOrg {
		k = kindDomain
	}
	if prev != nil {
		oldIDs = prev.clientIDs
		if mk == MirrorOrg {
			oldIDs = prev.domains
		}
	}
	if next != nil {
		newIDs = next.clientIDs
		if mk == MirrorOrg {
			newIDs = next.domains
		}
	}
	for _, x := range oldIDs {
		if !slices.Contains(newIDs, x) {
			b.setLayer(k, x, ref, nil)
		}
	}
	for _, x := range newIDs {
		var v any
		if mk == MirrorOrg {
			v = &Domain{Domain: x, OrgID: id}
		} else {
			v = &Client{ClientID: x, AppID: id, ProjectID: projectID, OrgID: next.orgID}
		}
		b.setLayer(k, x, ref, &layerEntry{ref: ref, rev: rev, val: v})
	}
}

// mirrorJSON is what a snapshot reads of a mirrored record.
type mirrorJSON struct {
	OrgID       string   `json:"orgId"`
	Disabled    string   `json:"disabled"`
	Deactivated bool     `json:"deactivated"`
	Removed     bool     `json:"removed"`
	ClientIDs   []string `json:"clientIds"`
	Domains     []string `json:"domains"`
}

// decodeMirror reads a stored mirrored record; the key, not the record's fields, says whose it is. It decodes
// only what decisions need (a relist decodes every record), and refuses values it does not know, which the
// caller turns into a deny.
func decodeMirror(_ string, mk MirrorKind, projectID, id string, value []byte) (*mirrorState, error) {
	var j mirrorJSON
	if !decodeFast(value, []fastField{{name: "orgId", str: &j.OrgID}, {name: "disabled", str: &j.Disabled},
		{name: "deactivated", flag: &j.Deactivated}, {name: "removed", flag: &j.Removed},
		{name: "clientIds", list: &j.ClientIDs}, {name: "domains", list: &j.Domains}}) {
		j = mirrorJSON{}
		if err := json.Unmarshal(value, &j); err != nil {
			return nil, err
		}
	}
	ms := &mirrorState{id: id, projectID: projectID, orgID: j.OrgID, deactivated: j.Deactivated || j.Removed}
	if j.Disabled != "" && j.Disabled != "none" {
		ops, err := ParseOps(j.Disabled)
		if err != nil {
			return nil, err
		}
		ms.disabled = ops
	}
	if j.Removed {
		ms.disabled = OpsAll
	}
	switch mk {
	case MirrorOrg:
		if j.Deactivated {
			ms.disabled = OpsAll // an org written by hand as "deactivated": deny rather than ignore
		}
		ms.orgID = ""
		for i, d := range j.Domains {
			j.Domains[i] = NormalizeDomain(d)
		}
		ms.domains = slices.Compact(slices.Clip(j.Domains))
	case MirrorApp:
		ms.clientIDs = slices.Compact(slices.Clip(j.ClientIDs))
	}
	return ms, nil
}
