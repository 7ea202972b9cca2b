package procstat

import (
	"os"
	"strings"
	"testing"
)

// TestSelf: this process has used some CPU, holds some memory with a peak at least as high, and its threads
// (a Go process has several) are running or sleeping, none stopped; a process that does not exist is an error.
func TestSelf(t *testing.T) {
	pid := os.Getpid()
	for start := 0; start < 1e7; start++ { // burn a clock tick or two
		_ = start * start
	}
	if d, err := CPU(pid); err != nil || d < 0 {
		t.Errorf("CPU = %v, %v", d, err)
	}
	rss, hwm, err := Memory(pid)
	if err != nil || rss <= 0 || hwm < rss {
		t.Errorf("Memory = %d, %d, %v", rss, hwm, err)
	}
	states, err := ThreadStates(pid)
	if err != nil || len(states) < 2 || strings.ContainsAny(states, "tT") {
		t.Errorf("ThreadStates = %q, %v", states, err)
	}
	if _, err := CPU(1 << 30); err == nil {
		t.Error("CPU of a pid that does not exist: no error")
	}
}
