package state

import (
	"encoding/json"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"
	"testing"

	"pgregory.net/rapid"
)

// The universe of the encoder's property is the merge property's (mergeKeys, drawValue), with accounts and a few
// IDs that are odd but keys can hold: a record must come back under the key it was read from.
func peerKeys() []string {
	return append(mergeKeys(), AccountKey("u1"), AccountKey(`u"\é`), ClientKey("c\x01\xff"), DomainKey("D2.example.."),
		OrgKey(`o/\`), MirrorKey("s1", MirrorOrg, "", `o"3`))
}

// Values deact cannot read, by the kind of key they are stored under: every one is held as a deny or dropped.
var unreadable = map[string][]string{
	"org":     {`[`, `{"state":"Deactivated"}`, `{"disableBackup":"yes"}`},
	"project": {`[`, `{"orgId":"o1","state":"disabled"}`, `{"orgId":1}`},
	"app":     {`[`, `{"orgId":"o1","state":"DEACTIVATED"}`},
	"client":  {`[`, `{"appId":true}`},
	"domain":  {`[`, `{"orgId":["o1"]}`},
	"account": {`{"orgId":[]}`},
	"mirror":  {`[`, `{"disabled":"everything"}`, `{"deactivated":"maybe"}`, `{"clientIds":"c1"}`},
}

// Values deact reads that the records it writes never look like: escapes, characters outside ASCII, spellings
// decode and decodeMirror normalize, empty lists.
var odd = map[string][]string{
	"org":     {`{"state":"deactivated"}`, `{"state":"active","disableToken":true,"name":"x\"y"}`, `{}`},
	"project": {`{"orgId":"o\"1\\\u0001é","state":"deactivated"}`, `{"orgId":"o\u20282"}`},
	"app":     {`{"orgId":"o\"1\\\u0001é","state":"deactivated"}`, `{"orgId":"","projectId":"elsewhere"}`},
	"client":  {`{"clientId":"other","appId":"a\u00e91","projectId":"p\n","orgId":"o1"}`, `{"appId":"a1"}`},
	"domain":  {`{"orgId":"o\u20282","domain":"elsewhere"}`},
	"account": {`{"id":"other","orgId":"o\t1"}`, `null`},
	"mirror/org": {`{"disabled":"none","domains":["D1.Example..","d1.example","D1.example",""]}`,
		`{"removed":true,"domains":[]}`, `{"deactivated":true,"disabled":"login"}`, `{"orgId":"o1","clientIds":["c1"]}`},
	"mirror/project": {`{"orgId":"o2","disabled":"login","removed":false}`, `{"removed":true}`, `{"clientIds":[]}`},
	"mirror/app": {`{"orgId":"o1","clientIds":["c1","c1","c2"]}`, `{"orgId":"o\u00001","clientIds":[]}`,
		`{"orgId":"o2","deactivated":true,"clientIds":["c2\"x","c\u00e9"],"domains":["d1.example"]}`},
}

// kindName is the name unreadable and odd know key's kind by.
func kindName(key string) (name, mirrorName string) {
	if _, mk, _, _, ok := parseMirrorKey(key); ok {
		return "mirror", "mirror/" + mk.String()
	}
	k, _ := parseKey(key)
	return [...]string{kindOrg: "org", kindProject: "project", kindApp: "app", kindClient: "client",
		kindDomain: "domain", kindAccount: "account"}[k], ""
}

// drawPeerValue draws a record for key: mostly the merge property's valid records, some unreadable, some odd.
func drawPeerValue(rt *rapid.T, key string) []byte {
	name, mirrorName := kindName(key)
	switch rapid.IntRange(0, 5).Draw(rt, "value kind") {
	case 0:
		return []byte(rapid.SampledFrom(unreadable[name]).Draw(rt, "unreadable"))
	case 1:
		if mirrorName != "" {
			name = mirrorName
		}
		return []byte(rapid.SampledFrom(odd[name]).Draw(rt, "odd"))
	}
	if name == "account" {
		v, _ := json.Marshal(Account{OrgID: rapid.SampledFrom(mOrgs).Draw(rt, "org")})
		return v
	}
	return drawValue(rt, key)
}

// fataler is what records and rebuild need of a *testing.T or a *rapid.T.
type fataler interface {
	Helper()
	Fatal(args ...any)
	Fatalf(format string, args ...any)
}

// peerRecord is one record eachRecord emitted, copied.
type peerRecord struct {
	key   string
	rev   int64
	value []byte
}

// records collects what s.eachRecord emits, checking that every key is a state key a builder reads as one
// subject's record, and that none comes twice.
func records(t fataler, s *Snapshot) []peerRecord {
	t.Helper()
	var out []peerRecord
	seen := map[string]bool{}
	err := s.eachRecord(func(key []byte, rev int64, value []byte) error {
		k := string(key)
		if seen[k] {
			return fmt.Errorf("%q emitted twice", k)
		}
		seen[k] = true
		if _, mk, project, id, ok := parseMirrorKey(k); ok {
			if sk, _ := mirrorSubject(mk, project, id); sk == kindUnknown {
				return fmt.Errorf("mirror key %q names no subject", k)
			}
		} else if pk, _ := parseKey(k); pk == kindUnknown {
			return fmt.Errorf("%q is not a key a builder reads", k)
		}
		if !json.Valid(value) {
			return fmt.Errorf("%q: value %q is not JSON", k, value)
		}
		out = append(out, peerRecord{k, rev, slices.Clone(value)})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// rebuild builds a snapshot from recs as a gateway would: through putListed, in the order given. Every record
// must be readable: a placeholder is sent as a record that denies, not as one that fails again.
func rebuild(t fataler, recs []peerRecord) *Snapshot {
	t.Helper()
	b := newBuilder(nil)
	for _, r := range recs {
		if err := b.putListed([]byte(r.key), r.value, r.rev); err != nil {
			t.Fatalf("emitted record %s %s does not read back: %v", r.key, r.value, err)
		}
	}
	return b.snapshot()
}

func tableItems(t *table) map[string]item {
	m := map[string]item{}
	for _, sh := range t.shards {
		sh.each(func(id string, it item) { m[id] = it })
	}
	return m
}

// snapshotDiff describes the first way a and b differ, or is "": the same records by kind, ID and revision
// holding deeply equal values, the same app-ID index, the same layers, and the same decisions.
func snapshotDiff(a, b *Snapshot) string {
	if ka, kb := SnapshotKeys(a), SnapshotKeys(b); !maps.Equal(ka, kb) {
		return fmt.Sprintf("keys differ:\n%v\n%v", ka, kb)
	}
	differ := func(what string, x, y map[string]item) string {
		for id, it := range x {
			if o, ok := y[id]; !ok || !reflect.DeepEqual(it, o) {
				return fmt.Sprintf("%s %q: %s against %s", what, id, describe(it), describe(o))
			}
		}
		for id, it := range y {
			if _, ok := x[id]; !ok {
				return fmt.Sprintf("%s %q: missing against %s", what, id, describe(it))
			}
		}
		return ""
	}
	for k := range a.tables {
		if d := differ(fmt.Sprint("kind ", k), tableItems(&a.tables[k]), tableItems(&b.tables[k])); d != "" {
			return d
		}
	}
	if d := differ("app ID", tableItems(&a.appIDs), tableItems(&b.appIDs)); d != "" {
		return d
	}
	for k := range nKinds {
		var la, lb map[string]item
		if a.layers != nil {
			la = tableItems(&a.layers.subjects[k])
		}
		if b.layers != nil {
			lb = tableItems(&b.layers.subjects[k])
		}
		if d := differ(fmt.Sprint("layers of kind ", k), la, lb); d != "" {
			return d
		}
	}
	if fa, fb := fingerprint(a), fingerprint(b); fa != fb {
		return fmt.Sprintf("decisions differ:\n%s\nagainst:\n%s", fa, fb)
	}
	// fingerprint knows the merge property's universe; these are the decisions on every subject either holds.
	var ids [nKinds][]string
	for _, s := range []*Snapshot{a, b} {
		s.each(func(k kind, id string, _ item) { ids[k] = append(ids[k], id) })
	}
	if da, db := decisions(a, ids), decisions(b, ids); da != db {
		return fmt.Sprintf("decisions differ:\n%s\nagainst:\n%s", da, db)
	}
	return ""
}

// decisions renders what every lookup a decision makes finds for these subjects, by kind.
func decisions(s *Snapshot, ids [nKinds][]string) string {
	var b strings.Builder
	for _, id := range ids[kindOrg] {
		if o := s.Org(id); o != nil {
			fmt.Fprintf(&b, "org %q %s\n", id, o.Disabled)
		}
	}
	for _, id := range ids[kindProject] {
		if p := s.Project(id); p != nil {
			fmt.Fprintf(&b, "project %q %v %q %q\n", id, p.Deactivated, p.OrgID, p.OtherOrgIDs)
		}
	}
	for _, id := range ids[kindApp] {
		project, app, _ := strings.Cut(id, "/")
		if a := s.App(project, app); a != nil {
			fmt.Fprintf(&b, "app %q %v %q %q\n", id, a.Deactivated, a.OrgID, a.OtherOrgIDs)
		}
		if set := s.Apps(app); set != nil {
			fmt.Fprintf(&b, "apps %q %v %d\n", app, set.Deactivated, len(set.Apps))
		}
	}
	for _, id := range ids[kindClient] {
		for c := s.Client(id); c != nil; c = c.Next {
			fmt.Fprintf(&b, "client %q %q %q %q\n", id, c.AppID, c.ProjectID, c.OrgID)
		}
	}
	for _, id := range ids[kindDomain] {
		for d := s.Domain(id); d != nil; d = d.Next {
			fmt.Fprintf(&b, "domain %q %q\n", id, d.OrgID)
		}
	}
	for _, id := range ids[kindAccount] {
		if a := s.Account(id); a != nil {
			fmt.Fprintf(&b, "account %q %q\n", id, a.OrgID)
		}
	}
	return b.String()
}

// describe renders an item with what its pointers point at.
func describe(it item) string {
	switch v := it.val.(type) {
	case *layers:
		s := fmt.Sprintf("layers{local %s", describe(v.local))
		for _, m := range v.mirrors {
			s += fmt.Sprintf(" %s@%d %s", m.ref, m.rev, describe(item{val: m.val}))
		}
		return s + "}"
	case *AppSet:
		s := fmt.Sprintf("set{%v", v.Deactivated)
		for _, a := range v.Apps {
			s += fmt.Sprintf(" %+v", *a)
		}
		return s + "}"
	case *Client:
		s := ""
		for c := v; c != nil; c = c.Next {
			s += fmt.Sprintf("%+v ", *c)
		}
		return fmt.Sprintf("%s@%d", s, it.rev)
	case *Domain:
		s := ""
		for d := v; d != nil; d = d.Next {
			s += fmt.Sprintf("%+v ", *d)
		}
		return fmt.Sprintf("%s@%d", s, it.rev)
	case nil:
		return "none"
	}
	return fmt.Sprintf("%+v@%d", reflect.ValueOf(it.val).Elem().Interface(), it.rev)
}

// TestEachRecordRoundTrip: for random stored records of every kind (local ones, mirrored orgs, projects and apps
// with client IDs and domains, subjects whose layers disagree, values deact cannot read, values it reads but
// never writes), the records a snapshot emits rebuild, through putListed in the order emitted and in any other,
// a snapshot equal to it: the same records at the same revisions, deeply equal values and layers, the same
// decisions. Emitting again from the rebuilt snapshot gives the same records.
//
// The snapshot is built either by a list, as a fresh replica's is, or change by change through puts and deletes,
// as an admin node's replica is after watching for a while (an unreadable mirrored record then keeps the index
// entries of the one it replaced, which a list of etcd could not restore but the emitted records must).
func TestEachRecordRoundTrip(t *testing.T) {
	keys := peerKeys()
	rapid.Check(t, func(rt *rapid.T) {
		var a *Snapshot
		listed := rapid.Bool().Draw(rt, "listed")
		if listed {
			b := newBuilder(nil)
			revs := make([]int64, len(keys)) // each key its own mod revision, in no relation to key order
			for i := range revs {
				revs[i] = int64(i + 1)
			}
			revs = rapid.Permutation(revs).Draw(rt, "revisions")
			for i, key := range slices.Sorted(slices.Values(keys)) {
				if rapid.IntRange(0, 2).Draw(rt, "stored "+key) == 0 {
					continue
				}
				_ = b.putListed([]byte(key), drawPeerValue(rt, key), revs[i]) // unreadable records are errors
			}
			a = b.snapshot()
		} else {
			var rev int64
			for range rapid.IntRange(1, 40).Draw(rt, "steps") {
				b := newBuilder(a)
				for range rapid.IntRange(1, 3).Draw(rt, "events") {
					rev++
					key := rapid.SampledFrom(keys).Draw(rt, "key")
					if rapid.IntRange(0, 4).Draw(rt, "delete") == 0 {
						b.del(key, rev)
						continue
					}
					_ = b.put(key, drawPeerValue(rt, key), rev)
				}
				a = b.snapshot()
			}
		}

		recs := records(rt, a)
		got := rebuild(rt, recs)
		if d := snapshotDiff(a, got); d != "" {
			rt.Fatalf("rebuilt in emitted order: %s", d)
		}
		if got.Revision() > a.Revision() || listed && got.Revision() != a.Revision() {
			rt.Fatalf("rebuilt at revision %d from a snapshot at %d", got.Revision(), a.Revision())
		}
		shuffled := rebuild(rt, rapid.Permutation(recs).Draw(rt, "order"))
		if d := snapshotDiff(a, shuffled); d != "" {
			rt.Fatalf("rebuilt in another order: %s", d)
		}
		again := records(rt, got)
		byKey := func(rs []peerRecord) map[string]string {
			m := map[string]string{}
			for _, r := range rs {
				m[r.key] = fmt.Sprintf("%d %s", r.rev, r.value)
			}
			return m
		}
		if x, y := byKey(recs), byKey(again); !maps.Equal(x, y) {
			rt.Fatalf("the rebuilt snapshot emits other records:\n%v\nagainst:\n%v", x, y)
		}
	})
}

// TestEachRecordPlaceholders: a record deact could not read is held as a deny, and the record emitted for it
// reads as a record (no error on the gateway) holding the same deny; an unreadable index entry, dropped, is not
// emitted at all. An unreadable mirrored record that replaced a readable one keeps its index entries, and so do
// the emitted records.
func TestEachRecordPlaceholders(t *testing.T) {
	mApp := MirrorKey("zitadel", MirrorApp, "p", "a")
	mOrg := MirrorKey("zitadel", MirrorOrg, "", "o")
	orgDenied := func(s *Snapshot) string {
		if o := s.Org("o"); o == nil || o.Disabled != OpsAll {
			return fmt.Sprintf("org held as %+v", o)
		}
		return ""
	}
	appDenied := func(s *Snapshot) string {
		if a := s.App("p", "a"); a == nil || !a.Deactivated {
			return fmt.Sprintf("app held as %+v", a)
		}
		if set := s.Apps("a"); set == nil || !set.Deactivated {
			return fmt.Sprintf("app set held as %+v", set)
		}
		return ""
	}
	absent := func(s *Snapshot) string {
		if n := s.Len(); n != 0 {
			return fmt.Sprintf("%d records", n)
		}
		return ""
	}
	for _, c := range []struct {
		name        string
		prev        map[string]string // stored before, read by a watch
		key, value  string
		want        func(*Snapshot) string
		wantRecords int
	}{
		{name: "org unknown state", key: OrgKey("o"), value: `{"state":"Deactivated"}`, want: orgDenied, wantRecords: 1},
		{name: "org not JSON", key: OrgKey("o"), value: `[`, want: orgDenied, wantRecords: 1},
		{name: "org flag not a bool", key: OrgKey("o"), value: `{"disableBackup":"yes"}`, want: orgDenied, wantRecords: 1},
		{name: "project unknown state", key: ProjectKey("p"), value: `{"orgId":"o","state":"disabled"}`, wantRecords: 1,
			want: func(s *Snapshot) string {
				if p := s.Project("p"); p == nil || !p.Deactivated {
					return fmt.Sprintf("project held as %+v", p)
				}
				return ""
			}},
		{name: "app org not a string", key: AppKey("p", "a"), value: `{"orgId":1}`, want: appDenied, wantRecords: 1},
		{name: "app unreadable, mirrored active", prev: map[string]string{mApp: `{"orgId":"o"}`}, key: AppKey("p", "a"),
			value: `[`, want: appDenied, wantRecords: 2},
		{name: "client", key: ClientKey("c"), value: `[`, want: absent},
		{name: "domain", key: DomainKey("d.example"), value: `{"orgId":["o"]}`, want: absent},
		{name: "account", key: AccountKey("u"), value: `{"orgId":[]}`, want: absent},
		{name: "mirrored org", key: mOrg, value: `{"disabled":"everything"}`, want: orgDenied, wantRecords: 1},
		{name: "mirrored org keeps its domains", prev: map[string]string{mOrg: `{"domains":["D.example"]}`}, key: mOrg,
			value: `{"disabled":"everything"}`, wantRecords: 1, want: func(s *Snapshot) string {
				if d := s.Domain("d.example"); d == nil || d.OrgID != "o" || d.Next != nil {
					return fmt.Sprintf("domain held as %+v", d)
				}
				return orgDenied(s)
			}},
		{name: "mirrored project", key: MirrorKey("zitadel", MirrorProject, "", "p"), value: `{"deactivated":"maybe"}`,
			wantRecords: 1, want: func(s *Snapshot) string {
				if p := s.Project("p"); p == nil || !p.Deactivated {
					return fmt.Sprintf("project held as %+v", p)
				}
				return ""
			}},
		{name: "mirrored app", key: mApp, value: `[`, want: appDenied, wantRecords: 1},
		{name: "mirrored app keeps its client IDs", prev: map[string]string{mApp: `{"orgId":"o","clientIds":["c@p"]}`},
			key: mApp, value: `{"clientIds":"c@p"}`, wantRecords: 1, want: func(s *Snapshot) string {
				if cl := s.Client("c@p"); cl == nil || cl.AppID != "a" || cl.ProjectID != "p" || cl.OrgID != "o" || cl.Next != nil {
					return fmt.Sprintf("client held as %+v", cl)
				}
				return appDenied(s)
			}},
	} {
		t.Run(c.name, func(t *testing.T) {
			var base *Snapshot
			if c.prev != nil {
				b := newBuilder(nil)
				for k, v := range c.prev {
					if err := b.put(k, []byte(v), 1); err != nil {
						t.Fatal(err)
					}
				}
				base = b.snapshot()
			}
			b := newBuilder(base)
			if err := b.put(c.key, []byte(c.value), 2); err == nil {
				t.Fatalf("%s %s read without an error", c.key, c.value)
			}
			held := b.snapshot()
			if d := c.want(held); d != "" {
				t.Fatalf("held: %s", d)
			}
			recs := records(t, held)
			if len(recs) != c.wantRecords {
				t.Fatalf("%d records emitted, want %d: %v", len(recs), c.wantRecords, recs)
			}
			got := rebuild(t, recs)
			if d := c.want(got); d != "" {
				t.Fatalf("rebuilt: %s (from %+v)", d, recs)
			}
			if d := snapshotDiff(held, got); d != "" {
				t.Fatalf("rebuilt: %s", d)
			}
		})
	}
}

// BenchmarkEachRecord measures encoding a snapshot of 10⁵ records, most of them local and a tenth of the apps
// mirrored with a client ID: "ns/record" is the cost per record emitted.
func BenchmarkEachRecord(b *testing.B) {
	const n = 100_000
	bl := newBuilder(nil)
	put := func(key string, v any, rev int64) {
		value, err := json.Marshal(v)
		if err == nil {
			err = bl.put(key, value, rev)
		}
		if err != nil {
			b.Fatal(err)
		}
	}
	for i := range n / 6 {
		id, org, project := fmt.Sprint(69629023906488334+i), fmt.Sprint(59629023906488334+i/10), fmt.Sprint(49629023906488334+i/10)
		rev := int64(6*i + 1)
		put(OrgKey(org), Org{ID: org, Disabled: Ops(i % 3)}, rev)
		put(ProjectKey(project), Project{ID: project, OrgID: org, State: stateName(i%7 == 0)}, rev+1)
		put(AppKey(project, id), App{ID: id, ProjectID: project, OrgID: org, State: stateName(i%5 == 0)}, rev+2)
		put(ClientKey(id+"@"+project), Client{AppID: id, ProjectID: project, OrgID: org}, rev+3)
		put(DomainKey(id+".example"), Domain{OrgID: org}, rev+4)
		if i%10 == 0 {
			put(MirrorKey("zitadel", MirrorApp, project, id), MirrorRecord{Source: "zitadel", Kind: MirrorApp, ID: id,
				ProjectID: project, OrgID: org, ClientIDs: []string{id + "@zitadel"}, Sequence: 1}, rev+5)
		} else {
			put(AccountKey(id), Account{OrgID: org}, rev+5)
		}
	}
	s := bl.snapshot()
	var records int
	b.ReportAllocs()
	for b.Loop() {
		records = 0
		if err := s.eachRecord(func([]byte, int64, []byte) error { records++; return nil }); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(records), "ns/record")
}
