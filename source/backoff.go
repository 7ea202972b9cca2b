package source

import (
	"context"
	"math/rand/v2"
	"time"
)

// Backoff is an exponential backoff with jitter: the n-th consecutive failure waits a random time between half
// and all of Min·2ⁿ⁻¹, capped at Max, so candidates and retries spread out. The zero value waits nothing.
type Backoff struct {
	Min, Max time.Duration
}

// Delay is the pause after the failures-th consecutive failure; after none (a clean end) it is as after one, so a
// loop that ends at once does not spin.
func (b Backoff) Delay(failures int) time.Duration {
	if b.Min <= 0 {
		return 0
	}
	limit := b.Min
	for i := 1; i < failures && limit < b.Max; i++ {
		limit *= 2
	}
	if b.Max > 0 && limit > b.Max {
		limit = b.Max
	}
	return limit/2 + rand.N(limit/2+1)
}

// Sleep waits Delay(failures) and reports false if ctx ended first.
func (b Backoff) Sleep(ctx context.Context, failures int) bool {
	d := b.Delay(failures)
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
