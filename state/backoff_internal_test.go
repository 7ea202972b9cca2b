package state

import (
	"testing"
	"time"
)

func TestBackoff(t *testing.T) {
	b := Backoff{Min: 100 * time.Millisecond, Max: time.Second}
	for _, tc := range []struct {
		failures int
		lo, hi   time.Duration
	}{{0, 50 * time.Millisecond, 100 * time.Millisecond}, {1, 50 * time.Millisecond, 100 * time.Millisecond},
		{3, 200 * time.Millisecond, 400 * time.Millisecond}, {20, 500 * time.Millisecond, time.Second}} {
		for range 50 {
			if d := b.Delay(tc.failures); d < tc.lo || d > tc.hi {
				t.Fatalf("Delay(%d) = %s, want in [%s, %s]", tc.failures, d, tc.lo, tc.hi)
			}
		}
	}
	if (Backoff{}).Delay(5) != 0 {
		t.Fatal("zero backoff waits")
	}
}

func TestJitter(t *testing.T) {
	for range 200 {
		if d := jitter(time.Second); d < 750*time.Millisecond || d > 1250*time.Millisecond {
			t.Fatalf("jitter(1s) = %s, want in [750ms, 1.25s]", d)
		}
	}
}
