package state_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/deact/deact/internal/wait"
	"github.com/deact/deact/state"
	"github.com/deact/deact/state/etcdtest"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// scoped is a change made with a token for the given orgs only.
func scoped(orgs ...string) state.Change {
	return state.Change{Actor: "token of " + strings.Join(orgs, ","), Scoped: true, Orgs: orgs}
}

// TestStoreAppIDsAreUnique: IDs are unique where ZITADEL makes them unique. One org cannot create an app under
// another project with an app ID another org's record has, claim a project ID another org's apps name, add an
// app to another org's project, or take a client ID another org's app holds; each refusal is ErrConflict and
// writes nothing.
func TestStoreAppIDsAreUnique(t *testing.T) {
	t.Parallel()
	s, cli := newStoreAndClient(t)
	ctx := context.Background()
	b, a := scoped("B"), scoped("A")
	if _, err := s.PutApp(ctx, state.App{ID: "X", ProjectID: "projB", OrgID: "B", ClientIDs: []string{"X@b"}}, b); err != nil {
		t.Fatal(err)
	}
	if _, err := s.SetAppState(ctx, "projB", "X", "B", true, b); err != nil {
		t.Fatal(err)
	}
	if _, err := s.SetProjectState(ctx, "projB2", "B", true, b); err != nil {
		t.Fatal(err)
	}
	rev := func(t *testing.T) int64 {
		resp, err := cli.Get(ctx, state.Prefix)
		if err != nil {
			t.Fatal(err)
		}
		return resp.Header.Revision
	}
	for _, c := range []struct {
		name  string
		write func() (state.Result, error)
	}{
		{"register B's app id under A's project", func() (state.Result, error) {
			return s.PutApp(ctx, state.App{ID: "X", ProjectID: "projA", OrgID: "A"}, a)
		}},
		{"deactivate B's app id under A's project", func() (state.Result, error) {
			return s.SetAppState(ctx, "projA", "X", "A", true, a)
		}},
		{"deactivate a project id B's apps name", func() (state.Result, error) {
			return s.SetProjectState(ctx, "projB", "A", true, a)
		}},
		{"register an app in a project B's apps name", func() (state.Result, error) {
			return s.PutApp(ctx, state.App{ID: "Y", ProjectID: "projB", OrgID: "A"}, a)
		}},
		{"deactivate an app in a project B's apps name", func() (state.Result, error) {
			return s.SetAppState(ctx, "projB", "Y", "A", true, a)
		}},
		{"register an app in B's project", func() (state.Result, error) {
			return s.PutApp(ctx, state.App{ID: "Z", ProjectID: "projB2", OrgID: "A"}, a)
		}},
		{"take B's client id", func() (state.Result, error) {
			return s.PutApp(ctx, state.App{ID: "W", ProjectID: "projA", OrgID: "A", ClientIDs: []string{"X@b"}}, a)
		}},
		{"even a global admin cannot put the app id under a second project", func() (state.Result, error) {
			return s.PutApp(ctx, state.App{ID: "X", ProjectID: "projC", OrgID: "C"}, who)
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			before := rev(t)
			if _, err := c.write(); !errors.Is(err, state.ErrConflict) {
				t.Errorf("%v, want a conflict", err)
			}
			if after := rev(t); after != before {
				t.Errorf("revision moved %d -> %d", before, after)
			}
		})
	}
	// A's own records in A's own projects are fine, and B still owns its records.
	if _, err := s.PutApp(ctx, state.App{ID: "W", ProjectID: "projA", OrgID: "A", ClientIDs: []string{"W@a"}}, a); err != nil {
		t.Fatal(err)
	}
	if _, err := s.SetProjectState(ctx, "projA", "A", true, a); err != nil {
		t.Fatal(err)
	}
	if _, err := s.SetAppState(ctx, "projB", "X", "B", false, b); err != nil {
		t.Fatalf("B reactivating its app: %v", err)
	}
	// A scoped token cannot touch B's records at all: they are not found.
	if _, err := s.SetAppState(ctx, "projB", "X", "", true, a); !errors.Is(err, state.ErrNotFound) {
		t.Errorf("A deactivating B's app: %v", err)
	}
	if _, err := s.PutAccount(ctx, state.Account{ID: "ub", OrgID: "B"}, b); err != nil {
		t.Fatal(err)
	}
	if _, err := s.PutAccount(ctx, state.Account{ID: "ub", OrgID: "A"}, a); !errors.Is(err, state.ErrConflict) || !errors.Is(err, state.ErrOtherOrg) {
		t.Errorf("A taking B's account: %v", err)
	}
}

