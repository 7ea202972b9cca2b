package source_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"

	"github.com/deact/deact/source"
)

// TestParallel: every item runs when nothing fails; the first error is returned and stops the rest; a canceled
// context is its error. No more than n run at once.
func TestParallel(t *testing.T) {
	boom := errors.New("boom")
	items := make([]int, 100)
	for i := range items {
		items[i] = i
	}
	cases := []struct {
		name    string
		cancel  bool
		failAt  int // -1: none
		want    error
		runsAll bool
		atOnce  int
	}{
		{"all succeed", false, -1, nil, true, 4},
		{"one fails", false, 10, boom, false, 4},
		{"canceled", true, -1, context.Canceled, false, 4},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			if tc.cancel {
				cancel()
			}
			var ran, running, most atomic.Int64
			err := source.Parallel(ctx, tc.atOnce, items, func(ctx context.Context, i int) error {
				n := running.Add(1)
				defer running.Add(-1)
				for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
				}
				ran.Add(1)
				if i == tc.failAt {
					return boom
				}
				return nil
			})
			if !errors.Is(err, tc.want) || (tc.want == nil && err != nil) {
				t.Fatalf("err %v, want %v", err, tc.want)
			}
			if tc.runsAll != (ran.Load() == int64(len(items))) {
				t.Errorf("ran %d of %d items", ran.Load(), len(items))
			}
			if most.Load() > int64(tc.atOnce) {
				t.Errorf("%d at once, at most %d allowed", most.Load(), tc.atOnce)
			}
		})
	}
}
