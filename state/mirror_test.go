package state_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/deact/deact/internal/wait"
	"github.com/deact/deact/state"
)

var upstream = state.Change{Actor: "source zitadel", Reason: "reconcile"}

func mirrorOrg(id string, seq uint64, disabled state.Ops) state.MirrorRecord {
	return state.MirrorRecord{Source: "zitadel", Kind: state.MirrorOrg, ID: id, Disabled: disabled, Sequence: seq}
}

func mirrorApp(project, app, org string, seq uint64, deactivated bool, clients ...string) state.MirrorRecord {
	return state.MirrorRecord{Source: "zitadel", Kind: state.MirrorApp, ID: app, ProjectID: project, OrgID: org,
		Deactivated: deactivated, Sequence: seq, ClientIDs: clients}
}

func heldMirror(t *testing.T, s *state.Store, kind state.MirrorKind) map[string]state.MirrorRecord {
	t.Helper()
	out := map[string]state.MirrorRecord{}
	err := s.ListMirror(context.Background(), "zitadel", kind, func(r state.MirrorRecord, _ int64) error {
		out[r.Key()] = r
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestApplyMirrorOrdering: whatever order deliveries come in, the record with the highest sequence stays; a
// replay is unchanged and writes nothing (the revision does not move).
func TestApplyMirrorOrdering(t *testing.T) {
	t.Parallel()
	s, cli := newStoreAndClient(t)
	ctx := context.Background()
	cases := []struct {
		name string
		seqs []uint64 // sequence of each delivery; odd sequences deactivate
		want []state.MirrorOutcome
	}{
		{"in order", []uint64{1, 2, 3}, []state.MirrorOutcome{state.MirrorWritten, state.MirrorWritten, state.MirrorWritten}},
		{"older after newer", []uint64{5, 4}, []state.MirrorOutcome{state.MirrorWritten, state.MirrorStale}},
		{"replay", []uint64{7, 7, 7}, []state.MirrorOutcome{state.MirrorWritten, state.MirrorUnchanged, state.MirrorUnchanged}},
		{"late listing", []uint64{9, 2, 9}, []state.MirrorOutcome{state.MirrorWritten, state.MirrorStale, state.MirrorUnchanged}},
	}
	for i, tc := range cases {
		id := fmt.Sprint(100 + i)
		var last int64
		for j, seq := range tc.seqs {
			var ops state.Ops
			if seq%2 == 1 {
				ops = state.OpLogin | state.OpToken
			}
			res, err := s.ApplyMirror(ctx, []state.MirrorRecord{mirrorOrg(id, seq, ops)}, upstream)
			if err != nil {
				t.Fatalf("%s: %v", tc.name, err)
			}
			if res.Outcomes[0] != tc.want[j] {
				t.Fatalf("%s: delivery %d (seq %d) = %v, want %v", tc.name, j, seq, res.Outcomes[0], tc.want[j])
			}
			if tc.want[j] != state.MirrorWritten && res.Revision < last {
				t.Fatalf("%s: revision went back", tc.name)
			}
			if tc.want[j] == state.MirrorWritten {
				last = res.Revision
			}
		}
		held := heldMirror(t, s, state.MirrorOrg)[state.MirrorKey("zitadel", state.MirrorOrg, "", id)]
		top := tc.seqs[0]
		for _, q := range tc.seqs {
			top = max(top, q)
		}
		if held.Sequence != top {
			t.Fatalf("%s: held sequence %d, want %d", tc.name, held.Sequence, top)
		}
	}
	// Unchanged records write nothing: etcd's revision stays where it was.
	before, err := cli.Get(ctx, "nothing")
	if err != nil {
		t.Fatal(err)
	}
	res, err := s.ApplyMirror(ctx, []state.MirrorRecord{mirrorOrg("103", 9, state.OpLogin|state.OpToken)}, upstream)
	if err != nil || res.Unchanged != 1 || res.Revision != before.Header.Revision {
		t.Fatalf("replay: %+v, %v (revision before %d)", res, err, before.Header.Revision)
	}
}

// TestApplyMirrorBatchesAndDuplicates: more records than one transaction holds, with duplicates in one call.
func TestApplyMirrorBatchesAndDuplicates(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := context.Background()
	var recs []state.MirrorRecord
	for i := range 250 {
		recs = append(recs, mirrorApp("p1", fmt.Sprint(i), "o1", 10, i%3 == 0, fmt.Sprintf("c%d@p1", i)))
	}
	// The same key three times: sequence 11 wins whatever its position; 10 is stale.
	recs = append(recs, mirrorApp("p1", "5", "o1", 11, true), mirrorApp("p1", "5", "o1", 10, false))
	res, err := s.ApplyMirror(ctx, recs, upstream)
	if err != nil {
		t.Fatal(err)
	}
	if res.Written != 250 || res.Stale != 2 {
		t.Fatalf("result %+v", res)
	}
	held := heldMirror(t, s, state.MirrorApp)
	if len(held) != 250 {
		t.Fatalf("held %d records", len(held))
	}
	five := held[state.MirrorKey("zitadel", state.MirrorApp, "p1", "5")]
	if five.Sequence != 11 || !five.Deactivated {
		t.Fatalf("app 5 = %+v", five)
	}
	// The winning duplicate is a full record without client IDs: it says the app has none.
	if len(five.ClientIDs) != 0 {
		t.Fatalf("app 5 client IDs = %v", five.ClientIDs)
	}
	again, err := s.ApplyMirror(ctx, recs, upstream)
	if err != nil || again.Written != 0 || again.Unchanged != 250 {
		t.Fatalf("replay of the batch: %+v, %v", again, err)
	}
}

// TestApplyMirrorKeepsWhatEventsOmit: a partial record (an event) and a tombstone keep the client IDs and the
// owner a listing wrote, so a removed app's client ID still finds it.
func TestApplyMirrorKeepsWhatEventsOmit(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := context.Background()
	if _, err := s.ApplyMirror(ctx, []state.MirrorRecord{mirrorApp("p", "a", "o", 3, false, "a@p")}, upstream); err != nil {
		t.Fatal(err)
	}
	ev := state.MirrorRecord{Source: "zitadel", Kind: state.MirrorApp, ID: "a", ProjectID: "p", Deactivated: true, Sequence: 4, Partial: true}
	if _, err := s.ApplyMirror(ctx, []state.MirrorRecord{ev}, upstream); err != nil {
		t.Fatal(err)
	}
	tomb := state.MirrorRecord{Source: "zitadel", Kind: state.MirrorApp, ID: "a", ProjectID: "p", Removed: true, Sequence: 5}
	if _, err := s.ApplyMirror(ctx, []state.MirrorRecord{tomb}, upstream); err != nil {
		t.Fatal(err)
	}
	got := heldMirror(t, s, state.MirrorApp)[tomb.Key()]
	if !got.Removed || got.RemovedAt.IsZero() || got.OrgID != "o" || len(got.ClientIDs) != 1 || got.ClientIDs[0] != "a@p" {
		t.Fatalf("tombstone = %+v", got)
	}
	// An older listing that still shows the app does not bring it back.
	res, err := s.ApplyMirror(ctx, []state.MirrorRecord{mirrorApp("p", "a", "o", 4, false, "a@p")}, upstream)
	if err != nil || res.Stale != 1 {
		t.Fatalf("older listing after the removal: %+v, %v", res, err)
	}
	// A tombstone a reconcile wrote at the held sequence (the listing missed the app) is undone by a listing at
	// that sequence that shows it again.
	synth := state.MirrorRecord{Source: "zitadel", Kind: state.MirrorApp, ID: "b", ProjectID: "p", OrgID: "o", Sequence: 8}
	if _, err := s.ApplyMirror(ctx, []state.MirrorRecord{synth}, upstream); err != nil {
		t.Fatal(err)
	}
	synth.Removed = true
	if res, err := s.ApplyMirror(ctx, []state.MirrorRecord{synth}, upstream); err != nil || res.Written != 1 {
		t.Fatalf("synthesized tombstone: %+v, %v", res, err)
	}
	synth.Removed = false
	if res, err := s.ApplyMirror(ctx, []state.MirrorRecord{synth}, upstream); err != nil || res.Written != 1 {
		t.Fatalf("listing that shows it again: %+v, %v", res, err)
	}
	if got := heldMirror(t, s, state.MirrorApp)[synth.Key()]; got.Removed || !got.RemovedAt.IsZero() {
		t.Fatalf("after the listing: %+v", got)
	}
}

func TestApplyMirrorRejectsBadRecords(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := context.Background()
	long := make([]string, 101)
	for i := range long {
		long[i] = fmt.Sprint("c", i)
	}
	cases := []struct {
		name string
		rec  state.MirrorRecord
	}{
		{"no source", state.MirrorRecord{Kind: state.MirrorOrg, ID: "1", Sequence: 1}},
		{"source with a slash", state.MirrorRecord{Source: "a/b", Kind: state.MirrorOrg, ID: "1", Sequence: 1}},
		{"unknown kind", state.MirrorRecord{Source: "z", Kind: 9, ID: "1", Sequence: 1}},
		{"id with a slash", state.MirrorRecord{Source: "z", Kind: state.MirrorOrg, ID: "1/2", Sequence: 1}},
		{"dot-dot id", state.MirrorRecord{Source: "z", Kind: state.MirrorProject, ID: "..", Sequence: 1}},
		{"no sequence", state.MirrorRecord{Source: "z", Kind: state.MirrorOrg, ID: "1"}},
		{"app without project", state.MirrorRecord{Source: "z", Kind: state.MirrorApp, ID: "1", Sequence: 1}},
		{"org deactivated flag", state.MirrorRecord{Source: "z", Kind: state.MirrorOrg, ID: "1", Deactivated: true, Sequence: 1}},
		{"project with ops", state.MirrorRecord{Source: "z", Kind: state.MirrorProject, ID: "1", Disabled: state.OpLogin, Sequence: 1}},
		{"unknown op bits", state.MirrorRecord{Source: "z", Kind: state.MirrorOrg, ID: "1", Disabled: 0x80, Sequence: 1}},
		{"bad client id", state.MirrorRecord{Source: "z", Kind: state.MirrorApp, ID: "1", ProjectID: "p", ClientIDs: []string{"a b"}, Sequence: 1}},
		{"too many client ids", state.MirrorRecord{Source: "z", Kind: state.MirrorApp, ID: "1", ProjectID: "p", ClientIDs: long, Sequence: 1}},
		{"bad org id", state.MirrorRecord{Source: "z", Kind: state.MirrorApp, ID: "1", ProjectID: "p", OrgID: "o/../x", Sequence: 1}},
	}
	for _, tc := range cases {
		good := mirrorOrg("ok", 1, 0)
		_, err := s.ApplyMirror(ctx, []state.MirrorRecord{good, tc.rec}, upstream)
		var re *state.MirrorRecordError
		if !errors.As(err, &re) || re.Index != 1 {
			t.Errorf("%s: err = %v", tc.name, err)
		}
	}
	if n := len(heldMirror(t, s, 0)); n != 0 {
		t.Fatalf("a rejected call wrote %d records", n)
	}
}

// TestMirrorDenyWinsThroughReplica: the replica's snapshot denies a subject when any layer does, and a
// reconcile that says "active" never undoes a local deactivation.
func TestMirrorDenyWinsThroughReplica(t *testing.T) {
	t.Parallel()
	s, cli := newStoreAndClient(t)
	ctx := context.Background()
	admin := state.Change{Actor: "admin"}

	// Local layer: org L deactivated for login, app p/la deactivated, client "local@p" registered to app p/la.
	if _, err := s.DeactivateOrg(ctx, "L", state.OpLogin, false, admin); err != nil {
		t.Fatal(err)
	}
	if _, err := s.PutApp(ctx, state.App{ID: "la", ProjectID: "p", OrgID: "L", ClientIDs: []string{"shared@p"}}, admin); err != nil {
		t.Fatal(err)
	}
	if _, err := s.SetAppState(ctx, "p", "la", "", true, admin); err != nil {
		t.Fatal(err)
	}
	r := startReplica(t, cli, state.ReplicaConfig{})

	// Mirrored layer: org L active upstream but token-disabled, org M deactivated, app p/ma active in org M,
	// claiming the same client ID; app p/la active upstream.
	res, err := s.ApplyMirror(ctx, []state.MirrorRecord{
		mirrorOrg("L", 4, state.OpToken),
		func() state.MirrorRecord {
			o := mirrorOrg("M", 2, state.OpLogin|state.OpToken)
			o.Domains = []string{"M.example"}
			return o
		}(),
		mirrorApp("p", "la", "L", 3, false),
		mirrorApp("p", "ma", "M", 3, false, "shared@p", "ma@p"),
	}, upstream)
	if err != nil {
		t.Fatal(err)
	}
	wait.Eventually(t, "mirror applied", func() bool { return r.AppliedRevision() >= res.Revision })
	snap := r.Snapshot()
	if o := snap.Org("L"); o == nil || o.Disabled != state.OpLogin|state.OpToken {
		t.Fatalf("org L = %+v, want local login + mirrored token", o)
	}
	if a := snap.App("p", "la"); a == nil || !a.Deactivated {
		t.Fatalf("app la = %+v: the mirrored 'active' undid the local deactivation", a)
	}
	if d := snap.Domain("m.example"); d == nil || d.OrgID != "M" {
		t.Fatalf("domain = %+v", d)
	}
	owners := map[string]bool{}
	for c := snap.Client("shared@p"); c != nil; c = c.Next {
		owners[c.AppID] = true
	}
	if !owners["la"] || !owners["ma"] || len(owners) != 2 {
		t.Fatalf("client chain owners = %v, want la and ma", owners)
	}
	if c := snap.Client("ma@p"); c == nil || c.AppID != "ma" || c.OrgID != "M" || c.Next != nil {
		t.Fatalf("client ma@p = %+v", c)
	}

	// The local layer changes under the mirrored one: reactivating org L locally leaves the mirrored token ban.
	if _, err := s.ReactivateOrg(ctx, "L", admin); err != nil {
		t.Fatal(err)
	}
	// The mirrored layer goes active: the local app deactivation still stands.
	res, err = s.ApplyMirror(ctx, []state.MirrorRecord{mirrorOrg("L", 5, 0), mirrorApp("p", "la", "L", 6, false)}, upstream)
	if err != nil {
		t.Fatal(err)
	}
	wait.Eventually(t, "second mirror applied", func() bool { return r.AppliedRevision() >= res.Revision })
	snap = r.Snapshot()
	if o := snap.Org("L"); o == nil || o.Disabled != 0 {
		t.Fatalf("org L = %+v, want active in both layers", o)
	}
	if a := snap.App("p", "la"); a == nil || !a.Deactivated {
		t.Fatalf("app la = %+v", a)
	}
	if _, err := s.GetApp(ctx, "p", "la"); err != nil {
		t.Fatal(err)
	}
	// A relist builds the same merge from scratch (mirror keys sort before orgs: order must not matter).
	r2 := startReplica(t, cli, state.ReplicaConfig{})
	if a := r2.Snapshot().App("p", "la"); a == nil || !a.Deactivated {
		t.Fatalf("relisted app la = %+v", a)
	}
	if o := r2.Snapshot().Org("M"); o == nil || o.Disabled != state.OpLogin|state.OpToken {
		t.Fatalf("relisted org M = %+v", o)
	}
}

// TestMirrorTombstoneDeniesUntilPruned: a removed app denies through its client ID, a removed org through its
// domain; pruning after the retention lets them go, and a tombstone newer than the cutoff stays.
func TestMirrorTombstoneDeniesUntilPruned(t *testing.T) {
	t.Parallel()
	s, cli := newStoreAndClient(t)
	ctx := context.Background()
	r := startReplica(t, cli, state.ReplicaConfig{})

	org := mirrorOrg("O", 1, 0)
	org.Domains = []string{"o.example"}
	if _, err := s.ApplyMirror(ctx, []state.MirrorRecord{org, mirrorApp("p", "a", "O", 1, false, "a@p"),
		mirrorApp("p", "b", "O", 1, false, "b@p")}, upstream); err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-100 * 24 * time.Hour)
	res, err := s.ApplyMirror(ctx, []state.MirrorRecord{
		{Source: "zitadel", Kind: state.MirrorApp, ID: "a", ProjectID: "p", Removed: true, RemovedAt: old, Sequence: 2},
		{Source: "zitadel", Kind: state.MirrorOrg, ID: "O", Removed: true, Sequence: 2}, // removed now
	}, upstream)
	if err != nil || res.Written != 2 {
		t.Fatalf("%+v, %v", res, err)
	}
	wait.Eventually(t, "tombstones applied", func() bool { return r.AppliedRevision() >= res.Revision })
	snap := r.Snapshot()
	if c := snap.Client("a@p"); c == nil || snap.App(c.ProjectID, c.AppID) == nil || !snap.App(c.ProjectID, c.AppID).Deactivated {
		t.Fatalf("removed app's client = %+v", c)
	}
	if d := snap.Domain("o.example"); d == nil || snap.Org(d.OrgID).Disabled != state.OpsAll {
		t.Fatalf("removed org's domain = %+v", d)
	}

	n, err := s.PruneMirrorTombstones(ctx, "zitadel", time.Now().Add(-90*24*time.Hour))
	if err != nil || n != 1 {
		t.Fatalf("pruned %d, %v", n, err)
	}
	wait.Eventually(t, "prune applied", func() bool { return r.Snapshot().App("p", "a") == nil })
	snap = r.Snapshot()
	if c := snap.Client("a@p"); c != nil {
		t.Fatalf("pruned app's client still indexed: %+v", c)
	}
	if o := snap.Org("O"); o == nil || o.Disabled != state.OpsAll {
		t.Fatalf("recent org tombstone = %+v", o)
	}
	if a := snap.App("p", "b"); a == nil || a.Deactivated {
		t.Fatalf("app b = %+v", a)
	}
}

// TestMirrorUnreadableRecordDenies: a mirrored record etcd holds but deact cannot read denies its subject.
func TestMirrorUnreadableRecordDenies(t *testing.T) {
	t.Parallel()
	s, cli := newStoreAndClient(t)
	ctx := context.Background()
	r := startReplica(t, cli, state.ReplicaConfig{})
	res, err := s.ApplyMirror(ctx, []state.MirrorRecord{mirrorApp("p", "a", "O", 1, false, "a@p")}, upstream)
	if err != nil {
		t.Fatal(err)
	}
	wait.Eventually(t, "applied", func() bool { return r.AppliedRevision() >= res.Revision })
	put, err := cli.Put(ctx, state.MirrorKey("zitadel", state.MirrorApp, "p", "a"), `{"deactivated":"maybe"}`)
	if err != nil {
		t.Fatal(err)
	}
	wait.Eventually(t, "bad record applied", func() bool { return r.AppliedRevision() >= put.Header.Revision })
	if c := r.Snapshot().Client("a@p"); c == nil || !r.Snapshot().App(c.ProjectID, c.AppID).Deactivated {
		t.Fatalf("client of an unreadable app = %+v", c)
	}
	if r.Stats().BadRecords == 0 {
		t.Fatal("bad record not counted")
	}
}

func TestSourceStatusRoundTrip(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := context.Background()
	st := state.SourceStatus{Source: "zitadel", Leader: "n1", UpdatedAt: time.Now().UTC().Truncate(time.Millisecond),
		LastReconcileDuration: 1500 * time.Millisecond, EventsAccepted: 3}
	if err := s.PutSourceStatus(ctx, st); err != nil {
		t.Fatal(err)
	}
	if err := s.PutSourceStatus(ctx, state.SourceStatus{Source: "../x"}); !errors.Is(err, state.ErrInvalidID) {
		t.Fatalf("bad source name: %v", err)
	}
	got, err := s.ListSourceStatus(ctx)
	if err != nil || len(got) != 1 || got[0].LastReconcileDuration != st.LastReconcileDuration || !got[0].UpdatedAt.Equal(st.UpdatedAt) {
		t.Fatalf("%+v, %v", got, err)
	}
	// Status lives outside the state prefix: replicas do not wake up for it.
	if got := state.SourceKey("zitadel"); len(got) >= len(state.StatePrefix) && got[:len(state.StatePrefix)] == state.StatePrefix {
		t.Fatalf("status key %s is under the state prefix", got)
	}
}

func TestMirroredRecordsAcrossSources(t *testing.T) {
	t.Parallel()
	s, cli := newStoreAndClient(t)
	ctx := context.Background()
	a, b := mirrorOrg("1", 1, state.OpLogin), mirrorOrg("1", 7, 0)
	b.Source = "zitadel-b"
	c := mirrorOrg("2", 1, 0)
	c.Source = "z"
	if _, err := s.ApplyMirror(ctx, []state.MirrorRecord{a, b, c}, upstream); err != nil {
		t.Fatal(err)
	}
	sources, err := s.MirrorSources(ctx)
	if err != nil || fmt.Sprint(sources) != "[z zitadel-b zitadel]" {
		t.Fatalf("sources %v, %v", sources, err)
	}
	got, err := s.MirroredRecords(ctx, state.MirrorOrg, "", "1")
	if err != nil || len(got) != 2 || got[0].Record.Source != "zitadel-b" || got[0].Record.Sequence != 7 || got[1].Record.Disabled != state.OpLogin {
		t.Fatalf("%+v, %v", got, err)
	}
	// The stored form is readable by hand.
	resp, err := cli.Get(ctx, a.Key())
	if err != nil {
		t.Fatal(err)
	}
	var raw map[string]any
	if err := json.Unmarshal(resp.Kvs[0].Value, &raw); err != nil || raw["disabled"] != "login" || raw["kind"] != "org" {
		t.Fatalf("stored %s", resp.Kvs[0].Value)
	}
}
