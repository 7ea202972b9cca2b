//go:build linux

package daemon

import (
	"syscall"
	"time"
)

// deferAccept makes the kernel hand a connection to accept only once its first bytes arrived (TCP_DEFER_ACCEPT),
// for up to wait: a silent connection costs deactd no descriptor meanwhile, and one that is accepted has its
// request waiting, so it never looks quiet. Every client of deactd's listeners speaks first (HTTP, the HTTP/2
// preface, a TLS ClientHello); a connection still silent after wait is accepted as it is.
func deferAccept(wait time.Duration) func(network, address string, c syscall.RawConn) error {
	secs := max(1, int(wait/time.Second))
	return func(_, _ string, c syscall.RawConn) error {
		var serr error
		if err := c.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_DEFER_ACCEPT, secs)
		}); err != nil {
			return err
		}
		return serr
	}
}
