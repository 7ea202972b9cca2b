// Package procstat reads what Linux's /proc says of a process: the CPU time it used, its memory, the states of
// its threads. Benchmarks measure child processes with it, and the launcher knows from it that a child it
// froze has stopped.
package procstat

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// fields are the fields of a /proc stat file after "pid (comm)": comm may hold spaces and parentheses, so they
// start after the last ')'. fields[0] is the state, fields[11] and fields[12] utime and stime.
func fields(path string) ([]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return nil, fmt.Errorf("%s: no command name", path)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return nil, fmt.Errorf("%s: %d fields", path, len(f))
	}
	return f, nil
}

// CPU is the CPU time (user + system, every thread) process pid has used. Its resolution is the kernel's clock
// tick (USER_HZ, 100 a second on Linux).
func CPU(pid int) (time.Duration, error) {
	f, err := fields(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, fmt.Errorf("cpu of pid %d: %w", pid, err)
	}
	return time.Duration(utime+stime) * 10 * time.Millisecond, nil
}

// Memory is the resident set (VmRSS) and its peak (VmHWM) of process pid, in bytes.
func Memory(pid int) (rss, hwm int64, _ error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, fmt.Errorf("memory of pid %d: %w", pid, err)
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		name, v, ok := strings.Cut(line, ":")
		if !ok || (name != "VmRSS" && name != "VmHWM") {
			continue
		}
		kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		if name == "VmRSS" {
			rss = kb << 10
		} else {
			hwm = kb << 10
		}
	}
	return rss, hwm, nil
}

// ThreadStates is the state letter of every thread of process pid ("SSRS", "TTTT" once stopped); a thread
// that ends while it is read is left out.
func ThreadStates(pid int) (string, error) {
	dir := fmt.Sprintf("/proc/%d/task", pid)
	tasks, err := os.ReadDir(dir)
	if err != nil {
		return "", err
	}
	var out []byte
	for _, task := range tasks {
		f, err := fields(filepath.Join(dir, task.Name(), "stat"))
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return "", err
		}
		out = append(out, f[0][0])
	}
	return string(out), nil
}
