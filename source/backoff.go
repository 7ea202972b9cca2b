package source

import "github.com/deact/deact/state"

// Backoff is an exponential backoff with jitter (state.Backoff), the sources' pause after a failure.
type Backoff = state.Backoff
