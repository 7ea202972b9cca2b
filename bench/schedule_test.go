package bench

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"
)

// fakeClock is a clock that only moves when told: sleeping jumps to the wake-up time, and a fake request
// advances it by its service time. Safe for concurrent use.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) SleepUntil(ctx context.Context, t time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if t.After(c.now) {
		c.now = t
	}
	return ctx.Err() == nil
}

func (c *fakeClock) advance(d time.Duration) time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	return c.now
}

// TestCoordinatedOmissionCorrection: one worker, 1000 requests/s for 2 s, each taking 100 µs except one that
// stalls for 100 ms. The ~100 requests that were due during the stall were sent late; measured from their
// intended send time they show the stall, measured from the actual send (what a naive generator reports) only
// the one slow request does.
func TestCoordinatedOmissionCorrection(t *testing.T) {
	clk := newFakeClock()
	var n int
	exec := func(_ context.Context, _ int, _ time.Time) (sent, done time.Time) {
		sent = clk.Now()
		service := 100 * time.Microsecond
		if n == 500 {
			service = 100 * time.Millisecond
		}
		n++
		return sent, clk.advance(service)
	}
	res := schedule{Rate: 1000, Workers: 1, Duration: 2 * time.Second, clock: clk}.run(context.Background(), exec, nil)

	if res.Completed != 2000 {
		t.Fatalf("completed %d requests, want 2000", res.Completed)
	}
	corrected, service := percentilesOf(res.Corrected), percentilesOf(res.Service)
	t.Logf("corrected: %+v", corrected)
	t.Logf("service:   %+v", service)
	if corrected.P99Ms < 50 {
		t.Errorf("corrected p99 %.3f ms: the 100 ms stall should dominate the top 1%%", corrected.P99Ms)
	}
	if corrected.P90Ms > 1 {
		t.Errorf("corrected p90 %.3f ms: only ~5%% of the requests were delayed", corrected.P90Ms)
	}
	if service.P99Ms > 1 {
		t.Errorf("service p99 %.3f ms: only one request was slow", service.P99Ms)
	}
	for _, p := range []Percentiles{corrected, service} {
		if p.MaxMs < 99 || p.MaxMs > 101 {
			t.Errorf("max %.3f ms, want the 100 ms stall", p.MaxMs)
		}
	}
	// The stall is in the second window of the timeline (it starts 0.5 s in and ends before 0.6 s).
	if len(res.Timeline) != 2 {
		t.Fatalf("timeline has %d windows, want 2", len(res.Timeline))
	}
	if w0, w1 := res.Timeline[0], res.Timeline[1]; w0.P99Ms < 50 || w1.P99Ms > 1 || w0.Count+w1.Count != 2000 {
		t.Errorf("timeline %+v: want the stall in window 0 and 2000 requests in all", res.Timeline)
	}
}

// TestOpenLoopPacing: the open-loop scheduler issues exactly rate × duration requests, request k intended at
// start + k/rate, whatever the number of workers, and stops at MaxRequests when that comes first.
func TestOpenLoopPacing(t *testing.T) {
	for _, tc := range []struct {
		name    string
		rate    float64
		workers int
		dur     time.Duration
		max     int64
		want    int
	}{
		{"one worker", 1000, 1, time.Second, 0, 1000},
		{"eight workers", 250, 8, 2 * time.Second, 0, 500},
		{"fractional interval", 3000, 4, 100 * time.Millisecond, 0, 300},
		{"bounded by count", 1000, 4, time.Second, 123, 123},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clk := newFakeClock()
			start := clk.Now()
			var mu sync.Mutex
			var intended []time.Time
			exec := func(_ context.Context, _ int, at time.Time) (sent, done time.Time) {
				mu.Lock()
				intended = append(intended, at)
				mu.Unlock()
				sent = clk.Now()
				return sent, clk.advance(10 * time.Microsecond)
			}
			res := schedule{Rate: tc.rate, Workers: tc.workers, Duration: tc.dur, MaxRequests: tc.max, clock: clk}.run(context.Background(), exec, nil)
			if len(intended) != tc.want || res.Completed != int64(tc.want) {
				t.Fatalf("issued %d, completed %d, want %d", len(intended), res.Completed, tc.want)
			}
			slices.SortFunc(intended, func(a, b time.Time) int { return a.Compare(b) })
			for k, at := range intended {
				want := start.Add(time.Duration(float64(k) * float64(time.Second) / tc.rate))
				if !at.Equal(want) {
					t.Fatalf("request %d intended at +%v, want +%v", k, at.Sub(start), want.Sub(start))
				}
			}
		})
	}
}

// TestClosedLoop: closed-loop workers send back to back until the duration ends; latency is the service time.
func TestClosedLoop(t *testing.T) {
	clk := newFakeClock()
	exec := func(_ context.Context, _ int, at time.Time) (sent, done time.Time) {
		return at, clk.advance(time.Millisecond)
	}
	res := schedule{Workers: 1, Duration: time.Second, clock: clk}.run(context.Background(), exec, nil)
	if res.Completed != 1000 {
		t.Fatalf("completed %d, want 1000 one-millisecond requests in a second", res.Completed)
	}
	if p := percentilesOf(res.Corrected); p.P50Ms != 1 || p.MaxMs != 1 {
		t.Fatalf("latency %+v, want 1 ms throughout", p)
	}
}
