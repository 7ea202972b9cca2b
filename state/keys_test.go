package state

import (
	"strings"
	"testing"
)

var idCases = []struct {
	name string
	id   string
	ok   bool
}{
	{"zitadel snowflake", "69629023906488334", true},
	{"client id", "69629026806489455@deact", true},
	{"domain", "acme.example.com", true},
	{"commvault id", "1", true},
	{"empty", "", false},
	{"slash", "a/b", false},
	{"dot dot", "..", false},
	{"dot", ".", false},
	{"traversal", "../nodes/x", false},
	{"nul", "a\x00b", false},
	{"space", "a b", false},
	{"newline", "a\nb", false},
	{"unicode", "ä", false},
	{"long", strings.Repeat("1", 10_000), false},
	{"max length", strings.Repeat("1", MaxIDLen), true},
}

func TestValidateID(t *testing.T) {
	for _, tc := range idCases {
		t.Run(tc.name, func(t *testing.T) {
			err := ValidateID("org", tc.id)
			if (err == nil) != tc.ok {
				t.Fatalf("ValidateID(%q) = %v, want ok=%v", tc.id, err, tc.ok)
			}
		})
	}
}

// FuzzValidateID: an accepted ID always yields keys that stay one segment under their table's prefix.
func FuzzValidateID(f *testing.F) {
	for _, tc := range idCases {
		f.Add(tc.id)
	}
	f.Fuzz(func(t *testing.T, id string) {
		if ValidateID("org", id) != nil {
			return
		}
		for _, key := range []string{OrgKey(id), ProjectKey(id), ClientKey(id), DomainKey(id), AccountKey(id)} {
			k, got := parseKey(key)
			if k == kindUnknown || got != id {
				t.Fatalf("key %q parses to (%v, %q)", key, k, got)
			}
		}
		if k, got := parseKey(AppKey(id, id)); k != kindApp || got != id+"/"+id {
			t.Fatalf("app key parses to (%v, %q)", k, got)
		}
		if strings.Contains(NodeKey(id)[len(NodesPrefix):], "/") {
			t.Fatalf("node key %q leaves its prefix", NodeKey(id))
		}
	})
}

func TestParseOps(t *testing.T) {
	for in, want := range map[string]Ops{"login,token": OpLogin | OpToken, "all": OpsAll, "Backup": OpBackup, "": 0} {
		got, err := ParseOps(in)
		if err != nil || got != want {
			t.Fatalf("ParseOps(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	if _, err := ParseOps("login,fly"); err == nil {
		t.Fatal("ParseOps accepted an unknown op")
	}
	if s := (OpLogin | OpRestore).String(); s != "login,restore" {
		t.Fatalf("String = %q", s)
	}
}

// FuzzParseKey: parseKey reads a key's bytes as it reads the key (a list parses the received frame), and a key
// it understands is the one keyOf builds back.
func FuzzParseKey(f *testing.F) {
	for _, key := range []string{OrgKey("1"), AppKey("p", "a"), ClientKey("c@p"), DomainKey("d.example"), AccountKey("u"),
		ProjectKey("p"), StatePrefix + "apps/p/a/b", StatePrefix + "apps//a", StatePrefix + "orgs/", StatePrefix + "mirror/x/y",
		StatePrefix, "/deact/v1/stat", NodeKey("n")} {
		f.Add(key)
	}
	f.Fuzz(func(t *testing.T, key string) {
		k, id := parseKey(key)
		kb, idb := parseKey([]byte(key))
		if k != kb || id != string(idb) {
			t.Fatalf("parseKey(%q) = (%v, %q) as a string, (%v, %q) as bytes", key, k, id, kb, idb)
		}
		if k != kindUnknown && keyOf(k, id) != key {
			t.Fatalf("parseKey(%q) = (%v, %q), whose key is %q", key, k, id, keyOf(k, id))
		}
	})
}

// The list parses every key it receives: as bytes, it allocates nothing.
func TestParseKeyBytesAllocs(t *testing.T) {
	key := []byte(AppKey("p1", "a1"))
	if n := testing.AllocsPerRun(100, func() {
		if k, _ := parseKey(key); k != kindApp {
			t.Fatal("not an app key")
		}
	}); n != 0 {
		t.Fatalf("parseKey([]byte) allocates %v times", n)
	}
}
