package state

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"
)

// fastShapes are the structs decode and decodeMirror read, each with the fields decodeFast is given for it.
func fastShapes() []struct {
	name   string
	target func() (any, []fastField)
} {
	return []struct {
		name   string
		target func() (any, []fastField)
	}{
		{"org", func() (any, []fastField) {
			o := &orgFlags{}
			return o, []fastField{{name: "state", str: &o.State}, {name: "disableLogin", flag: &o.DisableLogin},
				{name: "disableToken", flag: &o.DisableToken}, {name: "disableBackup", flag: &o.DisableBackup},
				{name: "disableRestore", flag: &o.DisableRestore}}
		}},
		{"project", func() (any, []fastField) {
			p := &projectFlags{}
			return p, []fastField{{name: "orgId", str: &p.OrgID}, {name: "state", str: &p.State}}
		}},
		{"client", func() (any, []fastField) {
			c := &Client{}
			return c, []fastField{{name: "clientId", str: &c.ClientID}, {name: "appId", str: &c.AppID},
				{name: "projectId", str: &c.ProjectID}, {name: "orgId", str: &c.OrgID}}
		}},
		{"domain", func() (any, []fastField) {
			d := &Domain{}
			return d, []fastField{{name: "domain", str: &d.Domain}, {name: "orgId", str: &d.OrgID}}
		}},
		{"account", func() (any, []fastField) {
			a := &Account{}
			return a, []fastField{{name: "id", str: &a.ID}, {name: "orgId", str: &a.OrgID}}
		}},
		{"mirror", func() (any, []fastField) {
			j := &mirrorJSON{}
			return j, []fastField{{name: "orgId", str: &j.OrgID}, {name: "disabled", str: &j.Disabled},
				{name: "deactivated", flag: &j.Deactivated}, {name: "removed", flag: &j.Removed},
				{name: "clientIds", list: &j.ClientIDs}, {name: "domains", list: &j.Domains}}
		}},
	}
}

// fastCases are records as deact writes them (which must take the fast path) and spellings it must hand to
// encoding/json or decode exactly as encoding/json does.
var fastCases = []struct {
	name  string
	value string
	fast  bool // must be read without encoding/json, for every shape
}{
	{"empty object", `{}`, true},
	{"white space", " {\n\t\"state\" : \"active\" ,\r\"orgId\":\"o1\" } \n", true},
	{"duplicate member: last wins", `{"state":"active","state":"deactivated"}`, true},
	{"member in another case", `{"STATE":"deactivated"}`, false},
	{"member in another case after the field", `{"state":"active","State":"deactivated"}`, false},
	{"escape in a kept string", `{"state":"deactiv\u0061ted"}`, false},
	{"escape in an ignored string", `{"reason":"said \"bye\""}`, false},
	{"non-ASCII in an ignored string", `{"reason":"café"}`, true},
	{"non-ASCII in a kept string", `{"orgId":"café"}`, false},
	{"invalid UTF-8 in a kept string", "{\"orgId\":\"o\xff\"}", false},
	{"control character", "{\"orgId\":\"o\x01\"}", false},
	{"null", `{"state":null}`, false},
	{"number", `{"n":1}`, false},
	{"wrong type", `{"state":true}`, false},
	{"wrong type, bool field", `{"disableLogin":"true","deactivated":"true","removed":"true"}`, false},
	{"nested ignored object", `{"disabledBy":{"zitadel":"login,token"}}`, true},
	{"deeper nesting", `{"disabledBy":{"zitadel":{"a":"b"}}}`, false},
	{"list", `{"clientIds":["c1@p","c2@p"],"domains":[]}`, true},
	{"list with a null", `{"clientIds":[null]}`, false},
	{"trailing data", `{"state":"active"} x`, false},
	{"two objects", `{}{}`, false},
	{"unterminated", `{"state":"active"`, false},
	{"trailing comma", `{"state":"active",}`, false},
	{"not an object", `"active"`, false},
	{"empty", ``, false},
	{"true literal prefix", `{"disableLogin":truex}`, false},
}

