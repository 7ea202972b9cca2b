package state

import (
	"encoding/json"
	"fmt"
	"maps"
	"runtime"
	"slices"
	"sort"
	"strings"
	"testing"

	"pgregory.net/rapid"
)

// The universe of the merge property: a few subjects, two sources, every key that can describe them.
var (
	mOrgs     = []string{"o1", "o2"}
	mApps     = []string{"a1", "a2"}
	mClients  = []string{"c1", "c2"}
	mDomains  = []string{"d1.example"}
	mSources  = []string{"s1", "s2"}
	mProjects = []string{"p1", "p2"}
)

func mergeKeys() []string {
	var keys []string
	for _, o := range mOrgs {
		keys = append(keys, OrgKey(o))
	}
	for _, p := range mProjects {
		keys = append(keys, ProjectKey(p))
		for _, a := range mApps {
			keys = append(keys, AppKey(p, a))
		}
	}
	for _, c := range mClients {
		keys = append(keys, ClientKey(c))
	}
	for _, d := range mDomains {
		keys = append(keys, DomainKey(d))
	}
	for _, s := range mSources {
		for _, o := range mOrgs {
			keys = append(keys, MirrorKey(s, MirrorOrg, "", o))
		}
		for _, p := range mProjects {
			keys = append(keys, MirrorKey(s, MirrorProject, "", p))
			for _, a := range mApps {
				keys = append(keys, MirrorKey(s, MirrorApp, p, a))
			}
		}
	}
	return keys
}

func subset(rt *rapid.T, name string, of []string) []string {
	var out []string
	for _, x := range of {
		if rapid.Bool().Draw(rt, name+" "+x) {
			out = append(out, x)
		}
	}
	return out
}

// drawValue draws a valid record for key.
func drawValue(rt *rapid.T, key string) []byte {
	st := rapid.SampledFrom([]string{Active, Deactivated}).Draw(rt, "state")
	org := rapid.SampledFrom(mOrgs).Draw(rt, "org")
	var v any
	if source, mk, project, id, ok := parseMirrorKey(key); ok {
		r := MirrorRecord{Source: source, Kind: mk, ID: id, ProjectID: project, Sequence: 1,
			Removed: rapid.IntRange(0, 4).Draw(rt, "removed") == 0}
		switch mk {
		case MirrorOrg:
			r.Disabled = Ops(rapid.IntRange(0, int(OpsAll)).Draw(rt, "ops"))
			r.Domains = subset(rt, "domain", mDomains)
		case MirrorProject:
			r.OrgID, r.Deactivated = org, st == Deactivated
		case MirrorApp:
			r.OrgID, r.Deactivated = org, st == Deactivated
			r.ClientIDs = subset(rt, "client", mClients)
		}
		v = r
	} else {
		switch k, _ := parseKey(key); k {
		case kindOrg:
			v = Org{Disabled: Ops(rapid.IntRange(0, int(OpsAll)).Draw(rt, "ops"))}
		case kindProject:
			v = Project{OrgID: org, State: st}
		case kindApp:
			v = App{OrgID: org, State: st}
		case kindClient:
			v = Client{AppID: rapid.SampledFrom(mApps).Draw(rt, "app"), ProjectID: rapid.SampledFrom(mProjects).Draw(rt, "project"), OrgID: org}
		case kindDomain:
			v = Domain{OrgID: org}
		}
	}
	b, err := json.Marshal(v)
	if err != nil {
		rt.Fatal(err)
	}
	return b
}

