package state_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/deact/deact/state"
	"github.com/deact/deact/state/etcdtest"
	clientv3 "go.etcd.io/etcd/client/v3"
)

func newStore(t *testing.T) *state.Store {
	t.Helper()
	s, _ := newStoreAndClient(t)
	return s
}

// newStoreAndClient is newStore with a client of the test's own on the same etcd, for what a test reads or
// writes behind the store's back.
func newStoreAndClient(t *testing.T) (*state.Store, *clientv3.Client) {
	t.Helper()
	srv := etcdtest.Start(t)
	return state.NewStore(etcdtest.Client(t, srv.Endpoints())), etcdtest.Client(t, srv.Endpoints())
}

var who = state.Change{Actor: "test", Reason: "unit test"}

func TestStoreOrgTransitions(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := context.Background()

	if _, err := s.ReactivateOrg(ctx, "1", who); !errors.Is(err, state.ErrNotDeactivated) {
		t.Fatalf("reactivate unknown org: %v", err)
	}
	r1, err := s.DeactivateOrg(ctx, "1", state.OpLogin|state.OpToken, false, who)
	if err != nil {
		t.Fatal(err)
	}
	if r1.Revision == 0 || r1.ChangedAt.IsZero() || r1.OrgID != "1" {
		t.Fatalf("result = %+v", r1)
	}
	if _, err := s.DeactivateOrg(ctx, "1", state.OpLogin, false, who); !errors.Is(err, state.ErrAlreadyDeactivated) {
		t.Fatalf("second deactivate: %v", err)
	}
	// Adding an op is a change; an exact set replaces (Commvault's deactivateOptions).
	if _, err := s.DeactivateOrg(ctx, "1", state.OpBackup, false, who); err != nil {
		t.Fatal(err)
	}
	if _, err := s.DeactivateOrg(ctx, "1", state.OpBackup, true, who); err != nil {
		t.Fatal(err)
	}
	got, err := s.GetOrg(ctx, "1")
	if err != nil || got.Record.Disabled != state.OpBackup {
		t.Fatalf("org = %+v, %v", got, err)
	}
	if got.Record.ChangedBy != "test" || got.Revision <= r1.Revision {
		t.Fatalf("meta/revision not updated: %+v", got)
	}
	if _, err := s.ReactivateOrg(ctx, "1", who); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ReactivateOrg(ctx, "1", who); !errors.Is(err, state.ErrNotDeactivated) {
		t.Fatalf("second reactivate: %v", err)
	}
	if _, err := s.DeactivateOrg(ctx, "../x", state.OpLogin, false, who); !errors.Is(err, state.ErrInvalidID) {
		t.Fatalf("bad id: %v", err)
	}
	audit, err := s.Audit(ctx, "", 100)
	if err != nil || len(audit) != 4 {
		t.Fatalf("audit = %d entries, %v", len(audit), err)
	}
	if audit[0].Action != "reactivate org" || audit[0].Actor != "test" || audit[0].Revision == 0 {
		t.Fatalf("newest audit entry = %+v", audit[0])
	}
}

func TestStoreAppsAndProjects(t *testing.T) {
	t.Parallel()
	s, cli := newStoreAndClient(t)
	ctx := context.Background()
	app := state.App{ID: "a1", ProjectID: "p1", OrgID: "o1", ClientIDs: []string{"c1@p", "c2@p"}}
	if _, err := s.PutApp(ctx, app, who); err != nil {
		t.Fatal(err)
	}
	// Another app may not take a registered client ID.
	if _, err := s.PutApp(ctx, state.App{ID: "a2", ProjectID: "p1", OrgID: "o1", ClientIDs: []string{"c2@p"}}, who); !errors.Is(err, state.ErrConflict) {
		t.Fatalf("client id taken twice: %v", err)
	}
	// Another org cannot see, let alone flip, the app.
	if _, err := s.SetAppState(ctx, "p1", "a1", "o2", true, who); !errors.Is(err, state.ErrNotFound) {
		t.Fatalf("deactivate other org's app: %v", err)
	}
	if _, err := s.SetAppState(ctx, "p1", "missing", "o1", false, who); !errors.Is(err, state.ErrNotFound) {
		t.Fatalf("reactivate unknown app: %v", err)
	}
	res, err := s.SetAppState(ctx, "p1", "a1", "o1", true, who)
	if err != nil || res.OrgID != "o1" {
		t.Fatalf("deactivate app: %+v %v", res, err)
	}
	if _, err := s.SetAppState(ctx, "p1", "a1", "", true, who); !errors.Is(err, state.ErrAlreadyDeactivated) {
		t.Fatalf("deactivate twice: %v", err)
	}
	// Re-registering keeps the state and moves the client index.
	app.ClientIDs = []string{"c3@p"}
	if _, err := s.PutApp(ctx, app, who); err != nil {
		t.Fatal(err)
	}
	got, err := s.GetApp(ctx, "p1", "a1")
	if err != nil || !got.Record.IsDeactivated() || strings.Join(got.Record.ClientIDs, ",") != "c3@p" {
		t.Fatalf("app = %+v %v", got, err)
	}
	resp, err := cli.Get(ctx, state.ClientKey("c1@p"))
	if err != nil || len(resp.Kvs) != 0 {
		t.Fatalf("old client index entry still there: %v", err)
	}
	if _, err := s.SetProjectState(ctx, "p1", "o1", true, who); err != nil {
		t.Fatal(err)
	}
	if _, err := s.SetProjectState(ctx, "p1", "o2", false, who); !errors.Is(err, state.ErrNotFound) {
		t.Fatalf("reactivate other org's project: %v", err)
	}
	if _, err := s.SetProjectState(ctx, "p1", "o1", false, who); err != nil {
		t.Fatal(err)
	}
}

