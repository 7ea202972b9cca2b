package bench

import (
	"fmt"
	"io"
	"time"
)

// progress writes a line a second about a running schedule until stop: time, answers, rate over the last
// second, latency of the last complete second, and what extra says.
func progress(w io.Writer, name string, total time.Duration, live *liveStatus, extra func() string, stop <-chan struct{}) {
	// Tick a little after each second: workers merge a second's latencies into the timeline when they record
	// their first answer of the next one.
	select {
	case <-stop:
		return
	case <-time.After(150 * time.Millisecond):
	}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var last int64
	for {
		select {
		case <-stop:
			return
		case <-tick.C:
		}
		startNs := live.started.Load()
		if startNs == 0 {
			continue
		}
		elapsed := time.Since(time.Unix(0, startNs))
		n := live.completed.Load()
		p := live.tl.window(int(elapsed/live.tl.interval) - 1)
		lat := "p50 -        p99 -        "
		if p.Count > 0 {
			lat = fmt.Sprintf("p50 %-8s p99 %-8s", ms(p.P50Ms), ms(p.P99Ms))
		}
		fmt.Fprintf(w, "%-24s %5.1fs/%s %9d done %8.0f/s  %s %s\n", name, elapsed.Seconds(), total, n, float64(n-last), lat, extra())
		last = n
	}
}
