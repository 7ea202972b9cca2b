package commvault_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/deact/deact/daemon"
	"github.com/deact/deact/source/commvault"
	"github.com/deact/deact/source/commvault/commvaulttest"
	"github.com/deact/deact/state"
	"github.com/deact/deact/state/etcdtest"
	"google.golang.org/genproto/googleapis/rpc/code"
)

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// BenchmarkCommvaultRound: rounds over DEACT_COMMVAULT_ORGS organizations [10⁴] into a real etcd, with
// DEACT_COMMVAULT_CONCURRENCY detail requests at once [8], each answered after DEACT_COMMVAULT_LATENCY_MS [0]:
// the first round (every org new), an unchanged round, and a round with 1% of the orgs changed. Prints times,
// writes, requests and the most requests seen in flight. Run with -benchtime 1x (make bench-commvault).
func BenchmarkCommvaultRound(b *testing.B) {
	n := envInt("DEACT_COMMVAULT_ORGS", 10_000)
	conc := envInt("DEACT_COMMVAULT_CONCURRENCY", 8)
	latency := time.Duration(envInt("DEACT_COMMVAULT_LATENCY_MS", 0)) * time.Millisecond
	fake := commvaulttest.New()
	defer fake.Close()
	ids := fake.Populate(n)
	fake.Latency(latency)
	for b.Loop() {
		srv := etcdtest.Start(b)
		store := state.NewStore(etcdtest.Client(b, srv.Endpoints()))
		c, err := commvault.NewClient(commvault.ClientConfig{URL: fake.URL, User: fake.User, Password: fake.Password})
		if err != nil {
			b.Fatal(err)
		}
		p, err := commvault.NewPoller(commvault.PollerConfig{Client: c, Store: store, Concurrency: conc, Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			b.Fatal(err)
		}
		for _, pass := range []string{"first round", "unchanged round", "1% changed"} {
			if pass == "1% changed" {
				for i := 0; i < n; i += 100 {
					fake.Deactivate(ids[i], false, true, false)
				}
			}
			fake.ResetMaxInFlight()
			req0 := fake.Requests()
			st, err := p.Round(context.Background())
			if err != nil {
				b.Fatal(err)
			}
			fmt.Printf("commvault %-16s %d organizations, concurrency %d, %v per detail request: %v (reading %v), %d written, %d unchanged, %d requests, at most %d in flight\n",
				pass+":", st.Listed, conc, latency, st.Duration.Round(time.Millisecond), st.ListDuration.Round(time.Millisecond),
				st.Written, st.Unchanged, fake.Requests()-req0, fake.MaxInFlight())
			if fake.MaxInFlight() > int64(conc) {
				b.Errorf("%d detail requests in flight, more than the concurrency %d", fake.MaxInFlight(), conc)
			}
			if pass == "unchanged round" {
				b.ReportMetric(st.Duration.Seconds(), "round-s")
			}
		}
	}
}

// BenchmarkCommvaultPropagation: on a local cluster of 3 gateways whose admin node polls a Commvault of
// DEACT_COMMVAULT_PROP_ORGS organizations [1000] every DEACT_COMMVAULT_INTERVAL_MS [250], the time from a change
// in Commvault (disableBackup on, then off) to every gateway answering accordingly for that org's backups, over
// DEACT_COMMVAULT_ITERATIONS changes [60]. Bounded by the interval plus one round; prints p50/p99/max.
func BenchmarkCommvaultPropagation(b *testing.B) {
	n := envInt("DEACT_COMMVAULT_PROP_ORGS", 1000)
	interval := time.Duration(envInt("DEACT_COMMVAULT_INTERVAL_MS", 250)) * time.Millisecond
	iters := envInt("DEACT_COMMVAULT_ITERATIONS", 60)
	fake := commvaulttest.New()
	defer fake.Close()
	ids := fake.Populate(n)
	org := ids[n/2]
	cc := startCluster(b, fake, daemon.CommvaultConfig{SyncInterval: interval})
	backup := action(org, "backup")
	start := time.Now()
	for answer(b, cc.gws[0], action(ids[0], "backup")) != code.Code_OK || fake.ListRequests() < 2 {
		if time.Since(start) > 5*time.Minute {
			b.Fatal("the first round did not finish")
		}
		time.Sleep(20 * time.Millisecond)
	}
	for b.Loop() {
		var lat []time.Duration
		missed := 0
		for i := range iters {
			want := code.Code_PERMISSION_DENIED
			t0 := time.Now()
			if i%2 == 0 {
				fake.Deactivate(org, false, true, false)
			} else {
				fake.Activate(org)
				want = code.Code_OK
			}
			var wg sync.WaitGroup
			per := make([]time.Duration, len(cc.gws))
			for g, gw := range cc.gws {
				wg.Go(func() {
					for time.Since(t0) < 10*interval+10*time.Second {
						if answer(b, gw, backup) == want {
							per[g] = time.Since(t0)
							return
						}
						time.Sleep(500 * time.Microsecond)
					}
					per[g] = -1
				})
			}
			wg.Wait()
			if slices.Contains(per, -1) {
				missed++
				continue
			}
			lat = append(lat, slices.Max(per))
		}
		slices.Sort(lat)
		pct := func(p int) time.Duration {
			if len(lat) == 0 {
				return 0
			}
			return lat[min(len(lat)-1, max((len(lat)*p+99)/100-1, 0))].Round(100 * time.Microsecond)
		}
		fmt.Printf("commvault change → every one of 3 gateways (%d organizations, interval %v): p50 %v p99 %v max %v over %d changes, %d missed\n",
			n, interval, pct(50), pct(99), pct(100), len(lat), missed)
		if len(lat) > 0 {
			b.ReportMetric(pct(50).Seconds()*1000, "p50-ms")
			b.ReportMetric(pct(99).Seconds()*1000, "p99-ms")
		}
		if missed > 0 {
			b.Errorf("%d changes were not seen on every gateway", missed)
		}
	}
}
