package bench

import (
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/deact/deact/internal/procstat"
)

// processCPU is the CPU time this process has used (user and system), or 0 if the OS does not say.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// machineBusy is the CPU time every process on the machine has used (/proc/stat, all but idle and iowait), or
// -1 if it cannot be read. Its resolution is the kernel's clock tick (USER_HZ, 100 per second on Linux).
func machineBusy() time.Duration {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return -1
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 6 || f[0] != "cpu" {
		return -1
	}
	var busy int64
	for i, v := range f[1:] {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return -1
		}
		if i == 3 || i == 4 || i >= 8 { // idle, iowait; guest times are already in user
			continue
		}
		busy += n
	}
	return time.Duration(busy) * 10 * time.Millisecond
}

// procCPU is the CPU time (user + system, every thread) process pid has used; -1 when it cannot be read.
func procCPU(pid int) time.Duration {
	d, err := procstat.CPU(pid)
	if err != nil {
		return -1
	}
	return d
}
