package launch

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/deact/deact/internal/procstat"
)

// Options says how to start a deactd child process.
type Options struct {
	// Argv is the command: the deactd binary and its flags, possibly behind a wrapper that execs it (e.g.
	// sh -c 'ulimit -n 256 && exec "$0" "$@"' deactd ...). Start appends --ready-file ReadyFile. Secrets go in
	// Env, never here: every user can read a command line.
	Argv []string
	// Env is the child's environment, as exec.Cmd.Env: nil inherits this process's; to add to it, append to
	// os.Environ() (e.g. DEACT_ADMIN_TOKEN=..., GOMAXPROCS=1).
	Env []string
	// ReadyFile is where the child writes its ready file; required. A file there already is removed first.
	ReadyFile string
	// Stdout receives the child's stdout (its banner) and Stderr its stderr (its log) [both discarded]. The
	// last lines of stderr are kept either way, for the error when the child dies before it is ready.
	Stdout, Stderr io.Writer
	// Timeout bounds the wait for the ready file [2m]; past it the child is killed.
	Timeout time.Duration
	// StopTimeout bounds Stop's wait after SIGTERM before it kills the child [30s].
	StopTimeout time.Duration
}

// Process is a running deactd child. Ready is what its ready file said.
type Process struct {
	Ready Ready
	Name  string // Argv[0], for messages

	cmd      *exec.Cmd
	opts     Options
	tail     *tail
	exited   chan struct{} // closed once the child has exited and err is set
	err      error
	stopOnce sync.Once
	stopErr  error
}

// Start runs the child and waits until its ready file appears (it then listens on every address in it and
// is ready), the child exits, Timeout passes or ctx ends; in the last three cases the child is gone when Start
// returns, and when it exited or timed out the error carries the end of its stderr. The child runs until Stop
// or Kill, not bound to ctx.
func Start(ctx context.Context, o Options) (*Process, error) {
	p, err := Spawn(o)
	if err != nil {
		return nil, err
	}
	if err := p.WaitReady(ctx); err != nil {
		return nil, err
	}
	return p, nil
}

// Spawn runs the child and returns at once; WaitReady then waits for its ready file. Start is both.
func Spawn(o Options) (*Process, error) {
	if len(o.Argv) == 0 || o.ReadyFile == "" {
		return nil, errors.New("launch: Argv and ReadyFile are required")
	}
	if o.Timeout <= 0 {
		o.Timeout = 2 * time.Minute
	}
	if o.StopTimeout <= 0 {
		o.StopTimeout = 30 * time.Second
	}
	if err := os.Remove(o.ReadyFile); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("launch: stale ready file: %w", err)
	}
	argv := append(append([]string{}, o.Argv...), "--ready-file", o.ReadyFile)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = o.Env
	p := &Process{Name: o.Argv[0], cmd: cmd, tail: &tail{max: 8 << 10}, opts: o, exited: make(chan struct{})}
	cmd.Stdout = o.Stdout
	if o.Stderr != nil {
		cmd.Stderr = io.MultiWriter(o.Stderr, p.tail)
	} else {
		cmd.Stderr = p.tail
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", p.Name, err)
	}
	go func() { p.err = cmd.Wait(); close(p.exited) }()
	return p, nil
}

// WaitReady waits until the child's ready file appears and sets p.Ready; when the child exits first, Timeout
// passes or ctx ends, it kills the child (unless it exited) and returns an error with the end of its stderr.
func (p *Process) WaitReady(ctx context.Context) error {
	deadline := time.NewTimer(p.opts.Timeout)
	defer deadline.Stop()
	poll := time.NewTicker(10 * time.Millisecond)
	defer poll.Stop()
	for {
		r, err := ReadReady(p.opts.ReadyFile)
		switch {
		case err == nil && r.PID != p.PID():
			_ = p.Kill()
			return fmt.Errorf("%s: the ready file %s was written by pid %d, not by the child (pid %d): does a wrapper fork instead of exec?",
				p.Name, p.opts.ReadyFile, r.PID, p.PID())
		case err == nil:
			p.Ready = r
			return nil
		case !errors.Is(err, fs.ErrNotExist):
			_ = p.Kill()
			return fmt.Errorf("%s: %w", p.Name, err)
		}
		select {
		case <-p.exited:
			return fmt.Errorf("%s exited before it was ready (%v)%s", p.Name, p.err, p.tail.report())
		case <-deadline.C:
			_ = p.Kill()
			return fmt.Errorf("%s was not ready within %v%s", p.Name, p.opts.Timeout, p.tail.report())
		case <-ctx.Done():
			_ = p.Kill()
			return ctx.Err()
		case <-poll.C:
		}
	}
}