func TestStoreDomainsAreExclusive(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := context.Background()
	if _, err := s.PutOrg(ctx, state.Org{ID: "o1", Domains: []string{"ACME.example"}}, who); err != nil {
		t.Fatal(err)
	}
	if _, err := s.PutOrg(ctx, state.Org{ID: "o2", Domains: []string{"acme.example"}}, who); !errors.Is(err, state.ErrConflict) {
		t.Fatalf("domain taken twice: %v", err)
	}
	// Registration keeps a deactivation.
	if _, err := s.DeactivateOrg(ctx, "o1", state.OpLogin, false, who); err != nil {
		t.Fatal(err)
	}
	if _, err := s.PutOrg(ctx, state.Org{ID: "o1", Name: "Acme", Domains: []string{"acme.example", "acme.test"}}, who); err != nil {
		t.Fatal(err)
	}
	got, _ := s.GetOrg(ctx, "o1")
	if got.Record.Disabled != state.OpLogin || len(got.Record.Domains) != 2 {
		t.Fatalf("org = %+v", got.Record)
	}
}

// TestStoreConcurrentDeactivate: of many racing deactivations of one org exactly one wins.
func TestStoreConcurrentDeactivate(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := context.Background()
	const n = 100
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := s.DeactivateOrg(ctx, "race", state.OpLogin|state.OpToken, false, who)
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	ok, already := 0, 0
	for err := range errs {
		switch {
		case err == nil:
			ok++
		case errors.Is(err, state.ErrAlreadyDeactivated):
			already++
		default:
			t.Errorf("unexpected error: %v", err)
		}
	}
	if ok != 1 || already != n-1 {
		t.Fatalf("%d succeeded, %d already deactivated", ok, already)
	}
}

func TestStoreImport(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := context.Background()
	var b strings.Builder
	for i := range 300 {
		b.WriteString(`{"org":{"id":"o` + itoa(i) + `","disableLogin":true,"domains":["d` + itoa(i) + `.example"]}}` + "\n")
	}
	b.WriteString(`{"app":{"id":"a1","projectId":"p1","orgId":"o1","clientIds":["c1"],"state":"deactivated"}}` + "\n")
	res, err := s.Import(ctx, strings.NewReader(b.String()), who)
	if err != nil {
		t.Fatal(err)
	}
	if res.Records != 301 || res.Batches < 5 {
		t.Fatalf("import = %+v", res)
	}
	page, err := s.ListOrgs(ctx, "", 1000)
	if err != nil || len(page.Items) != 300 {
		t.Fatalf("listed %d orgs, %v", len(page.Items), err)
	}
	if _, err := s.Import(ctx, strings.NewReader("{\"org\":{\"id\":\"ok\"}}\n{\"org\":{\"id\":\"a/b\"}}\n"), who); err == nil || !strings.Contains(err.Error(), "line 2") {
		t.Fatalf("bad line: %v", err)
	}
	if _, err := s.Import(ctx, strings.NewReader(`{"app":{"id":"x","projectId":"p","orgId":"o","state":"maybe"}}`), who); err == nil {
		t.Fatal("bad state accepted")
	}
}

func itoa(i int) string {
	const digits = "0123456789"
	if i < 10 {
		return digits[i : i+1]
	}
	return itoa(i/10) + digits[i%10:i%10+1]
}

func TestPruneAudit(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := context.Background()
	for _, id := range []string{"a", "b"} {
		if _, err := s.DeactivateOrg(ctx, id, state.OpLogin, false, who); err != nil {
			t.Fatal(err)
		}
	}
	cutoff := time.Now()
	if _, err := s.DeactivateOrg(ctx, "c", state.OpLogin, false, who); err != nil {
		t.Fatal(err)
	}
	n, err := s.PruneAudit(ctx, cutoff)
	if err != nil || n != 2 {
		t.Fatalf("pruned %d, %v", n, err)
	}
	left, err := s.Audit(ctx, "", 100)
	if err != nil || len(left) != 1 || !strings.HasSuffix(left[0].Key, "/c") {
		t.Fatalf("left %+v, %v", left, err)
	}
}