// TestDecodeFastMatchesEncodingJSON: whatever decodeFast reads, it reads as encoding/json does; and the
// records deact itself writes take the fast path.
func TestDecodeFastMatchesEncodingJSON(t *testing.T) {
	at := time.Date(2026, 12, 2, 3, 4, 5, 6, time.UTC)
	meta := Meta{Reason: "offboarded", ChangedBy: "admin@example.com", ChangedAt: at}
	written := map[string]any{
		"org":     Org{ID: "1", Name: "Acme", Disabled: OpLogin | OpToken, DisabledBy: map[Source]Ops{SourceZitadel: OpLogin | OpToken}, Domains: []string{"acme.example"}, Meta: meta},
		"project": Project{ID: "2", OrgID: "1", State: Deactivated, Meta: meta},
		"app":     App{ID: "3", ProjectID: "2", OrgID: "1", ClientIDs: []string{"3@p"}, State: Active, Meta: meta},
		"client":  Client{ClientID: "3@p", AppID: "3", ProjectID: "2", OrgID: "1"},
		"domain":  Domain{Domain: "acme.example", OrgID: "1"},
		"account": Account{ID: "4", OrgID: "1"},
	}
	for name, rec := range written {
		b, err := json.Marshal(rec)
		if err != nil {
			t.Fatal(err)
		}
		t.Run("written "+name, func(t *testing.T) { checkFast(t, b, true) })
	}
	for _, tc := range fastCases {
		t.Run(tc.name, func(t *testing.T) { checkFast(t, []byte(tc.value), tc.fast) })
	}
}

// checkFast decodes b with decodeFast and encoding/json into every shape and compares; with fast, decodeFast
// must read it for every shape.
func checkFast(t *testing.T, b []byte, fast bool) {
	t.Helper()
	for _, sh := range fastShapes() {
		got, fields := sh.target()
		ok := decodeFast(b, fields)
		if fast && !ok {
			t.Errorf("%s: %q: not read by decodeFast", sh.name, b)
		}
		if !ok {
			continue
		}
		want, _ := sh.target()
		if err := json.Unmarshal(b, want); err != nil {
			t.Errorf("%s: %q: decodeFast read %+v, encoding/json refused: %v", sh.name, b, got, err)
			continue
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s: %q: decodeFast read %+v, encoding/json %+v", sh.name, b, got, want)
		}
	}
}

// FuzzDecodeFast: any input decodeFast accepts, for any shape, decodes exactly as encoding/json decodes it.
func FuzzDecodeFast(f *testing.F) {
	for _, tc := range fastCases {
		f.Add([]byte(tc.value))
	}
	f.Add([]byte(`{"id":"1","name":"Acme","state":"deactivated","disableLogin":true,"disableToken":true,"disableBackup":false,"disableRestore":false,"disabledBy":{"zitadel":"login,token"},"domains":["acme.example"],"reason":"x","changedAt":"2026-12-02T03:04:05Z"}`))
	f.Add([]byte(`{"orgId":"1","disabled":"login","deactivated":false,"removed":true,"clientIds":["a","a"],"domains":["X.example"]}`))
	f.Fuzz(func(t *testing.T, b []byte) { checkFast(t, b, false) })
}

// A raw member is read as a str member is, and left as the bytes that hold it.
func TestDecodeFastRaw(t *testing.T) {
	for _, in := range []string{`{"a":"x","b":"y"}`, `{"a":""}`, `{"a":"x\"y"}`, `{"a":5}`, `{"A":"x"}`, `{"b":"é","a":"x"}`} {
		var s string
		var raw []byte
		okStr := decodeFast([]byte(in), []fastField{{name: "a", str: &s}})
		okRaw := decodeFast([]byte(in), []fastField{{name: "a", raw: &raw}})
		if okStr != okRaw || okStr && s != string(raw) {
			t.Errorf("%s: str member read (%v, %q), raw member (%v, %q)", in, okStr, s, okRaw, raw)
		}
	}
}
