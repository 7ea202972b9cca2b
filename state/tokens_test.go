package state_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/deact/deact/state"
	"github.com/deact/deact/state/etcdtest"
	clientv3 "go.etcd.io/etcd/client/v3"
)

func TestTokens(t *testing.T) {
	t.Parallel()
	srv := etcdtest.Start(t)
	cli := etcdtest.Client(t, srv.Endpoints())
	store := state.NewStore(cli)
	ctx := context.Background()
	const secret = "a-secret-that-must-never-be-stored"
	tok := state.Token{Hash: state.HashToken(secret), Name: "ops", HomeOrg: "1", Orgs: []string{"1", "2"}, Role: state.RoleAdmin}

	res, err := store.CreateToken(ctx, tok, state.Change{Actor: "test"})
	if err != nil || res.Revision == 0 || res.OrgID != "1" {
		t.Fatalf("create: %+v %v", res, err)
	}
	if _, err := store.CreateToken(ctx, tok, state.Change{Actor: "test"}); !errors.Is(err, state.ErrConflict) {
		t.Fatalf("second create: %v", err)
	}
	raw, err := cli.Get(ctx, state.TokensPrefix, clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	for _, kv := range raw.Kvs {
		if strings.Contains(string(kv.Key)+string(kv.Value), secret) {
			t.Fatalf("the secret is stored: %s", kv.Key)
		}
	}
	audit, err := store.Audit(ctx, "", 10)
	if err != nil || len(audit) != 1 || audit[0].Action != "create token" || strings.Contains(string(audit[0].After), secret) {
		t.Fatalf("audit = %+v %v", audit, err)
	}
	got, err := store.GetToken(ctx, tok.Hash)
	if err != nil || got.Record.Name != "ops" || got.Record.Created.IsZero() || got.Record.CreatedBy != "test" {
		t.Fatalf("get = %+v %v", got, err)
	}
	pg, err := store.ListTokens(ctx, "", 10)
	if err != nil || len(pg.Items) != 1 {
		t.Fatalf("list = %+v %v", pg, err)
	}
	if _, err := store.DeleteToken(ctx, tok.Hash, state.Change{Actor: "test"}); err != nil {
		t.Fatal(err)
	}
	if _, err := store.GetToken(ctx, tok.Hash); !errors.Is(err, state.ErrNotFound) {
		t.Fatalf("get after delete: %v", err)
	}
	if _, err := store.DeleteToken(ctx, tok.Hash, state.Change{}); !errors.Is(err, state.ErrNotFound) {
		t.Fatalf("second delete: %v", err)
	}
}

func TestTokenValidateAndScope(t *testing.T) {
	h := state.HashToken("x")
	for _, c := range []struct {
		name string
		tok  state.Token
		ok   bool
	}{
		{"all orgs admin", state.Token{Hash: h, AllOrgs: true, Role: state.RoleAdmin}, true},
		{"scoped read-only", state.Token{Hash: h, Orgs: []string{"1"}, HomeOrg: "1", Role: state.RoleReadOnly}, true},
		{"no scope", state.Token{Hash: h, Role: state.RoleAdmin}, false},
		{"bad role", state.Token{Hash: h, AllOrgs: true, Role: "root"}, false},
		{"bad hash", state.Token{Hash: "abc", AllOrgs: true, Role: state.RoleAdmin}, false},
		{"plaintext as hash", state.Token{Hash: strings.Repeat("z", 64), AllOrgs: true, Role: state.RoleAdmin}, false},
		{"home outside scope", state.Token{Hash: h, Orgs: []string{"1"}, HomeOrg: "2", Role: state.RoleAdmin}, false},
		{"bad org id", state.Token{Hash: h, Orgs: []string{"../x"}, Role: state.RoleAdmin}, false},
	} {
		if err := c.tok.Validate(); (err == nil) != c.ok {
			t.Errorf("%s: Validate = %v", c.name, err)
		}
	}
	all := state.Token{AllOrgs: true}
	ab := state.Token{Orgs: []string{"a", "b"}}
	a := state.Token{Orgs: []string{"a"}, HomeOrg: "a"}
	c := state.Token{Orgs: []string{"c"}}
	switch {
	case !all.Covers(&ab), !ab.Covers(&a), a.Covers(&ab), ab.Covers(&all), ab.Covers(&c):
		t.Error("Covers is wrong")
	case !a.Allows("a"), a.Allows("b"), !all.Allows("anything"):
		t.Error("Allows is wrong")
	}
}

// TestNewToken: a token secret is "deact_" and 256 random bits in URL-safe base64 (43 characters): printable,
// without spaces, fit for a header and a command's environment, and never the same twice.
func TestNewToken(t *testing.T) {
	t.Parallel()
	seen := map[string]bool{}
	for range 100 {
		tok, err := state.NewToken()
		if err != nil {
			t.Fatal(err)
		}
		rest, ok := strings.CutPrefix(tok, "deact_")
		if !ok || len(rest) != 43 || strings.ContainsFunc(rest, func(r rune) bool {
			return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_')
		}) {
			t.Fatalf("NewToken = %q", tok)
		}
		if seen[tok] {
			t.Fatalf("NewToken gave %q twice", tok)
		}
		seen[tok] = true
	}
}