// fingerprint renders every lookup decisions make over the universe.
func fingerprint(s *Snapshot) string {
	var b strings.Builder
	owners := func(org string, others []string) string {
		set := slices.Clone(others)
		if org != "" {
			set = append(set, org)
		}
		sort.Strings(set)
		return strings.Join(set, "+")
	}
	for _, o := range mOrgs {
		if x := s.Org(o); x != nil {
			fmt.Fprintf(&b, "org %s %s\n", o, x.Disabled)
		}
	}
	for _, p := range mProjects {
		if x := s.Project(p); x != nil {
			fmt.Fprintf(&b, "project %s %v %s\n", p, x.Deactivated, owners(x.OrgID, x.OtherOrgIDs))
		}
	}
	for _, a := range mApps {
		for _, p := range mProjects {
			if x := s.App(p, a); x != nil {
				fmt.Fprintf(&b, "app %s/%s %s %s %v %s\n", p, a, x.ID, x.ProjectID, x.Deactivated, owners(x.OrgID, x.OtherOrgIDs))
			}
		}
		if set := s.Apps(a); set != nil {
			fmt.Fprintf(&b, "appset %s %v %d\n", a, set.Deactivated, len(set.Apps))
		}
	}
	for _, c := range mClients {
		var chain []string
		for x := s.Client(c); x != nil; x = x.Next {
			chain = append(chain, x.AppID+"/"+x.ProjectID+"/"+x.OrgID)
		}
		if len(chain) > 0 {
			sort.Strings(chain)
			fmt.Fprintf(&b, "client %s %s\n", c, strings.Join(chain, " "))
		}
	}
	for _, d := range mDomains {
		var chain []string
		for x := s.Domain(d); x != nil; x = x.Next {
			chain = append(chain, x.OrgID)
		}
		if len(chain) > 0 {
			sort.Strings(chain)
			fmt.Fprintf(&b, "domain %s %s\n", d, strings.Join(chain, " "))
		}
	}
	return b.String()
}

// expected computes the fingerprint straight from the stored records: the layers' rules, deny wins.
func expected(kv map[string][]byte) string {
	type subj struct {
		exists      bool
		disabled    Ops
		deactivated bool
		owners      map[string]bool
		project     string
	}
	subjects := map[string]*subj{}
	get := func(k string) *subj {
		if subjects[k] == nil {
			subjects[k] = &subj{owners: map[string]bool{}}
		}
		return subjects[k]
	}
	clients, domains := map[string]map[string]bool{}, map[string]map[string]bool{}
	claim := func(m map[string]map[string]bool, k, v string) {
		if m[k] == nil {
			m[k] = map[string]bool{}
		}
		m[k][v] = true
	}
	for key, val := range kv {
		if _, mk, project, id, ok := parseMirrorKey(key); ok {
			var r MirrorRecord
			_ = json.Unmarshal(val, &r)
			switch mk {
			case MirrorOrg:
				s := get("org " + id)
				s.exists = true
				s.disabled |= r.Disabled
				if r.Removed {
					s.disabled = OpsAll
				}
				for _, d := range r.Domains {
					claim(domains, d, id)
				}
			case MirrorProject, MirrorApp:
				name := "project " + id
				if mk == MirrorApp {
					name = "app " + project + "/" + id
				}
				s := get(name)
				s.exists, s.deactivated = true, s.deactivated || r.Deactivated || r.Removed
				s.owners[r.OrgID] = true
				if mk == MirrorApp {
					s.project = project
					for _, c := range r.ClientIDs {
						claim(clients, c, id+"/"+project+"/"+r.OrgID)
					}
				}
			}
			continue
		}
		switch k, id := parseKey(key); k {
		case kindOrg:
			var o Org
			_ = json.Unmarshal(val, &o)
			s := get("org " + id)
			s.exists, s.disabled = true, s.disabled|o.Disabled
		case kindProject:
			var p Project
			_ = json.Unmarshal(val, &p)
			s := get("project " + id)
			s.exists, s.deactivated = true, s.deactivated || p.State == Deactivated
			s.owners[p.OrgID] = true
		case kindApp:
			var a App
			_ = json.Unmarshal(val, &a)
			project, _, _ := strings.Cut(id, "/") // the snapshot keys apps by "project/app", as etcd does
			s := get("app " + id)
			s.exists, s.deactivated, s.project = true, s.deactivated || a.State == Deactivated, project
			s.owners[a.OrgID] = true
		case kindClient:
			var c Client
			_ = json.Unmarshal(val, &c)
			claim(clients, id, c.AppID+"/"+c.ProjectID+"/"+c.OrgID)
		case kindDomain:
			var d Domain
			_ = json.Unmarshal(val, &d)
			claim(domains, id, d.OrgID)
		}
	}
	var b strings.Builder
	for _, o := range mOrgs {
		if s := subjects["org "+o]; s != nil && s.exists {
			fmt.Fprintf(&b, "org %s %s\n", o, s.disabled)
		}
	}
	for _, p := range mProjects {
		if s := subjects["project "+p]; s != nil && s.exists {
			fmt.Fprintf(&b, "project %s %v %s\n", p, s.deactivated, strings.Join(slices.Sorted(maps.Keys(s.owners)), "+"))
		}
	}
	for _, a := range mApps {
		n, deactivated := 0, false
		for _, p := range mProjects {
			if s := subjects["app "+p+"/"+a]; s != nil && s.exists {
				fmt.Fprintf(&b, "app %s/%s %s %s %v %s\n", p, a, a, s.project, s.deactivated, strings.Join(slices.Sorted(maps.Keys(s.owners)), "+"))
				n, deactivated = n+1, deactivated || s.deactivated
			}
		}
		if n > 0 {
			fmt.Fprintf(&b, "appset %s %v %d\n", a, deactivated, n)
		}
	}
	for _, c := range mClients {
		if m := clients[c]; len(m) > 0 {
			fmt.Fprintf(&b, "client %s %s\n", c, strings.Join(slices.Sorted(maps.Keys(m)), " "))
		}
	}
	for _, d := range mDomains {
		if m := domains[d]; len(m) > 0 {
			fmt.Fprintf(&b, "domain %s %s\n", d, strings.Join(slices.Sorted(maps.Keys(m)), " "))
		}
	}
	return b.String()
}

