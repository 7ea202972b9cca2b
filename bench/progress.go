package bench

import (
	"fmt"
	"io"
	"time"
)

// progress writes a line a second about a running schedule, and a last one when stop closes: time, answers,
// rate over the last second, latency of the last complete second, and what extra says.
func progress(w io.Writer, name string, total time.Duration, live *liveStatus, extra func() string, stop <-chan struct{}) {
	var last int64
	var lastAt time.Time
	line := func(final bool) {
		startNs := live.started.Load()
		if startNs == 0 {
			return
		}
		now := time.Now()
		elapsed := now.Sub(time.Unix(0, startNs))
		n := live.completed.Load()
		idx := int(elapsed/live.tl.interval) - 1
		if final {
			// The run is over and every worker has merged what it recorded: show its last second.
			idx = int((min(elapsed, total) - 1) / live.tl.interval)
		}
		p := live.tl.window(idx)
		lat := "p50 -        p99 -        "
		if p.Count > 0 {
			lat = fmt.Sprintf("p50 %-8s p99 %-8s", ms(p.P50Ms), ms(p.P99Ms))
		}
		rate := 0.0
		if since := now.Sub(lastAt); !lastAt.IsZero() && since > 0 {
			rate = float64(n-last) / since.Seconds()
		} else if elapsed > 0 {
			rate = float64(n) / elapsed.Seconds()
		}
		done := ""
		if final {
			done = " (done)"
		}
		fmt.Fprintf(w, "%-24s %5.1fs/%s %9d done %8.0f/s  %s %s%s\n", name, elapsed.Seconds(), total, n, rate, lat, extra(), done)
		last, lastAt = n, now
	}
	// Tick a little after each second: workers merge a second's latencies into the timeline when they record
	// their first answer of the next one.
	select {
	case <-stop:
		line(true)
		return
	case <-time.After(150 * time.Millisecond):
	}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-stop:
			line(true)
			return
		case <-tick.C:
			line(false)
		}
	}
}
