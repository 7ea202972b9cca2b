package admin_test

import (
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkConfirmedDeactivations measures durable deactivations that every one of 3 gateway nodes confirmed,
// through the ZITADEL REST API, from 64 concurrent clients on loopback, against the embedded etcd (fsync on).
// It reports deactivations per second and the p99 of the confirmation wait; it asserts no timing.
func BenchmarkConfirmedDeactivations(b *testing.B) {
	const clients = 64
	e := newEnv(b, envOpts{nodes: 3})
	e.http1.Transport.(*http.Transport).MaxIdleConnsPerHost = clients
	var next, unconfirmed atomic.Int64
	waits := make([][]float64, clients)
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1)
				if i > int64(b.N) {
					return
				}
				req, _ := http.NewRequest("POST", e.url+"/management/v1/orgs/me/_deactivate", strings.NewReader("{}"))
				req.Header.Set("Authorization", "Bearer "+bootstrapToken)
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("x-zitadel-orgid", fmt.Sprintf("bench-%d-%d", b.N, i))
				resp, err := e.http1.Do(req)
				if err != nil {
					b.Error(err)
					return
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					b.Errorf("status %d", resp.StatusCode)
					return
				}
				if resp.Header.Get("X-Deact-Confirmed") != "3/3" {
					unconfirmed.Add(1)
				}
				ms, _ := strconv.ParseFloat(resp.Header.Get("X-Deact-Confirm-Wait-Ms"), 64)
				waits[c] = append(waits[c], ms)
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	all := slices.Concat(waits...)
	slices.Sort(all)
	if len(all) > 0 {
		b.ReportMetric(all[min(len(all)-1, len(all)*99/100)], "p99-confirm-ms")
		b.ReportMetric(all[len(all)/2], "p50-confirm-ms")
	}
	b.ReportMetric(float64(len(all))/elapsed.Seconds(), "confirmed-deactivations/s")
	b.ReportMetric(float64(unconfirmed.Load()), "unconfirmed")
}