// TestMergeProperty: for random sequences of puts and deletes across the local and two mirrored layers, the
// snapshot built change by change equals the one a relist builds from what is stored, both equal the layer
// rules computed from the records directly (deny wins, every owner and client claim kept), and snapshots
// published earlier never change.
//
// Apps are keyed by (project, app); the same app ID under two projects is two records, and a request that
// names the app ID alone sees the set of them.
func TestMergeProperty(t *testing.T) {
	keys := mergeKeys()
	rapid.Check(t, func(rt *rapid.T) {
		kv := map[string][]byte{}
		var snaps []*Snapshot
		var prints []string
		var cur *Snapshot
		steps := rapid.IntRange(1, 60).Draw(rt, "steps")
		var rev int64
		for range steps {
			b := newBuilder(cur)
			// One watch response may carry several events, each at its own revision.
			for range rapid.IntRange(1, 3).Draw(rt, "events") {
				rev++
				key := rapid.SampledFrom(keys).Draw(rt, "key")
				if rapid.IntRange(0, 3).Draw(rt, "delete") == 0 {
					delete(kv, key)
					b.del(key, rev)
					continue
				}
				v := drawValue(rt, key)
				kv[key] = v
				if err := b.put(key, v, rev); err != nil {
					rt.Fatalf("put %s %s: %v", key, v, err)
				}
			}
			cur = b.snapshot()
			snaps = append(snaps, cur)
			prints = append(prints, fingerprint(cur))
		}
		scratch := newBuilder(nil)
		for _, key := range slices.Sorted(maps.Keys(kv)) {
			if err := scratch.put(key, kv[key], rev); err != nil {
				rt.Fatal(err)
			}
		}
		want := expected(kv)
		if got := fingerprint(cur); got != want {
			rt.Fatalf("incremental snapshot:\n%s\nwant:\n%s", got, want)
		}
		if got := fingerprint(scratch.snapshot()); got != want {
			rt.Fatalf("relisted snapshot:\n%s\nwant:\n%s", got, want)
		}
		for i, s := range snaps {
			if got := fingerprint(s); got != prints[i] {
				rt.Fatalf("snapshot %d changed after it was published:\n%s\nwas:\n%s", i, got, prints[i])
			}
		}
		if len(kv) == 0 && cur.layers != nil {
			for k := range cur.layers.subjects {
				for _, m := range cur.layers.subjects[k].shards {
					if m.len() > 0 {
						rt.Fatalf("layers left behind with nothing stored: %v", m)
					}
				}
			}
		}
	})
}