// TestSnapshotDenyWins: where etcd holds several app records with one app ID (written before the store
// refused it, or by an import), a replica never lets one shadow another: the app ID is deactivated while any of
// them is, and each record keeps its own state by (project, app).
func TestSnapshotDenyWins(t *testing.T) {
	t.Parallel()
	s, cli := newStoreAndClient(t)
	ctx := context.Background()
	// Two records with one app ID, as etcd may hold them from before the store refused it; an import refuses it.
	if _, err := s.Import(ctx, strings.NewReader(`{"app":{"id":"X","projectId":"projB","orgId":"B"}}
{"app":{"id":"X","projectId":"projA","orgId":"A"}}`), who); !errors.Is(err, state.ErrConflict) {
		t.Fatalf("import of one app id under two projects: %v", err)
	}
	var res *clientv3.PutResponse
	for key, value := range map[string]string{
		state.AppKey("projB", "X"): `{"id":"X","projectId":"projB","orgId":"B","clientIds":["X@b"],"state":"deactivated"}`,
		state.AppKey("projA", "X"): `{"id":"X","projectId":"projA","orgId":"A","clientIds":["X@a"],"state":"active"}`,
	} {
		var err error
		if res, err = cli.Put(ctx, key, value); err != nil {
			t.Fatal(err)
		}
	}
	r := startReplica(t, cli, state.ReplicaConfig{})
	wait.Eventually(t, "records applied", func() bool { return r.AppliedRevision() >= res.Header.Revision })
	snap := r.Snapshot()
	if set := snap.Apps("X"); set == nil || !set.Deactivated || len(set.Apps) != 2 {
		t.Fatalf("apps X = %+v", set)
	}
	if a := snap.App("projB", "X"); a == nil || !a.IsDeactivated() || a.OrgID != "B" {
		t.Errorf("projB/X = %+v", a)
	}
	if a := snap.App("projA", "X"); a == nil || a.IsDeactivated() || a.OrgID != "A" {
		t.Errorf("projA/X = %+v", a)
	}
	// Toggling A's record does not lift B's deactivation.
	for _, deactivate := range []bool{true, false} {
		res, err := s.SetAppState(ctx, "projA", "X", "A", deactivate, who)
		if err != nil {
			t.Fatal(err)
		}
		wait.Eventually(t, "toggle applied", func() bool { return r.AppliedRevision() >= res.Revision })
		if set := r.Snapshot().Apps("X"); set == nil || !set.Deactivated {
			t.Fatalf("after A's toggle to %v: apps X = %+v", deactivate, set)
		}
	}
	// Reactivating B's record lifts it.
	back, err := s.SetAppState(ctx, "projB", "X", "B", false, who)
	if err != nil {
		t.Fatal(err)
	}
	wait.Eventually(t, "B's reactivation applied", func() bool { return r.AppliedRevision() >= back.Revision })
	if set := r.Snapshot().Apps("X"); set == nil || set.Deactivated {
		t.Fatalf("after B's reactivation: apps X = %+v", set)
	}
}

// TestStoreOwnerlessRecords: a project or app a global admin deactivated without naming an org can be changed
// only by a global change; a scoped one is refused (ErrForbidden), whether it names its own org or none, and
// never becomes the owner.
func TestStoreOwnerlessRecords(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := context.Background()
	a := scoped("A")
	if _, err := s.SetProjectState(ctx, "p0", "", true, who); err != nil {
		t.Fatal(err)
	}
	if _, err := s.SetAppState(ctx, "p1", "a0", "", true, who); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name  string
		write func() (state.Result, error)
	}{
		{"reactivate project naming A", func() (state.Result, error) { return s.SetProjectState(ctx, "p0", "A", false, a) }},
		{"reactivate project naming no org", func() (state.Result, error) { return s.SetProjectState(ctx, "p0", "", false, a) }},
		{"reactivate app naming A", func() (state.Result, error) { return s.SetAppState(ctx, "p1", "a0", "A", false, a) }},
		{"reactivate app naming no org", func() (state.Result, error) { return s.SetAppState(ctx, "p1", "a0", "", false, a) }},
		{"register the app for A", func() (state.Result, error) {
			return s.PutApp(ctx, state.App{ID: "a0", ProjectID: "p1", OrgID: "A"}, a)
		}},
		{"create a project naming no org", func() (state.Result, error) { return s.SetProjectState(ctx, "p9", "", true, a) }},
	} {
		if _, err := c.write(); !errors.Is(err, state.ErrForbidden) {
			t.Errorf("%s: %v, want forbidden", c.name, err)
		}
	}
	p, err := s.GetProject(ctx, "p0")
	if err != nil || p.Record.OrgID != "" || !p.Record.IsDeactivated() {
		t.Fatalf("project p0 = %+v %v", p, err)
	}
	app, err := s.GetApp(ctx, "p1", "a0")
	if err != nil || app.Record.OrgID != "" || !app.Record.IsDeactivated() {
		t.Fatalf("app p1/a0 = %+v %v", app, err)
	}
	// A global admin may reactivate, or give the record an owner.
	if _, err := s.SetProjectState(ctx, "p0", "", false, who); err != nil {
		t.Fatal(err)
	}
	if res, err := s.SetAppState(ctx, "p1", "a0", "A", false, who); err != nil || res.OrgID != "A" {
		t.Fatalf("global claim: %+v %v", res, err)
	}
	if _, err := s.SetAppState(ctx, "p1", "a0", "A", true, a); err != nil {
		t.Fatalf("A on its app: %v", err)
	}
}

