package state

import (
	"strings"
	"testing"
	"time"
)

// FuzzApplyRecord: any bytes stored under a state key are applied without a panic, and an org, project or app
// record deact cannot read is held deactivated, never active.
func FuzzApplyRecord(f *testing.F) {
	for _, seed := range []struct{ key, value string }{
		{OrgKey("1"), `{"id":"1","state":"deactivated","disableLogin":true}`},
		{OrgKey("1"), `{"state":"deactivated"}`},
		{OrgKey("1"), `{"disableBackup":"yes"}`},
		{OrgKey("1"), `{"state":"Deactivated"}`},
		{ProjectKey("p"), `{"orgId":"1","state":"disabled"}`},
		{AppKey("p", "a"), `{"orgId":"1","state":"DEACTIVATED"}`},
		{ProjectKey("p"), `{"orgId":"1","state":"active"}`},
		{AppKey("p", "a"), `{"orgId":"1","projectId":"p","state":"deactivated"}`},
		{ClientKey("c@p"), `{"appId":"a","projectId":"p","orgId":"1"}`},
		{DomainKey("acme.example"), `{"orgId":"1"}`},
		{AccountKey("u"), `{"orgId":"1"}`},
		{AppKey("p", "a"), `[`},
		{StatePrefix + "future/x", `{}`},
	} {
		f.Add(seed.key, []byte(seed.value))
	}
	f.Fuzz(func(t *testing.T, key string, value []byte) {
		b := newBuilder(nil)
		err := b.put(key, value, 7)
		k, id := parseKey(key)
		if k == kindUnknown {
			if strings.HasPrefix(key, MirrorPrefix) {
				return // the mirrored layer: FuzzApplyMirrorRecord
			}
			if b.s.Len() != 0 {
				t.Fatalf("unknown key %q was applied", key)
			}
			return
		}
		if err == nil {
			return
		}
		switch k {
		case kindOrg:
			if o := b.s.Org(id); o == nil || o.Disabled != OpsAll {
				t.Fatalf("unreadable org held as %+v", o)
			}
		case kindProject:
			if p := b.s.Project(id); p == nil || !p.IsDeactivated() {
				t.Fatalf("unreadable project held as %+v", p)
			}
		case kindApp:
			project, app, _ := strings.Cut(id, "/")
			if a := b.s.App(project, app); a == nil || !a.IsDeactivated() {
				t.Fatalf("unreadable app held as %+v", a)
			}
			if set := b.s.Apps(app); set == nil || !set.Deactivated {
				t.Fatalf("unreadable app's set held as %+v", set)
			}
		}
	})
}

// FuzzImportLine: any NDJSON line is either rejected with an error or becomes operations on keys inside the
// state prefix.
func FuzzImportLine(f *testing.F) {
	for _, seed := range []string{
		`{"org":{"id":"1","disableLogin":true,"domains":["a.example"]}}`,
		`{"app":{"id":"a","projectId":"p","orgId":"1","clientIds":["c@p"],"state":"deactivated"}}`,
		`{"project":{"id":"p","orgId":"1"}}`,
		`{"account":{"id":"u","orgId":"1"}}`,
		`{"org":{"id":"../nodes/x"}}`,
		`{}`, `null`, `{"org":null,"app":{}}`,
		`{"org":{"id":"1","state":"Deactivated"}}`,
		`{"org":{"id":"1","disabledBy":{"commvault":"backup"}}}`,
		`{"app":{"id":"a","projectId":"p","orgId":"1","stat":"deactivated"}}`,
	} {
		f.Add(seed)
	}
	s := &Store{now: time.Now}
	f.Fuzz(func(t *testing.T, line string) {
		ops, err := s.recordOps([]byte(line), Change{})
		if err != nil {
			return
		}
		for _, op := range ops {
			key := string(op.KeyBytes())
			if k, _ := parseKey(key); k == kindUnknown && !strings.HasPrefix(key, AppIDsPrefix) {
				t.Fatalf("line %q writes %q, outside the state keys", line, key)
			}
		}
	})
}

// FuzzAppSetDenyWins: after any sequence of puts and deletes of app records sharing one app ID under several
// projects, the app-ID set holds exactly the records the table holds, and is deactivated exactly when one of
// them is.
func FuzzAppSetDenyWins(f *testing.F) {
	f.Add([]byte{0x00, 0x05, 0x0a})
	f.Add([]byte{0x04, 0x01, 0x08, 0x04})
	f.Add([]byte{0x07, 0x0b, 0x03, 0x0f, 0x00})
	f.Fuzz(func(t *testing.T, steps []byte) {
		projects := []string{"p0", "p1", "p2", "p3"}
		var s *Snapshot
		for i, step := range steps {
			b := newBuilder(s)
			project := projects[step&3]
			key, rev := AppKey(project, "X"), int64(i+1)
			switch {
			case step&8 != 0:
				b.del(key, rev)
			case step&4 != 0:
				_ = b.put(key, []byte(`{"orgId":"o","state":"deactivated"}`), rev)
			default:
				_ = b.put(key, []byte(`{"orgId":"o","state":"active"}`), rev)
			}
			s = b.s // half the steps read (and build on) the builder's unpacked snapshot, half the published form
			if step&16 != 0 {
				s = b.snapshot()
			}
			held, deactivated := 0, false
			for _, p := range projects {
				if a := s.App(p, "X"); a != nil {
					held++
					deactivated = deactivated || a.IsDeactivated()
				}
			}
			n := 0
			s.each(func(k kind, _ string, _ item) {
				if k == kindApp {
					n++
				}
			})
			set := s.Apps("X")
			switch {
			case n != held:
				t.Fatalf("step %d: table holds %d records, the set %d", i, n, held)
			case held == 0 && set != nil:
				t.Fatalf("step %d: empty set kept: %+v", i, set)
			case held > 0 && (set == nil || len(set.Apps) != held || set.Deactivated != deactivated):
				t.Fatalf("step %d: set %+v, want %d records, deactivated %v", i, set, held, deactivated)
			}
		}
	})
}
