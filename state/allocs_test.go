package state

import (
	"testing"
	"time"
)

// TestLookupsDoNotAllocate holds the promise of Snapshot's doc ("Lookups never lock and never allocate") and
// of the hot-path readers a decision calls (Replica.Snapshot, Replica.StalenessAt, NodeReporter.FencedAt), for
// hits, misses and chains, on local records and on mirrored layers. The benchmarks print the same numbers;
// this test fails when one of them moves off zero. Not parallel: testing.AllocsPerRun counts the process's
// allocations, and refuses to run in a parallel test.
func TestLookupsDoNotAllocate(t *testing.T) {
	local, err := BuildSnapshot(7,
		Record{Org: &Org{ID: "100", Domains: []string{"acme.example"}}},
		Record{Org: &Org{ID: "101", Disabled: OpLogin | OpToken}},
		Record{Project: &Project{ID: "300", OrgID: "100", State: Active}},
		Record{App: &App{ID: "400", ProjectID: "300", OrgID: "100", ClientIDs: []string{"400@acme"}, State: Active}},
		Record{App: &App{ID: "400", ProjectID: "301", OrgID: "101", State: Deactivated}}, // a second record of app ID 400
		Record{Account: &Account{ID: "500", OrgID: "100"}},
	)
	if err != nil {
		t.Fatal(err)
	}
	mirrored, orgIDs := mirroredOrgs(t, 8)
	mirroredApps := mirroredApps(t, 8, false)
	rep := NewReplica(ReplicaConfig{}) // not started: its snapshot is nil, its staleness the time since creation
	nodes, err := NewNodeReporter(NodeReporterConfig{NodeID: "gw-1"})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()

	// Sinks of each result type, so that storing a result allocates nothing itself.
	var (
		org     *OrgState
		project *ProjectState
		app     *AppState
		apps    *AppSet
		client  *Client
		domain  *Domain
		account *Account
		snap    *Snapshot
		rev     int64
		stale   time.Duration
		fenced  bool
	)
	for _, tc := range []struct {
		name string
		f    func()
	}{
		{"org hit", func() { org = local.Org("101") }},
		{"org miss", func() { org = local.Org("nobody") }},
		{"project hit", func() { project = local.Project("300") }},
		{"app by project and ID", func() { app = local.App("300", "400") }},
		{"app in no such project", func() { app = local.App("999", "400") }},
		{"app set of two records", func() { apps = local.Apps("400") }},
		{"client index", func() { client = local.Client("400@acme") }},
		{"domain", func() { domain = local.Domain("acme.example") }},
		{"account", func() { account = local.Account("500") }},
		{"nil snapshot", func() { var s *Snapshot; org = s.Org("100") }},
		{"revision", func() { rev = local.Revision() }},
		{"mirrored org hit", func() { org = mirrored.Org(orgIDs[0]) }},
		{"mirrored org with a local record", func() { org = mirrored.Org(orgIDs[1]) }},
		{"mirrored org miss", func() { org = mirrored.Org("1") }},
		{"mirrored app set", func() { apps = mirroredApps.Apps("69629023906488334") }},
		{"mirrored client", func() { client = mirroredApps.Client("69629023906488334@project") }},
		{"replica snapshot", func() { snap = rep.Snapshot() }},
		{"replica staleness", func() { stale = rep.StalenessAt(now) }},
		{"node fence", func() { fenced = nodes.FencedAt(now) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if n := testing.AllocsPerRun(100, tc.f); n != 0 {
				t.Errorf("%v allocations per lookup, want 0", n)
			}
		})
	}
	// The lookups found what they should: the table measured real hits.
	if org != nil || project == nil || app != nil || apps == nil || client == nil || domain == nil || account == nil ||
		snap != nil || rev != 7 || stale <= 0 || !fenced {
		t.Errorf("last results: org %v project %v app %v apps %v client %v domain %v account %v snap %v rev %d stale %v fenced %v",
			org, project, app, apps, client, domain, account, snap, rev, stale, fenced)
	}
}

// A list's client entries share their IDs with their app's record: decoding one whose app the snapshot holds
// allocates the entry alone, and a lookup by a record's bytes allocates nothing.
func TestClientEntrySharesAppStrings(t *testing.T) {
	s, err := BuildSnapshot(7, Record{App: &App{ID: "400", ProjectID: "300", OrgID: "100", State: Active}})
	if err != nil {
		t.Fatal(err)
	}
	value := []byte(`{"clientId":"400@acme","appId":"400","projectId":"300","orgId":"100"}`)
	var v any
	if n := testing.AllocsPerRun(100, func() { v, err = decode(kindClient, "400@acme", value, s) }); err != nil || n != 1 {
		t.Fatalf("decoding a client entry: %v allocations (err %v), want 1", n, err)
	}
	if c := v.(*Client); c.ClientID != "400@acme" || c.AppID != "400" || c.ProjectID != "300" || c.OrgID != "100" {
		t.Fatalf("client entry %+v", c)
	}
	if n := testing.AllocsPerRun(100, func() { _, _ = s.appIDs.getBytes([]byte("400")) }); n != 0 {
		t.Fatalf("getBytes allocates %v times", n)
	}
}