// TestStoreDeactivationsAddUp: each API keeps its own set of disabled ops; a deactivate only adds to its own
// set, a reactivate only takes its own set away, and the audit says what changed.
func TestStoreDeactivationsAddUp(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := context.Background()
	zitadel := state.Change{Actor: "z", Via: state.SourceZitadel}
	commvault := state.Change{Actor: "c", Via: state.SourceCommvault}
	disabled := func(want state.Ops) {
		t.Helper()
		o, err := s.GetOrg(ctx, "1")
		if err != nil || o.Record.Disabled != want {
			t.Fatalf("org = %+v %v, want disabled %s", o.Record, err, want)
		}
	}
	if _, err := s.DeactivateOrg(ctx, "1", state.OpLogin|state.OpToken, false, zitadel); err != nil {
		t.Fatal(err)
	}
	// Commvault's backup-only deactivation adds backup; it does not give back login and token.
	if _, err := s.DeactivateOrg(ctx, "1", state.OpBackup, false, commvault); err != nil {
		t.Fatal(err)
	}
	disabled(state.OpLogin | state.OpToken | state.OpBackup)
	// ZITADEL's part is already deactivated.
	if _, err := s.DeactivateOrg(ctx, "1", state.OpLogin|state.OpToken, false, zitadel); !errors.Is(err, state.ErrAlreadyDeactivated) {
		t.Fatalf("zitadel again: %v", err)
	}
	// Commvault disabling login too is a change of its own set.
	if _, err := s.DeactivateOrg(ctx, "1", state.OpLogin|state.OpToken, false, commvault); err != nil {
		t.Fatal(err)
	}
	// Commvault's activate takes away what Commvault disabled: login stays, through ZITADEL.
	if _, err := s.ReactivateOrg(ctx, "1", commvault); err != nil {
		t.Fatal(err)
	}
	disabled(state.OpLogin | state.OpToken)
	if _, err := s.ReactivateOrg(ctx, "1", commvault); !errors.Is(err, state.ErrNotDeactivated) || !strings.Contains(err.Error(), "zitadel: login,token") {
		t.Fatalf("commvault again: %v", err)
	}
	audit, err := s.Audit(ctx, "", 1)
	if err != nil || len(audit) != 1 || audit[0].Detail != "commvault: login,token,backup -> none; disabled: login,token,backup -> login,token" {
		t.Fatalf("audit = %+v %v", audit, err)
	}
	if _, err := s.ReactivateOrg(ctx, "1", zitadel); err != nil {
		t.Fatal(err)
	}
	disabled(0)
	// The native API's reactivate enables the ops it names whoever disabled them.
	if _, err := s.DeactivateOrg(ctx, "1", state.OpLogin, false, zitadel); err != nil {
		t.Fatal(err)
	}
	if _, err := s.DeactivateOrg(ctx, "1", state.OpBackup|state.OpRestore, false, commvault); err != nil {
		t.Fatal(err)
	}
	if _, err := s.EnableOrgOps(ctx, "1", state.OpLogin|state.OpBackup, who); err != nil {
		t.Fatal(err)
	}
	disabled(state.OpRestore)
	if _, err := s.EnableOrgOps(ctx, "1", state.OpLogin, who); !errors.Is(err, state.ErrNotDeactivated) {
		t.Fatalf("enable what is enabled: %v", err)
	}
	// A record without sources (an import, or a record from before sources were kept): any API's reactivate
	// takes the unattributed ops away.
	res, err := s.Import(ctx, strings.NewReader(`{"org":{"id":"2","state":"deactivated","disableLogin":true,"disableBackup":true}}`), who)
	if err != nil || res.Records != 1 {
		t.Fatal(err)
	}
	if _, err := s.DeactivateOrg(ctx, "2", state.OpRestore, false, commvault); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ReactivateOrg(ctx, "2", zitadel); err != nil {
		t.Fatal(err)
	}
	if o, err := s.GetOrg(ctx, "2"); err != nil || o.Record.Disabled != state.OpRestore || o.Record.DisabledBy[state.SourceCommvault] != state.OpRestore {
		t.Fatalf("org 2 = %+v %v", o.Record, err)
	}
	// A ZITADEL deactivation that unattributed ops already cover is "already deactivated", as before.
	if _, err := s.Import(ctx, strings.NewReader(`{"org":{"id":"5","disableLogin":true,"disableToken":true}}`), who); err != nil {
		t.Fatal(err)
	}
	if _, err := s.DeactivateOrg(ctx, "5", state.OpLogin|state.OpToken, false, zitadel); !errors.Is(err, state.ErrAlreadyDeactivated) {
		t.Fatalf("zitadel on an older deactivation: %v", err)
	}
}

