package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/deact/deact/admin/admintest"
	"github.com/deact/deact/state"
	"github.com/deact/deact/state/etcdtest"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, etcdtest.LeakOptions()...)
}

const rootToken = "deactctl-test-root-token-0123"

// server starts etcd, one gateway node and the admin API on loopback, and returns the API's address.
func server(t *testing.T) string {
	t.Helper()
	addr, _ := serverStore(t)
	return addr
}

// serverStore is server that also returns a store writing to its etcd.
func serverStore(t *testing.T) (string, *state.Store) {
	return admintest.Start(t, rootToken, slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError})))
}

type result struct {
	code           int
	stdout, stderr string
}

func deactctl(t *testing.T, addr, token string, args ...string) result {
	t.Helper()
	var out, errb bytes.Buffer
	env := map[string]string{"DEACT_ADMIN_ADDR": addr, "DEACT_ADMIN_TOKEN": token}
	code := run(context.Background(), args, strings.NewReader(""), &out, &errb, func(k string) string { return env[k] })
	return result{code, out.String(), errb.String()}
}

func TestDeactctl(t *testing.T) {
	addr := server(t)
	must := func(r result) result {
		t.Helper()
		if r.code != 0 {
			t.Fatalf("exit %d: %s", r.code, r.stderr)
		}
		return r
	}
	r := must(deactctl(t, addr, rootToken, "token", "create", "--org", "1", "--scope", "1,2", "--role", "admin", "--name", "ops"))
	var secret string
	for _, line := range strings.Split(r.stdout, "\n") {
		if s, ok := strings.CutPrefix(line, "token: "); ok {
			secret = s
		}
	}
	if secret == "" || !strings.Contains(r.stdout, "scope: 1,2") {
		t.Fatalf("token create printed %q", r.stdout)
	}

	r = must(deactctl(t, addr, secret, "deactivate", "org", "1", "--ops", "login,token", "--reason", "unpaid"))
	if !strings.Contains(r.stdout, "CONFIRMED") || !strings.Contains(r.stdout, "1/1") {
		t.Errorf("deactivate printed %q", r.stdout)
	}
	r = must(deactctl(t, addr, secret, "status", "org", "1"))
	if !strings.Contains(r.stdout, "deactivated") || !strings.Contains(r.stdout, "login,token") || !strings.Contains(r.stdout, "unpaid") {
		t.Errorf("status printed %q", r.stdout)
	}
	r = must(deactctl(t, addr, secret, "-o", "json", "status", "org", "1"))
	var v struct{ Local state.Versioned[state.Org] }
	if err := json.Unmarshal([]byte(r.stdout), &v); err != nil || v.Local.Record.Disabled != state.OpLogin|state.OpToken {
		t.Errorf("json status %q: %v", r.stdout, err)
	}
	r = deactctl(t, addr, secret, "deactivate", "org", "1")
	if r.code != 1 || !strings.Contains(r.stderr, "already deactivated") {
		t.Errorf("second deactivate: %d %q", r.code, r.stderr)
	}
	r = deactctl(t, addr, secret, "deactivate", "org", "3")
	if r.code != 1 || !strings.Contains(r.stderr, "403") {
		t.Errorf("out of scope: %d %q", r.code, r.stderr)
	}
	must(deactctl(t, addr, secret, "reactivate", "org", "1"))
	must(deactctl(t, addr, secret, "deactivate", "app", "p1", "a1", "--org", "2"))
	r = must(deactctl(t, addr, secret, "status", "app", "p1", "a1"))
	if !strings.Contains(r.stdout, "deactivated") {
		t.Errorf("app status printed %q", r.stdout)
	}
	must(deactctl(t, addr, secret, "reactivate", "app", "p1", "a1"))
	// The node registry is for all-orgs tokens only.
	if r = deactctl(t, addr, secret, "nodes"); r.code != 1 || !strings.Contains(r.stderr, "403") {
		t.Errorf("nodes with an org-scoped token: %d %q", r.code, r.stderr)
	}
	r = must(deactctl(t, addr, rootToken, "nodes"))
	if !strings.Contains(r.stdout, "node-0") {
		t.Errorf("nodes printed %q", r.stdout)
	}

	file := filepath.Join(t.TempDir(), "records.ndjson")
	if err := os.WriteFile(file, []byte(`{"org":{"id":"9","name":"nine"}}`+"\n"+`{"org":{"id":"8"}}`+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r = must(deactctl(t, addr, rootToken, "import", file))
	if !strings.Contains(r.stdout, "imported 2 records") {
		t.Errorf("import printed %q", r.stdout)
	}
	// An import that stops part way says what it committed; --skip resumes it.
	var lines []string
	for i := range 70 {
		lines = append(lines, fmt.Sprintf(`{"org":{"id":"imp%d","domains":["imp%d.example"]}}`, i, i))
	}
	fixed := strings.Join(lines, "\n")
	lines[65] = `{"org":{"id":"imp0"}}`
	if err := os.WriteFile(file, []byte(strings.Join(lines, "\n")), 0o600); err != nil {
		t.Fatal(err)
	}
	if r := deactctl(t, addr, rootToken, "import", file); r.code != 1 || !strings.Contains(r.stderr, `line 66: org "imp0" is already given on line 1; committed: lines 1-60 (60 records in 1 batches); resume with skip=60`) {
		t.Errorf("failed import: %d %q", r.code, r.stderr)
	}
	if err := os.WriteFile(file, []byte(fixed), 0o600); err != nil {
		t.Fatal(err)
	}
	r = must(deactctl(t, addr, rootToken, "import", file, "--skip", "60"))
	if !strings.Contains(r.stdout, "imported 10 records (lines 1-70 committed, 60 skipped)") {
		t.Errorf("resumed import printed %q", r.stdout)
	}
	r = must(deactctl(t, addr, rootToken, "list", "orgs", "--limit", "1"))
	for _, id := range []string{"nine", "\n8 ", "\n1 "} {
		if !strings.Contains(r.stdout, id) {
			t.Errorf("list orgs misses %q: %q", id, r.stdout)
		}
	}
	// -o json follows every page too, and prints them as one document.
	r = must(deactctl(t, addr, rootToken, "-o", "json", "list", "orgs", "--limit", "1"))
	var listed struct {
		Items []struct {
			Record state.Org `json:"record"`
		} `json:"items"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &listed); err != nil {
		t.Fatalf("-o json list: %v: %q", err, r.stdout)
	}
	if n, want := len(listed.Items), strings.Count(must(deactctl(t, addr, rootToken, "list", "orgs")).stdout, "\n")-1; n != want || n < 3 {
		t.Errorf("-o json list orgs --limit 1 printed %d orgs, the table %d: %q", n, want, r.stdout)
	}
	r = must(deactctl(t, addr, rootToken, "audit", "--limit", "2"))
	if !strings.Contains(r.stdout, "import") {
		t.Errorf("audit printed %q", r.stdout)
	}

	if r := deactctl(t, addr, "", "nodes"); r.code != 1 || !strings.Contains(r.stderr, "no token") {
		t.Errorf("no token: %d %q", r.code, r.stderr)
	}
	if r := deactctl(t, addr, rootToken, "explode", "everything"); r.code != 2 {
		t.Errorf("unknown command: %d %q", r.code, r.stderr)
	}
}

// TestConfigCommands: envoy-config and nginx-config print configurations without a server, and say what is
// missing when an argument is.
func TestConfigCommands(t *testing.T) {
	env := func(string) string { return "" }
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"envoy-config", "--preset", "zitadel", "--upstream", "zitadel:8080"}, 0, "envoy.filters.http.ext_authz"},
		{[]string{"envoy-config", "--preset", "commvault", "--upstream", "cv:80", "--deact", "10.0.0.5:9191"}, 0, "port_value: 9191"},
		{[]string{"envoy-config", "--preset", "nope", "--upstream", "a:1"}, 1, ""},
		{[]string{"envoy-config"}, 2, ""},
		{[]string{"nginx-config", "--upstream", "zitadel:8080", "--tenants", "t1.example=7"}, 0, "t1.example 7;"},
		{[]string{"nginx-config", "--upstream", "zitadel:8080", "--tenants", "broken"}, 2, ""},
	} {
		var out, errOut strings.Builder
		code := run(context.Background(), tc.args, strings.NewReader(""), &out, &errOut, env)
		if code != tc.code || !strings.Contains(out.String(), tc.want) {
			t.Errorf("%v: exit %d (want %d), output lacks %q\n%s", tc.args, code, tc.code, tc.want, errOut.String())
		}
	}
}
