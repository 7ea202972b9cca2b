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
			if a := b.s.App(id); a == nil || !a.IsDeactivated() {
				t.Fatalf("unreadable app held as %+v", a)
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
			if k, _ := parseKey(key); k == kindUnknown {
				t.Fatalf("line %q writes %q, outside the state keys", line, key)
			}
		}
	})
}