// TestImportRejectsUnknownValues: an import line whose state is not exactly one deact knows, whose fields deact
// does not know or whose values have the wrong type is refused with its line number, for every kind of record,
// and a deactivated org is never overwritten by it.
func TestImportRejectsUnknownValues(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := context.Background()
	if _, err := s.DeactivateOrg(ctx, "1", state.OpsAll, false, who); err != nil {
		t.Fatal(err)
	}
	for _, line := range []string{
		`{"org":{"id":"1","state":"Deactivated"}}`,
		`{"org":{"id":"1","state":"DEACTIVATED"}}`,
		`{"org":{"id":"1","state":"disabled"}}`,
		`{"org":{"id":"1","state":" deactivated"}}`,
		`{"org":{"id":"1","state":"Active"}}`,
		`{"org":{"id":"1","state":true}}`,
		`{"org":{"id":"1","state":"active","disableLogin":true}}`,
		`{"org":{"id":"1","disableLogin":"yes"}}`,
		`{"org":{"id":"1","disabledLogin":true}}`,
		`{"org":{"id":"1","stat":"deactivated"}}`,
		`{"org":{"id":"1","disabledBy":{"ldap":"login"}}}`,
		`{"org":{"id":"1","disabledBy":{"zitadel":"everything"}}}`,
		`{"org":{"id":"1"},"project":{"id":"p","orgId":"1"}}`,
		`{"org":{"id":"1"}} {"org":{"id":"2"}}`,
		`{"orgs":{"id":"1"}}`,
		`{"project":{"id":"p","orgId":"1","state":"Deactivated"}}`,
		`{"project":{"id":"p","orgId":"1","state":"inactive"}}`,
		`{"project":{"id":"p","orgId":"1","deactivated":true}}`,
		`{"app":{"id":"a","projectId":"p","orgId":"1","state":"Deactivated"}}`,
		`{"app":{"id":"a","projectId":"p","orgId":"1","clientIds":"c@p"}}`,
		`{"app":{"id":"a","projectId":"p","orgId":"1","client_ids":["c@p"]}}`,
		`{"account":{"id":"u","orgId":"1","state":"deactivated"}}`,
	} {
		res, err := s.Import(ctx, strings.NewReader(`{"account":{"id":"ok","orgId":"1"}}`+"\n"+line+"\n"), who)
		var le *state.ImportLineError
		if !errors.As(err, &le) || le.Line != 2 || res.Batches != 0 {
			t.Errorf("%s: %+v %v, want refused at line 2 with nothing written", line, res, err)
		}
	}
	o, err := s.GetOrg(ctx, "1")
	if err != nil || o.Record.Disabled != state.OpsAll {
		t.Fatalf("org 1 = %+v %v", o.Record, err)
	}
	// A deactivated state with disabledBy and no flags disables what disabledBy says.
	if _, err := s.Import(ctx, strings.NewReader(`{"org":{"id":"4","state":"deactivated","disabledBy":{"commvault":"backup"}}}`), who); err != nil {
		t.Fatal(err)
	}
	if o, err := s.GetOrg(ctx, "4"); err != nil || o.Record.Disabled != state.OpBackup {
		t.Fatalf("org 4 = %+v %v", o.Record, err)
	}
	// What deact writes is what it reads back: an exported org imports unchanged.
	line := `{"org":{"id":"3","name":"n","state":"deactivated","disableLogin":true,"disableToken":true,"disableBackup":false,"disableRestore":false,"disabledBy":{"zitadel":"login,token"},"reason":"r"}}`
	if _, err := s.Import(ctx, strings.NewReader(line), who); err != nil {
		t.Fatal(err)
	}
	if o, err := s.GetOrg(ctx, "3"); err != nil || o.Record.Disabled != state.OpLogin|state.OpToken || o.Record.DisabledBy[state.SourceZitadel] != state.OpLogin|state.OpToken {
		t.Fatalf("org 3 = %+v %v", o.Record, err)
	}
}

