//go:build unix

package daemon

import (
	"net"
	"syscall"
)

// raiseFileLimit raises the soft limit on open files to the hard limit and returns the limit in force. (Go
// raises it at start too; this says what was obtained, and covers programs that lowered it.)
func raiseFileLimit() (soft, hard uint64, err error) {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return 0, 0, err
	}
	if rl.Cur < rl.Max {
		want := rl
		want.Cur = want.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &want); err == nil {
			rl = want
		}
	}
	return uint64(rl.Cur), uint64(rl.Max), nil
}

// peek reports whether the peer of c sent bytes not read yet, or closed the connection: a connection whose
// server has not got round to reading it is not quiet.
func peek(c net.Conn) (waiting, closed bool) {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return false, false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false, false
	}
	var b [1]byte
	_ = rc.Control(func(fd uintptr) {
		n, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		waiting, closed = err == nil && n > 0, err == nil && n == 0
	})
	return waiting, closed
}
