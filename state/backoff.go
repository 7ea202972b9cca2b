package state

// Backoff and jitter spread retries and periods out, so that the nodes of a fleet that failed, or started,
// together do not retry, or list, together.

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

// jitter is the period d spread over [0.75 d, 1.25 d): on average d, never in step across a fleet.
func jitter(d time.Duration) time.Duration {
	return d*3/4 + rand.N(d/2+1)
}
