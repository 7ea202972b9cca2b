//go:build !unix

package daemon

import "net"

// raiseFileLimit reports a conservative limit where there is no RLIMIT_NOFILE.
func raiseFileLimit() (soft, hard uint64, err error) { return 8192, 8192, nil }

// peek cannot look into the socket here: every connection not read since the sweep passed counts as quiet.
func peek(net.Conn) (waiting, closed bool) { return false, false }
