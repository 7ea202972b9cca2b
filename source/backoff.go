package source

import "github.com/deact/deact/internal/backoff"

// Backoff is an exponential backoff with jitter (backoff.Backoff), the sources' pause after a failure.
type Backoff = backoff.Backoff