// mirroredOrgs builds a snapshot of n orgs, each mirrored by a source, half of them with a local record too;
// with local set, n local org records only.
func mirroredOrgs(tb testing.TB, n int, local ...bool) (*Snapshot, []string) {
	ids := make([]string, n)
	bl := newBuilder(nil)
	rev := int64(0)
	for i := range ids {
		ids[i] = fmt.Sprint(69629023906488334 + i)
		rev++
		if len(local) > 0 {
			lv, _ := json.Marshal(Org{ID: ids[i], Disabled: Ops(i % 2)})
			if err := bl.put(OrgKey(ids[i]), lv, rev); err != nil {
				tb.Fatal(err)
			}
			continue
		}
		v, _ := json.Marshal(MirrorRecord{Source: "zitadel", Kind: MirrorOrg, ID: ids[i], Disabled: Ops(i % 2), Sequence: 1})
		if err := bl.put(MirrorKey("zitadel", MirrorOrg, "", ids[i]), v, rev); err != nil {
			tb.Fatal(err)
		}
		if i%2 == 0 {
			rev++
			lv, _ := json.Marshal(Org{ID: ids[i], Disabled: OpBackup})
			if err := bl.put(OrgKey(ids[i]), lv, rev); err != nil {
				tb.Fatal(err)
			}
		}
	}
	return bl.s, ids
}

// mirroredApps builds a snapshot of n apps with one client ID each: mirrored by a source, or (local) local
// app records and their client index entries.
func mirroredApps(tb testing.TB, n int, local bool) *Snapshot {
	bl := newBuilder(nil)
	for i := range n {
		app, client, rev := fmt.Sprint(69629023906488334+i), fmt.Sprintf("%d@project", 69629023906488334+i), int64(2*i+1)
		if local {
			v, _ := json.Marshal(App{ProjectID: "69629023906400000", OrgID: "69629023906300000", State: Active})
			c, _ := json.Marshal(Client{AppID: app, ProjectID: "69629023906400000", OrgID: "69629023906300000"})
			if bl.put(AppKey("69629023906400000", app), v, rev) != nil || bl.put(ClientKey(client), c, rev+1) != nil {
				tb.Fatal("put")
			}
			continue
		}
		v, _ := json.Marshal(MirrorRecord{Source: "zitadel", Kind: MirrorApp, ID: app, ProjectID: "69629023906400000",
			OrgID: "69629023906300000", ClientIDs: []string{client}, Sequence: 1})
		if err := bl.put(MirrorKey("zitadel", MirrorApp, "69629023906400000", app), v, rev); err != nil {
			tb.Fatal(err)
		}
	}
	return bl.s
}

// BenchmarkSnapshotLookupMirrored measures the lookups of BenchmarkSnapshotLookup when every org is mirrored by
// a source and half of them have a local record too: the merged record is precomputed, so the cost is the same
// one map read, with no allocation. "heap" reports what the snapshot holds per such org, "heap-local-only" per
// org of a snapshot of local records only; "heap-apps" per mirrored app with one client ID, against local app
// records with their client index entries.
func BenchmarkSnapshotLookupMirrored(b *testing.B) {
	const n = 100_000
	snap, ids := mirroredOrgs(b, n)
	b.Run("hit", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			if snap.Org(ids[i%n]) == nil {
				b.Fatal("missing")
			}
			i++
		}
	})
	b.Run("miss", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if snap.Org("1") != nil {
				b.Fatal("found")
			}
		}
	})
	for _, c := range []struct {
		name, unit string
		build      func() *Snapshot
	}{
		{"heap", "heapB/org", func() *Snapshot { s, _ := mirroredOrgs(b, n); return s }},
		{"heap-local-only", "heapB/org", func() *Snapshot { s, _ := mirroredOrgs(b, n, true); return s }},
		{"heap-apps", "heapB/app", func() *Snapshot { return mirroredApps(b, n, false) }},
		{"heap-apps-local-only", "heapB/app", func() *Snapshot { return mirroredApps(b, n, true) }},
	} {
		b.Run(c.name, func(b *testing.B) {
			var per float64
			for b.Loop() {
				runtime.GC()
				var m0, m1 runtime.MemStats
				runtime.ReadMemStats(&m0)
				s := c.build()
				runtime.GC()
				runtime.ReadMemStats(&m1)
				runtime.KeepAlive(s)
				per = float64(m1.HeapAlloc-m0.HeapAlloc) / n
			}
			b.ReportMetric(per, c.unit)
		})
	}
}

