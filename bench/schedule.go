package bench

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// clock is the time source of the load scheduler; tests replace it with a fake one to check pacing and the
// coordinated-omission correction without depending on the machine's timing.
type clock interface {
	Now() time.Time
	// SleepUntil returns when t has come (at once if it has), or false when ctx ended first.
	SleepUntil(ctx context.Context, t time.Time) bool
}

type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }

func (realClock) SleepUntil(ctx context.Context, t time.Time) bool {
	d := time.Until(t)
	if d <= 0 {
		return ctx.Err() == nil
	}
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-tm.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// execFunc sends one request for worker w, whose intended send time is intended, and reports when it was
// actually sent and when its answer came (both from the scheduler's clock).
type execFunc func(ctx context.Context, w int, intended time.Time) (sent, done time.Time)

// schedule is one load pattern.
//
//   - Closed loop (Rate 0): Workers send back to back, each waiting for its answer; latency is the service time.
//   - Open loop (Rate > 0): request k is due at start + k/Rate whatever happened before; up to Workers requests
//     are in flight. Latency is measured from the due time, so a stall of the server (or of the generator) shows
//     up in every request it delayed, not only in the one that was slow: the coordinated-omission correction.
//
// A run ends at Duration, after MaxRequests (if > 0), or when ctx ends, whichever comes first; requests in
// flight then are waited for.
type schedule struct {
	Rate        float64
	Workers     int
	Duration    time.Duration
	MaxRequests int64
	Interval    time.Duration // timeline window [1s]
	clock       clock         // [real time]
}

// scheduleResult is what the scheduler measured.
type scheduleResult struct {
	Start     time.Time
	Elapsed   time.Duration // first due time to last answer
	Completed int64
	Corrected *hdrhistogram.Histogram // µs, from the intended send time
	Service   *hdrhistogram.Histogram // µs, from the actual send time
	Timeline  []Window
}

// liveStatus lets a progress reporter read a running schedule: requests completed and the timeline. Make it
// with newLiveStatus before the run starts; it is safe to read while the run goes on.
type liveStatus struct {
	completed atomic.Int64
	started   atomic.Int64 // unix nanoseconds of the run's start, 0 before
	tl        *timeline
}

func newLiveStatus() *liveStatus { return &liveStatus{tl: newTimeline(time.Second)} }

// run drives exec according to s. status, when not nil (and of the same interval), is filled as requests
// complete.
func (s schedule) run(ctx context.Context, exec execFunc, status *liveStatus) scheduleResult {
	if s.clock == nil {
		s.clock = realClock{}
	}
	if s.Interval <= 0 {
		s.Interval = time.Second
	}
	workers := max(s.Workers, 1)
	if status == nil || status.tl.interval != s.Interval {
		status = &liveStatus{tl: newTimeline(s.Interval)}
	}
	tl := status.tl
	start := s.clock.Now()
	end := start.Add(s.Duration)
	status.started.Store(start.UnixNano())

	recs := make([]*recorder, workers)
	var next atomic.Int64
	var wg sync.WaitGroup
	for w := range workers {
		recs[w] = newRecorder(tl)
		wg.Add(1)
		go func() {
			defer wg.Done()
			rec := recs[w]
			defer rec.flush()
			for ctx.Err() == nil {
				k := next.Add(1) - 1
				if s.MaxRequests > 0 && k >= s.MaxRequests {
					return
				}
				intended := s.clock.Now()
				if s.Rate > 0 {
					intended = start.Add(time.Duration(float64(k) * float64(time.Second) / s.Rate))
					if !intended.Before(end) || !s.clock.SleepUntil(ctx, intended) {
						return
					}
				} else if !intended.Before(end) {
					return
				}
				sent, done := exec(ctx, w, intended)
				if s.Rate <= 0 {
					intended = sent
				}
				rec.record(done.Sub(intended), done.Sub(sent), done.Sub(start))
				status.completed.Add(1)
			}
		}()
	}
	wg.Wait()
	corrected, service := mergeRecorders(recs)
	// The timeline stops at the end of the run: answers that straggle in after it count in the totals, but a
	// window of stragglers alone would plot as noise.
	windows := tl.result()
	if n := int((s.Duration + s.Interval - 1) / s.Interval); len(windows) > n {
		windows = windows[:n]
	}
	return scheduleResult{
		Start: start, Elapsed: s.clock.Now().Sub(start), Completed: corrected.TotalCount(),
		Corrected: corrected, Service: service, Timeline: windows,
	}
}
