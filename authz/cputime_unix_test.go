//go:build unix

package authz

import (
	"syscall"
	"time"
)

// processCPU is the CPU time (user and system) the process has used. On a shared machine it counts the work of a
// benchmark loop, not the time other processes held the cores, which wall time includes.
func processCPU() (time.Duration, bool) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0, false
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), true
}