// TestReplicaHoldsUnknownStatesDeactivated: a record written around the store (etcdctl, an older or newer
// deact) whose state deact does not know is held deactivated by the replica, for every kind.
func TestReplicaHoldsUnknownStatesDeactivated(t *testing.T) {
	t.Parallel()
	srv := etcdtest.Start(t)
	cli := etcdtest.Client(t, srv.Endpoints())
	ctx := context.Background()
	r := startReplica(t, cli, state.ReplicaConfig{})
	for key, value := range map[string]string{
		state.OrgKey("1"):          `{"id":"1","state":"Deactivated"}`,
		state.ProjectKey("p"):      `{"id":"p","orgId":"1","state":"DEACTIVATED"}`,
		state.AppKey("p", "a"):     `{"id":"a","projectId":"p","orgId":"1","state":"disabled"}`,
		state.AppKey("q", "b"):     `{"id":"b","projectId":"q","orgId":"1","state":"active"}`,
		state.OrgKey("2"):          `{"id":"2","state":"active"}`,
		state.ProjectKey("active"): `{"id":"active","orgId":"1"}`,
	} {
		resp, err := cli.Put(ctx, key, value)
		if err != nil {
			t.Fatal(err)
		}
		wait.Eventually(t, key+" applied", func() bool { return r.AppliedRevision() >= resp.Header.Revision })
	}
	snap := r.Snapshot()
	if o := snap.Org("1"); o == nil || o.Disabled != state.OpsAll {
		t.Errorf("org 1 = %+v", o)
	}
	if p := snap.Project("p"); p == nil || !p.IsDeactivated() {
		t.Errorf("project p = %+v", p)
	}
	if set := snap.Apps("a"); set == nil || !set.Deactivated {
		t.Errorf("app a = %+v", set)
	}
	if o, p, set := snap.Org("2"), snap.Project("active"), snap.Apps("b"); o == nil || o.Disabled != 0 || p == nil || p.IsDeactivated() || set == nil || set.Deactivated {
		t.Errorf("active records = %+v %+v %+v", o, p, set)
	}
}

// TestIndexAppIDsCoversOlderRecords: app records written before the app-ID index existed get their entry, so
// that another org cannot register their app ID under its own project afterwards.
func TestIndexAppIDsCoversOlderRecords(t *testing.T) {
	t.Parallel()
	s, cli := newStoreAndClient(t)
	ctx := context.Background()
	for key, value := range map[string]string{
		state.AppKey("projB", "X"): `{"id":"X","projectId":"projB","orgId":"B","state":"deactivated"}`,
		state.AppKey("projB", "Y"): `{"id":"Y","projectId":"projB","orgId":"B","state":"active"}`,
		state.AppKey("projC", "Y"): `{"id":"Y","projectId":"projC","orgId":"C","state":"active"}`,
	} {
		if _, err := cli.Put(ctx, key, value); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.PutApp(ctx, state.App{ID: "Z", ProjectID: "projA", OrgID: "A"}, scoped("A")); err != nil {
		t.Fatal(err)
	}
	added, conflicts, err := s.IndexAppIDs(ctx)
	if err != nil || added != 2 || conflicts != 1 {
		t.Fatalf("IndexAppIDs = %d added, %d conflicts, %v; want 2, 1", added, conflicts, err)
	}
	if added, conflicts, err := s.IndexAppIDs(ctx); err != nil || added != 0 || conflicts != 1 {
		t.Fatalf("IndexAppIDs again = %d added, %d conflicts, %v", added, conflicts, err)
	}
	if _, err := s.SetAppState(ctx, "projA", "X", "A", true, scoped("A")); !errors.Is(err, state.ErrConflict) {
		t.Fatalf("A deactivating B's older app id: %v", err)
	}
}