// FuzzApplyMirrorRecord: any bytes under any mirror key are applied without a panic; a mirrored record deact
// cannot read, or a tombstone, denies its subject; deleting the record leaves no trace in the snapshot.
func FuzzApplyMirrorRecord(f *testing.F) {
	for _, seed := range []struct{ key, value string }{
		{MirrorKey("zitadel", MirrorOrg, "", "1"), `{"disabled":"login,token","sequence":3,"domains":["A.example"]}`},
		{MirrorKey("zitadel", MirrorOrg, "", "1"), `{"removed":true,"sequence":4}`},
		{MirrorKey("zitadel", MirrorOrg, "", "1"), `{"disabled":"everything"}`},
		{MirrorKey("zitadel", MirrorOrg, "", "1"), `{"deactivated":true}`},
		{MirrorKey("zitadel", MirrorProject, "", "p"), `{"orgId":"1","deactivated":true,"sequence":1}`},
		{MirrorKey("zitadel", MirrorApp, "p", "a"), `{"orgId":"1","clientIds":["c@p","c@p"],"sequence":1}`},
		{MirrorKey("zitadel", MirrorApp, "p", "a"), `{"deactivated":"maybe"}`},
		{MirrorKey("zitadel", MirrorApp, "p", "a"), `[`},
		{MirrorPrefix + "zitadel/app/p", `{}`},
		{MirrorPrefix + "zitadel/user/u", `{}`},
		{MirrorPrefix + "/org/1", `{}`},
	} {
		f.Add(seed.key, []byte(seed.value))
	}
	f.Fuzz(func(t *testing.T, key string, value []byte) {
		b := newBuilder(nil)
		err := b.put(key, value, 7)
		_, mk, project, id, ok := parseMirrorKey(key)
		if !ok {
			if !strings.HasPrefix(key, MirrorPrefix) {
				return // a local key: FuzzApplyRecord
			}
			if b.s.Len() != 0 || b.s.layers != nil {
				t.Fatalf("non-mirror key %q was applied", key)
			}
			return
		}
		k, sid := mirrorSubject(mk, project, id)
		var removed struct {
			Removed bool `json:"removed"`
		}
		denyAll := err != nil || (json.Unmarshal(value, &removed) == nil && removed.Removed)
		if denyAll {
			switch k {
			case kindOrg:
				if o := b.s.Org(sid); o == nil || o.Disabled != OpsAll {
					t.Fatalf("%s %q: org held as %+v (err %v)", key, value, o, err)
				}
			case kindProject:
				if p := b.s.Project(sid); p == nil || !p.Deactivated {
					t.Fatalf("%s %q: project held as %+v (err %v)", key, value, p, err)
				}
			case kindApp:
				if a := b.s.App(project, id); a == nil || !a.Deactivated {
					t.Fatalf("%s %q: app held as %+v (err %v)", key, value, a, err)
				}
			}
		}
		b2 := newBuilder(b.s)
		b2.del(key, 8)
		if n := b2.s.Len(); n != 0 {
			t.Fatalf("%d records left after deleting %s", n, key)
		}
		if b2.s.layers != nil {
			for k := range b2.s.layers.subjects {
				for _, m := range b2.s.layers.subjects[k].shards {
					if m.len() != 0 {
						t.Fatalf("layers left after deleting %s: %v", key, m)
					}
				}
			}
		}
	})
}
