//go:build !linux

package daemon

import (
	"syscall"
	"time"
)

// deferAccept has no equivalent here: silent connections are accepted and left to the limiter.
func deferAccept(time.Duration) func(network, address string, c syscall.RawConn) error { return nil }
