package bench

import (
	"fmt"
	"io"
	"time"
)

// progress writes a line a second about a running schedule until stop: time, answers, rate over the last
// second, latency of the last complete second, and what extra says.
func progress(w io.Writer, name string, total time.Duration, live *liveStatus, extra func() string, stop <-chan struct{}) {
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
		fmt.Fprintf(w, "%-24s %5.1fs/%s %9d done %8.0f/s  p50 %7.3fms  p99 %8.3fms  %s\n",
			name, elapsed.Seconds(), total, n, float64(n-last), p.P50Ms, p.P99Ms, extra())
		last = n
	}
}
