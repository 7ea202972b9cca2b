package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/deact/deact/state"
)

// TestDeactctlSourcesAndLayers: `sources` prints what the leader reported; `status` shows the local layer and
// every source's mirrored record, and a token scoped to other orgs sees no mirrored record of them.
func TestDeactctlSourcesAndLayers(t *testing.T) {
	addr, store := serverStore(t)
	ctx := context.Background()
	must := func(r result) result {
		t.Helper()
		if r.code != 0 {
			t.Fatalf("exit %d: %s", r.code, r.stderr)
		}
		return r
	}
	if err := store.PutSourceStatus(ctx, state.SourceStatus{Source: "zitadel", Kind: "zitadel", Leader: "admin-2",
		UpdatedAt: time.Now().UTC(), LastReconcileAt: time.Now().UTC(), LastReconcileDuration: 1234 * time.Millisecond,
		LastReconcileChanged: 7, Records: 42, LastEventType: "org.deactivated", LastEventAt: time.Now().UTC(),
		EventsAccepted: 5, EventsIgnored: 2, EventsRejected: 1, LagMs: 350,
		LastError: "zitadel answered 401", LastErrorAt: time.Now().UTC()}); err != nil {
		t.Fatal(err)
	}
	r := must(deactctl(t, addr, rootToken, "sources"))
	for _, want := range []string{"zitadel", "admin-2", "1.234s", "org.deactivated", "5/2/1", "350ms", "401"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("sources misses %q:\n%s", want, r.stdout)
		}
	}
	r = must(deactctl(t, addr, rootToken, "-o", "json", "sources"))
	var sv struct {
		Sources []state.SourceStatus `json:"sources"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &sv); err != nil || len(sv.Sources) != 1 || sv.Sources[0].EventsAccepted != 5 {
		t.Fatalf("json sources %q: %v", r.stdout, err)
	}

	// Org 1: deactivated for login locally; token-disabled upstream. App p/a: removed upstream, nothing local.
	must(deactctl(t, addr, rootToken, "deactivate", "org", "1", "--ops", "login", "--reason", "unpaid"))
	if _, err := store.ApplyMirror(ctx, []state.MirrorRecord{
		{Source: "zitadel", Kind: state.MirrorOrg, ID: "1", Disabled: state.OpToken, Sequence: 12, Domains: []string{"one.example"}},
		{Source: "zitadel", Kind: state.MirrorApp, ID: "a", ProjectID: "p", OrgID: "1", Removed: true, Sequence: 30, ClientIDs: []string{"a@p"}},
		{Source: "zitadel", Kind: state.MirrorApp, ID: "b", ProjectID: "p", OrgID: "2", Sequence: 31},
	}, state.Change{Actor: "test"}); err != nil {
		t.Fatal(err)
	}
	r = must(deactctl(t, addr, rootToken, "status", "org", "1"))
	for _, want := range []string{"local", "unpaid", "source zitadel", "token", "one.example", "12"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("org status misses %q:\n%s", want, r.stdout)
		}
	}
	r = must(deactctl(t, addr, rootToken, "status", "app", "p", "a"))
	if !strings.Contains(r.stdout, "(none)") || !strings.Contains(r.stdout, "removed") || !strings.Contains(r.stdout, "a@p") {
		t.Errorf("app status:\n%s", r.stdout)
	}
	r = must(deactctl(t, addr, rootToken, "-o", "json", "status", "app", "p", "a"))
	var lv struct {
		Local    *state.Versioned[state.App]           `json:"local"`
		Mirrored []state.Versioned[state.MirrorRecord] `json:"mirrored"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &lv); err != nil || lv.Local != nil || len(lv.Mirrored) != 1 || !lv.Mirrored[0].Record.Removed {
		t.Fatalf("json app status %q: %v", r.stdout, err)
	}
	if r := deactctl(t, addr, rootToken, "status", "app", "p", "nothing"); r.code != 1 || !strings.Contains(r.stderr, "no layer") {
		t.Errorf("unknown app: %d %q", r.code, r.stderr)
	}

	// A token for org 1 only: sees app a (org 1), not app b (org 2), and no org 2 records.
	r = must(deactctl(t, addr, rootToken, "token", "create", "--org", "1", "--scope", "1", "--role", "read-only"))
	var secret string
	for _, line := range strings.Split(r.stdout, "\n") {
		if s, ok := strings.CutPrefix(line, "token: "); ok {
			secret = s
		}
	}
	if r := deactctl(t, addr, secret, "status", "app", "p", "b"); r.code != 1 {
		t.Errorf("out-of-scope mirrored app shown: %q", r.stdout)
	}
	if r := deactctl(t, addr, secret, "status", "org", "2"); r.code != 1 || !strings.Contains(r.stderr, "403") {
		t.Errorf("out-of-scope org: %d %q", r.code, r.stderr)
	}
	must(deactctl(t, addr, secret, "status", "app", "p", "a"))
	must(deactctl(t, addr, secret, "sources"))
}
