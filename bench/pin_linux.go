package bench

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// pinned is a process to pin to the servers' CPU.
type pinned struct {
	name string
	pid  int
}

// pinCPUs pins the load generator (every thread of this process, and GOMAXPROCS 1) to the first CPU this
// process may use and every thread of each server process to the second, so that each has a core of its own
// (the servers run one at a time). It returns what it did and how to undo it for this process.
func pinCPUs(servers []pinned) (desc string, undo func(), _ error) {
	var all unix.CPUSet
	if err := unix.SchedGetaffinity(0, &all); err != nil {
		return "", nil, fmt.Errorf("pin: %w", err)
	}
	var cpus []int
	for i := range 1024 {
		if all.IsSet(i) {
			cpus = append(cpus, i)
		}
	}
	if len(cpus) < 2 {
		return "", nil, fmt.Errorf("pin: this process may use %d CPU; pinning needs 2", len(cpus))
	}
	var gen, srv unix.CPUSet
	gen.Set(cpus[0])
	srv.Set(cpus[1])
	var parts []string
	for _, s := range servers {
		n, err := pinThreads(s.pid, &srv)
		if err != nil {
			return "", nil, fmt.Errorf("pin %s: %w", s.name, err)
		}
		parts = append(parts, fmt.Sprintf("%s (pid %d, %d threads)", s.name, s.pid, n))
	}
	n, err := pinThreads(os.Getpid(), &gen)
	if err != nil {
		_, _ = pinThreads(os.Getpid(), &all)
		return "", nil, fmt.Errorf("pin the load generator: %w", err)
	}
	prev := runtime.GOMAXPROCS(1)
	undo = func() {
		_, _ = pinThreads(os.Getpid(), &all)
		runtime.GOMAXPROCS(prev)
	}
	desc = fmt.Sprintf("load generator (pid %d, %d threads, GOMAXPROCS 1) on CPU %d; %s on CPU %d (started with GOMAXPROCS=1)",
		os.Getpid(), n, cpus[0], strings.Join(parts, ", "), cpus[1])
	return desc, undo, nil
}

// pinThreads sets the CPU affinity of every thread of process pid, again while new threads appear (a thread
// inherits the affinity of the one that creates it, so once every thread is pinned the process stays pinned).
// It returns the number of threads pinned.
func pinThreads(pid int, set *unix.CPUSet) (int, error) {
	done := map[int]bool{}
	for range 20 {
		ents, err := os.ReadDir("/proc/" + strconv.Itoa(pid) + "/task")
		if err != nil {
			return len(done), err
		}
		fresh := 0
		for _, e := range ents {
			tid, err := strconv.Atoi(e.Name())
			if err != nil || done[tid] {
				continue
			}
			if err := unix.SchedSetaffinity(tid, set); err != nil && err != unix.ESRCH {
				return len(done), fmt.Errorf("thread %d: %w", tid, err)
			}
			done[tid] = true
			fresh++
		}
		if fresh == 0 {
			return len(done), nil
		}
	}
	return len(done), nil
}
