package source_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/deact/deact/internal/wait"
	"github.com/deact/deact/source"
	"github.com/deact/deact/state"
	"github.com/deact/deact/state/etcdtest"
	"github.com/prometheus/client_golang/prometheus"
)

// upstream is a source whose Sync mirrors a fixed listing once and then waits; the handler counts an event.
type upstream struct {
	recs []state.MirrorRecord
}

func (u *upstream) Name() string     { return "zitadel" }
func (u *upstream) Kind() string     { return "test" }
func (u *upstream) Upstream() string { return "https://zitadel.example" }

func (u *upstream) Handler(env source.Env) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		env.Status.Event("org.deactivated", source.EventIgnored, time.Now().Add(-time.Second))
		w.WriteHeader(http.StatusNoContent)
	})
}

func (u *upstream) Sync(ctx context.Context, env source.Env) error {
	start := time.Now()
	res, err := env.Store.ApplyMirror(ctx, u.recs, state.Change{Actor: "source " + u.Name()})
	env.Status.Reconciled(start, int64(res.Written), int64(len(u.recs)), 0, err)
	if err != nil {
		return err
	}
	<-ctx.Done()
	return nil
}

func startRunner(t *testing.T, endpoints []string, node string, reg prometheus.Registerer, src source.Source) (*source.Runner, context.CancelFunc) {
	t.Helper()
	cli := etcdtest.Client(t, endpoints)
	r, err := source.NewRunner(source.RunnerConfig{Client: cli, Store: state.NewStore(cli), NodeID: node, Logger: quiet(),
		Metrics: source.NewMetrics(reg), LeaderTTL: 2 * time.Second, StatusInterval: 100 * time.Millisecond,
		PruneInterval: 50 * time.Millisecond, TombstoneRetention: time.Hour}, src)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = r.Run(ctx) }()
	stop := func() { cancel(); <-done }
	t.Cleanup(stop)
	return r, stop
}

func statusOf(t *testing.T, s *state.Store) state.SourceStatus {
	t.Helper()
	all, err := s.ListSourceStatus(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, st := range all {
		if st.Source == "zitadel" {
			return st
		}
	}
	return state.SourceStatus{}
}

// TestRunnerLeadsSyncsReportsAndPrunes: the leader runs Sync, publishes the status and prunes tombstones older
// than the retention; after it stops, the other node leads and the status says so.
func TestRunnerLeadsSyncsReportsAndPrunes(t *testing.T) {
	t.Parallel()
	srv := etcdtest.Start(t)
	store := state.NewStore(etcdtest.Client(t, srv.Endpoints()))
	ctx := context.Background()
	old := state.MirrorRecord{Source: "zitadel", Kind: state.MirrorApp, ID: "gone", ProjectID: "p", Removed: true,
		RemovedAt: time.Now().Add(-2 * time.Hour), Sequence: 9}
	fresh := state.MirrorRecord{Source: "zitadel", Kind: state.MirrorOrg, ID: "o", Removed: true, Sequence: 3}
	if _, err := store.ApplyMirror(ctx, []state.MirrorRecord{old, fresh}, state.Change{Actor: "test"}); err != nil {
		t.Fatal(err)
	}
	src := &upstream{recs: []state.MirrorRecord{{Source: "zitadel", Kind: state.MirrorOrg, ID: "1", Disabled: state.OpLogin | state.OpToken, Sequence: 1}}}
	regA, regB := prometheus.NewRegistry(), prometheus.NewRegistry()
	a, stopA := startRunner(t, srv.Endpoints(), "a", regA, src)
	wait.Until(t, "a leads", 20*time.Second, a.Leader().IsLeader)
	b, _ := startRunner(t, srv.Endpoints(), "b", regB, src)

	wait.Until(t, "a's status", 20*time.Second, func() bool {
		st := statusOf(t, store)
		return st.Leader == "a" && st.Reconciles == 1 && st.LastReconcileChanged == 1 && st.TombstonesPruned == 1
	})
	held := map[string]bool{}
	if err := store.ListMirror(ctx, "zitadel", 0, func(r state.MirrorRecord, _ int64) error { held[r.ID] = true; return nil }); err != nil {
		t.Fatal(err)
	}
	if held["gone"] || !held["o"] || !held["1"] {
		t.Fatalf("held after pruning: %v", held)
	}
	if got := gauge(t, regA, "deact_source_leader"); got != 1 {
		t.Fatalf("a's leader gauge %v", got)
	}

	// Events reach every node's handler, leader or not; they count on the node that received them.
	rec := httptest.NewRecorder()
	b.Handler().ServeHTTP(rec, httptest.NewRequest("POST", "/v1/sources/zitadel/events", strings.NewReader("{}")))
	if rec.Code != http.StatusNoContent || b.Status().Get().EventsIgnored != 1 {
		t.Fatalf("handler on the follower: %d %+v", rec.Code, b.Status().Get())
	}

	stopA()
	wait.Until(t, "b's status", 20*time.Second, func() bool {
		st := statusOf(t, store)
		return st.Leader == "b" && !st.LeaderSince.IsZero() && st.EventsIgnored == 1 && st.LagMs >= 1000
	})
	if got := gauge(t, regA, "deact_source_leader"); got != 0 {
		t.Fatalf("a's leader gauge after stopping %v", got)
	}
}

// gauge reads the value of a single-series gauge.
func gauge(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) == 1 {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatalf("no single-series metric %s", name)
	return 0
}

func TestCheckRemovals(t *testing.T) {
	cases := []struct {
		name           string
		held, removing int
		fraction       float64
		wantSuspicious bool
	}{
		{"nothing removed", 100, 0, 0, false},
		{"a few", 100, 3, 0, false},
		{"everything", 100, 100, 0, true},
		{"the only one", 1, 1, 0, true},
		{"more than half", 100, 51, 0, true},
		{"half", 100, 50, 0, false},
		{"small set, most of it", 4, 3, 0, false},
		{"custom fraction", 100, 11, 0.1, true},
	}
	for _, tc := range cases {
		err := source.CheckRemovals("org", tc.held, tc.removing, tc.fraction)
		if got := errors.Is(err, source.ErrSuspiciousListing); got != tc.wantSuspicious {
			t.Errorf("%s: err = %v", tc.name, err)
		}
	}
}