// PID is the child's process ID.
func (p *Process) PID() int { return p.cmd.Process.Pid }

// Signal sends sig to the child.
func (p *Process) Signal(sig os.Signal) error { return p.cmd.Process.Signal(sig) }

// Freeze stops the child with SIGSTOP and returns once the kernel shows every one of its threads stopped
// (/proc/PID/stat state T), so that what is sent to it afterwards waits in its sockets. kill(2) returns before
// a multi-threaded process has stopped: a request sent right after it can still be answered. Thaw resumes it.
func (p *Process) Freeze(timeout time.Duration) error {
	if err := p.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		return err
	}
	deadline := time.Now().Add(timeout)
	for {
		stopped, err := p.stopped()
		if err != nil || stopped {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not stopped %v after SIGSTOP", p.Name, timeout)
		}
		time.Sleep(time.Millisecond)
	}
}

// Thaw resumes a frozen child (SIGCONT).
func (p *Process) Thaw() error { return p.cmd.Process.Signal(syscall.SIGCONT) }

// stopped reports whether every thread of the child is stopped.
func (p *Process) stopped() (bool, error) {
	states, err := procstat.ThreadStates(p.PID())
	if err != nil {
		return false, fmt.Errorf("%s: %w", p.Name, err)
	}
	return states != "" && strings.Trim(states, "tT") == "", nil
}

// Done is closed when the child has exited; Wait then returns at once.
func (p *Process) Done() <-chan struct{} { return p.exited }

// Wait waits for the child to exit and returns how it ended (nil for exit status 0).
func (p *Process) Wait() error {
	<-p.exited
	return p.err
}

// Stop sends SIGTERM (deactd drains and leaves the registry) and waits; past the stop timeout it kills the
// child and says so. Safe to call again and after Kill: later calls return the first one's result.
func (p *Process) Stop() error {
	p.stopOnce.Do(func() {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		t := time.NewTimer(p.opts.StopTimeout)
		defer t.Stop()
		select {
		case <-p.exited:
			p.stopErr = p.err
		case <-t.C:
			_ = p.cmd.Process.Kill()
			<-p.exited
			p.stopErr = fmt.Errorf("%s did not stop within %v of SIGTERM; killed", p.Name, p.opts.StopTimeout)
		}
	})
	return p.stopErr
}

// Kill kills the child (SIGKILL) and waits for it; it returns how it ended.
func (p *Process) Kill() error {
	_ = p.cmd.Process.Kill()
	return p.Wait()
}

// StderrTail is the end of what the child wrote to stderr so far.
func (p *Process) StderrTail() string { return p.tail.String() }

// tail keeps the last max bytes written to it.
type tail struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (t *tail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if over := len(t.b) - t.max; over > 0 {
		t.b = append(t.b[:0], t.b[over:]...)
	}
	return len(p), nil
}

func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.b)
}

// report is the tail for an error message: its last lines, or nothing.
func (t *tail) report() string {
	s := strings.TrimSpace(t.String())
	if s == "" {
		return "; it wrote nothing to stderr"
	}
	lines := strings.Split(s, "\n")
	if len(lines) > 20 {
		lines = lines[len(lines)-20:]
	}
	return "; the end of its stderr:\n" + strings.Join(lines, "\n")
}
