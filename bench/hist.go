package bench

import (
	"sync"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Latencies are recorded in microseconds, from 1 µs to 60 s, with 3 significant digits in the totals and 2 in
// the one-second windows of the timeline (a window only feeds a plot and the progress line).
const (
	histMaxMicros = 60_000_000
	totalDigits   = 3
	windowDigits  = 2
)

func newTotalHist() *hdrhistogram.Histogram { return hdrhistogram.New(1, histMaxMicros, totalDigits) }

func newWindowHist() *hdrhistogram.Histogram { return hdrhistogram.New(1, histMaxMicros, windowDigits) }

// micros converts a latency to whole microseconds, rounded, clamped to the histogram's range (a latency of 0
// records as 1 µs, one above 60 s as 60 s).
func micros(d time.Duration) int64 {
	us := (d + 500*time.Nanosecond) / time.Microsecond
	return min(max(int64(us), 1), histMaxMicros)
}

// Percentiles summarize a latency distribution, in milliseconds.
type Percentiles struct {
	Count  int64   `json:"count"`
	MeanMs float64 `json:"meanMs"`
	P50Ms  float64 `json:"p50Ms"`
	P90Ms  float64 `json:"p90Ms"`
	P99Ms  float64 `json:"p99Ms"`
	P999Ms float64 `json:"p999Ms"`
	MaxMs  float64 `json:"maxMs"`
}

func percentilesOf(h *hdrhistogram.Histogram) Percentiles {
	if h == nil || h.TotalCount() == 0 {
		return Percentiles{}
	}
	ms := func(us int64) float64 { return float64(us) / 1000 }
	return Percentiles{
		Count:  h.TotalCount(),
		MeanMs: h.Mean() / 1000,
		P50Ms:  ms(h.ValueAtQuantile(50)),
		P90Ms:  ms(h.ValueAtQuantile(90)),
		P99Ms:  ms(h.ValueAtQuantile(99)),
		P999Ms: ms(h.ValueAtQuantile(99.9)),
		MaxMs:  ms(h.Max()),
	}
}

// Window is one interval of a run's timeline: the requests that completed in it and their latencies.
type Window struct {
	AtS    float64 `json:"atS"` // start of the window, seconds since the run started
	Count  int64   `json:"count"`
	P50Ms  float64 `json:"p50Ms"`
	P99Ms  float64 `json:"p99Ms"`
	P999Ms float64 `json:"p999Ms"`
	MaxMs  float64 `json:"maxMs"`
}

// timeline collects per-window histograms from many recorders. Recorders merge a window into it once, when
// they move past it (or at the end), so the lock is taken about once per worker per window, never per request.
type timeline struct {
	interval time.Duration
	mu       sync.Mutex
	windows  []*hdrhistogram.Histogram
}

func newTimeline(interval time.Duration) *timeline { return &timeline{interval: interval} }

func (t *timeline) merge(idx int, h *hdrhistogram.Histogram) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for len(t.windows) <= idx {
		t.windows = append(t.windows, nil)
	}
	if t.windows[idx] == nil {
		t.windows[idx] = newWindowHist()
	}
	t.windows[idx].Merge(h)
}

// window returns the percentiles of window idx as merged so far.
func (t *timeline) window(idx int) Percentiles {
	t.mu.Lock()
	defer t.mu.Unlock()
	if idx < 0 || idx >= len(t.windows) {
		return Percentiles{}
	}
	return percentilesOf(t.windows[idx])
}

// result returns every window, empty ones included, up to the last one that holds a request.
func (t *timeline) result() []Window {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]Window, len(t.windows))
	for i, h := range t.windows {
		p := percentilesOf(h)
		out[i] = Window{AtS: (time.Duration(i) * t.interval).Seconds(), Count: p.Count, P50Ms: p.P50Ms, P99Ms: p.P99Ms, P999Ms: p.P999Ms, MaxMs: p.MaxMs}
	}
	return out
}

// recorder is one worker's record of latencies. It is owned by one goroutine; only its merges into the
// timeline are shared.
type recorder struct {
	// corrected is measured from the intended send time (open loop) or the send time (closed loop).
	corrected *hdrhistogram.Histogram
	// service is measured from the actual send: what a load generator that ignores coordinated omission reports.
	service *hdrhistogram.Histogram
	tl      *timeline
	cur     *hdrhistogram.Histogram
	curIdx  int
}

func newRecorder(tl *timeline) *recorder {
	return &recorder{corrected: newTotalHist(), service: newTotalHist(), tl: tl, cur: newWindowHist()}
}

// record adds one request: corrected and service latency, and when it completed (since the run started).
func (r *recorder) record(corrected, service, at time.Duration) {
	_ = r.corrected.RecordValue(micros(corrected))
	_ = r.service.RecordValue(micros(service))
	idx := max(int(at/r.tl.interval), 0)
	if idx != r.curIdx && r.cur.TotalCount() > 0 {
		r.tl.merge(r.curIdx, r.cur)
		r.cur.Reset()
	}
	r.curIdx = idx
	_ = r.cur.RecordValue(micros(corrected))
}

// flush merges the current window into the timeline.
func (r *recorder) flush() {
	if r.cur.TotalCount() > 0 {
		r.tl.merge(r.curIdx, r.cur)
		r.cur.Reset()
	}
}

// mergeRecorders sums the recorders' totals.
func mergeRecorders(rs []*recorder) (corrected, service *hdrhistogram.Histogram) {
	corrected, service = newTotalHist(), newTotalHist()
	for _, r := range rs {
		corrected.Merge(r.corrected)
		service.Merge(r.service)
	}
	return corrected, service
}

// sampleSet is a small set of raw latencies (propagation, admin writes) kept whole for exact percentiles and
// CDF plots. Safe for concurrent use.
type sampleSet struct {
	mu   sync.Mutex
	hist *hdrhistogram.Histogram
	raw  []time.Duration
	cap  int
}

func newSampleSet(keep int) *sampleSet { return &sampleSet{hist: newTotalHist(), cap: keep} }

func (s *sampleSet) add(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	_ = s.hist.RecordValue(micros(d))
	if len(s.raw) < s.cap {
		s.raw = append(s.raw, d)
	}
}

func (s *sampleSet) percentiles() Percentiles {
	s.mu.Lock()
	defer s.mu.Unlock()
	return percentilesOf(s.hist)
}

func (s *sampleSet) samples() []time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]time.Duration(nil), s.raw...)
}
