package admin_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/deact/deact/admin"
	"github.com/deact/deact/internal/wait"
	"github.com/deact/deact/state"
	"github.com/prometheus/client_golang/prometheus"
)

// TestLockoutFlood: an unauthenticated client floods the admin API with bad tokens from the admin's own address
// (every request here comes from 127.0.0.1) while the real admin works: every request of the admin succeeds, a
// token never used before on this instance too, and the flood costs etcd a bounded number of reads, not one per
// request. (Not parallel: it counts etcd's process-wide range counter.)
func TestLockoutFlood(t *testing.T) {
	const ttl = 200 * time.Millisecond // short, so that the admin's cached record expires during the flood
	e := newEnv(t, envOpts{config: func(c *admin.Config) {
		c.AuthFailureBurst, c.AuthFailureRate, c.TokenCacheTTL = 3, 1, ttl
	}})
	fresh := e.token("fresh-token-never-used-0123", state.Token{Name: "fresh", AllOrgs: true, Role: state.RoleAdmin})
	adm := bearer(bootstrapToken)
	if r := e.do("GET", "/v1/orgs", "", adm); r.status != 200 {
		t.Fatalf("before the flood: %d %s", r.status, r.body)
	}
	rangesBefore := etcdRanges(t)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var flood, unexpected atomic.Int64
	var wg sync.WaitGroup
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 16}}
	defer client.CloseIdleConnections()
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ctx.Err() == nil; i++ {
				var secret string
				switch i % 4 {
				case 0:
					secret = "the-same-bad-token-again"
				case 1:
					secret = ""
				default:
					var b [16]byte
					_, _ = rand.Read(b[:])
					secret = fmt.Sprintf("bad-%d-%s", g, hex.EncodeToString(b[:]))
				}
				req, _ := http.NewRequestWithContext(ctx, "POST", e.url+"/management/v1/orgs/me/_deactivate", strings.NewReader("{}"))
				req.Header.Set("Content-Type", "application/json")
				if secret != "" {
					req.Header.Set("Authorization", "Bearer "+secret)
				}
				resp, err := client.Do(req)
				if err != nil {
					continue // the flood stops
				}
				resp.Body.Close()
				flood.Add(1)
				if resp.StatusCode != 401 && resp.StatusCode != 429 {
					unexpected.Add(1)
				}
			}
		}()
	}

	start := time.Now()
	wait.Eventually(t, "the flood under way", func() bool { return flood.Load() > 200 })
	const adminRequests = 30
	for i := range adminRequests {
		if r := e.do("POST", fmt.Sprintf("/v1/orgs/flood-%d/deactivate", i), "", adm); r.status != 200 {
			t.Errorf("admin write %d during the flood: %d %s", i, r.status, r.body)
		}
		if r := e.do("GET", "/v1/orgs", "", adm); r.status != 200 {
			t.Errorf("admin read %d during the flood: %d %s", i, r.status, r.body)
		}
		time.Sleep(ttl / 4) // let the admin's cache entry expire now and then
	}
	if r := e.do("GET", "/v1/orgs", "", bearer(fresh)); r.status != 200 {
		t.Errorf("a valid token never used before, during the flood: %d %s", r.status, r.body)
	}
	cancel()
	wg.Wait()
	elapsed := time.Since(start)

	if n := unexpected.Load(); n > 0 {
		t.Errorf("%d flood requests got neither 401 nor 429", n)
	}
	// etcd reads: at most the global lookup budget per second, one listing per cache TTL, and a few per admin
	// request (authentication, the write's read-modify-write).
	ranges := etcdRanges(t) - rangesBefore
	secs := elapsed.Seconds() + 1
	bound := 100*secs + secs/ttl.Seconds() + 1 + 10*(2*adminRequests+1)
	t.Logf("flood: %d requests in %v; etcd ranges: %.0f (bound %.0f)", flood.Load(), elapsed.Round(time.Millisecond), ranges, bound)
	if ranges > bound {
		t.Errorf("the flood cost etcd %.0f reads, more than %.0f", ranges, bound)
	}
}

// etcdRanges reads the embedded etcd's count of range requests (process-wide).
func etcdRanges(t *testing.T) float64 {
	t.Helper()
	mfs, err := prometheus.DefaultGatherer.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "etcd_mvcc_range_total" {
			var n float64
			for _, m := range mf.GetMetric() {
				n += m.GetCounter().GetValue()
			}
			return n
		}
	}
	t.Fatal("etcd_mvcc_range_total is not registered")
	return 0
}
