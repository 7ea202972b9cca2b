package bench

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/deact/deact/internal/launch"
	"github.com/deact/deact/state"
)

// Where RunCheck runs the servers it starts (deact and the null baseline).
const (
	// ServersProcess runs each server in a child process of its own: deactd (built, or CheckConfig.Deactd)
	// and the null server (this executable's null-server subcommand). The servers then have their own Go
	// runtime and GC, their CPU is measured per process, and --pin can give them a core of their own.
	ServersProcess = "process"
	// ServersInProcess runs the null server in the load generator's process. deact always runs in child
	// processes when deactbench starts it (deactbench drives deactd from outside), so this mode suits a deact
	// given by address only.
	ServersInProcess = "inprocess"
)

// NullServerCommand is the subcommand of deactbench that runs the null server (RunNullServer); in process
// mode RunCheck starts CheckConfig.NullServerCmd (this executable by default) with it.
const NullServerCommand = "null-server"

// RunNullServer is the null-server subcommand: it serves a NullServer on --addr (gRPC) and --http-addr
// (loopback; port 0 picks one), prints one line "null-server grpc=ADDR http=ADDR" on stdout, and serves until
// SIGTERM or SIGINT, ctx's end, or the end of stdin (the parent closed it or died). It returns the exit status.
func RunNullServer(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("deactbench "+NullServerCommand, flag.ContinueOnError)
	fs.SetOutput(stderr)
	grpcAddr := fs.String("addr", "127.0.0.1:0", "ext_authz gRPC listen address (loopback)")
	httpAddr := fs.String("http-addr", "127.0.0.1:0", "HTTP check listen address (loopback)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "deactbench %s: unexpected arguments %q\n", NullServerCommand, fs.Args())
		return 2
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	ns, err := startNullServer(*grpcAddr, *httpAddr)
	if err != nil {
		fmt.Fprintln(stderr, "deactbench null-server:", err)
		return 1
	}
	defer ns.Close()
	if _, err := fmt.Fprintf(stdout, "%s grpc=%s http=%s\n", NullServerCommand, ns.GRPCAddr, ns.HTTPAddr); err != nil {
		return 1
	}
	untilStdinCloses(ctx, stdin)
	return 0
}

// buildDeactd builds ./cmd/deactd of the current module into dir (go build; run from the deact module).
func buildDeactd(ctx context.Context, dir string, progress io.Writer, what string) (string, time.Duration, error) {
	start := time.Now()
	bin := filepath.Join(dir, "deactd")
	if progress != nil {
		fmt.Fprintf(progress, "%s: building deactd (go build ./cmd/deactd)\n", what)
	}
	bctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(bctx, "go", "build", "-o", bin, "github.com/deact/deact/cmd/deactd").CombinedOutput()
	if err != nil {
		return "", 0, fmt.Errorf("build deactd (run from the deact module, or pass --deactd): %v: %s", err, out)
	}
	return bin, time.Since(start), nil
}

// childProc is a child process deactbench started: its stderr goes to a log file, its stdout is scanned.
type childProc struct {
	name   string
	cmd    *exec.Cmd
	stdin  io.WriteCloser // nil unless asked for
	log    string
	exited chan error // the result of Wait, once
	once   sync.Once
}

func (c *childProc) pid() int { return c.cmd.Process.Pid }

// stop closes the child's stdin, sends SIGTERM and waits (10 s at most, then SIGKILL). Safe to call again.
func (c *childProc) stop() {
	c.once.Do(func() {
		if c.stdin != nil {
			_ = c.stdin.Close()
		}
		stopChild(c.cmd, c.exited)
	})
}

// stopChild sends SIGTERM and waits (10 s at most, then SIGKILL).
func stopChild(cmd *exec.Cmd, exited chan error) {
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(10 * time.Second):
		_ = cmd.Process.Kill()
		<-exited
	}
}

// lineWriter hands each complete line written to it to scan until scan returns true, then closes found and
// discards the rest. Written by exec's one copying goroutine.
type lineWriter struct {
	scan  func(line string) bool
	buf   []byte
	found chan struct{}
	done  bool
}

func (w *lineWriter) Write(p []byte) (int, error) {
	if w.done {
		return len(p), nil
	}
	w.buf = append(w.buf, p...)
	for !w.done {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			break
		}
		line := string(w.buf[:i])
		w.buf = w.buf[i+1:]
		if w.scan(strings.TrimSpace(line)) {
			w.done = true
			w.buf = nil
			close(w.found)
		}
	}
	if len(w.buf) > 64<<10 {
		w.buf = w.buf[:0] // no line is that long: drop it
	}
	return len(p), nil
}

// startChildProc starts argv (extra environment env) with stderr appended to logPath and waits until scan,
// given its stdout line by line, returns true: the child printed what the caller needs. On an error (the child
// exited, printed nothing within wait, or ctx ended) the child is stopped.
func startChildProc(ctx context.Context, name string, argv, env []string, logPath string, withStdin bool, wait time.Duration,
	scan func(line string) bool) (*childProc, error) {
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer logf.Close() // the child has its own copy
	cmd := exec.Command(argv[0], argv[1:]...)
	if len(env) > 0 {
		cmd.Env = append(os.Environ(), env...)
	}
	cmd.Stderr = logf
	lw := &lineWriter{scan: scan, found: make(chan struct{})}
	cmd.Stdout = lw
	c := &childProc{name: name, cmd: cmd, log: logPath, exited: make(chan error, 1)}
	if withStdin {
		if c.stdin, err = cmd.StdinPipe(); err != nil {
			return nil, err
		}
	}
	if err := cmd.Start(); err != nil {
		if c.stdin != nil {
			_ = c.stdin.Close()
		}
		return nil, fmt.Errorf("start %s: %w", argv[0], err)
	}
	go func() { c.exited <- cmd.Wait() }()
	timer := time.NewTimer(wait)
	defer timer.Stop()
	select {
	case <-lw.found:
		return c, nil
	case err := <-c.exited:
		c.exited <- err
		c.stop()
		return nil, fmt.Errorf("%s exited before it listened: %v (log %s)", name, err, logPath)
	case <-timer.C:
		c.stop()
		return nil, fmt.Errorf("%s printed no addresses within %s (log %s)", name, wait, logPath)
	case <-ctx.Done():
		c.stop()
		return nil, ctx.Err()
	}
}

// deactdNode is a deactd child deactbench starts: on free loopback ports, data in dir/NODE-data, stdout (the
// banner) and stderr (its log) appended to dir/NODE.log.
type deactdNode struct {
	bin, dir     string
	nodeID, role string   // --node-id, --role [all]
	etcd         []string // --etcd-endpoints; empty embeds an etcd
	token        string   // bootstrap admin token, through the environment (never the command line)
	env          []string // added to the environment, e.g. GOMAXPROCS=1
	log          string   // log file [dir/NODE.log]
	args         []string // more flags
}

// startDeactd starts n through the launcher and returns once it is ready (its ready file is there). Its Stop
// sends SIGTERM and kills it after 10 s.
func startDeactd(ctx context.Context, n deactdNode) (*launch.Process, error) {
	if n.role == "" {
		n.role = "all"
	}
	if n.log == "" {
		n.log = filepath.Join(n.dir, n.nodeID+".log")
	}
	argv := []string{n.bin, "--data-dir", filepath.Join(n.dir, n.nodeID+"-data"), "--node-id", n.nodeID, "--role", n.role,
		"--authz-addr", "127.0.0.1:0", "--http-check-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0",
		"--etcd-log-level", "fatal", "--log-level", "warn"}
	if len(n.etcd) > 0 {
		argv = append(argv, "--etcd-endpoints", strings.Join(n.etcd, ","))
	}
	argv = append(argv, n.args...)
	env := slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, "DEACT_ADMIN_TOKEN=") })
	if n.token != "" {
		env = append(env, "DEACT_ADMIN_TOKEN="+n.token)
	}
	logf, err := os.OpenFile(n.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	p, err := launch.Start(ctx, launch.Options{
		Argv: argv, Env: append(env, n.env...), ReadyFile: filepath.Join(n.dir, n.nodeID+".ready.json"),
		Stdout: logf, Stderr: logf, Timeout: 2 * time.Minute, StopTimeout: 10 * time.Second,
	})
	if err != nil {
		logf.Close() // the child has exited
		return nil, fmt.Errorf("deactd %s: %w (log %s)", n.nodeID, err, n.log)
	}
	go func() { <-p.Done(); logf.Close() }() // its stderr is copied through this process until it exits
	return p, nil
}

// StartDaemonProcess starts one deactd as a child process (role all, embedded etcd in dir, free loopback
// ports, log in dir/bench.log): bin, or ./cmd/deactd built into dir when bin is empty. env is added to its
// environment (e.g. GOMAXPROCS=1). It returns once deactd is ready; Close stops the child.
func StartDaemonProcess(ctx context.Context, dir, bin string, env []string, progress io.Writer) (*Deployment, error) {
	if bin == "" {
		var err error
		if bin, _, err = buildDeactd(ctx, dir, progress, "check"); err != nil {
			return nil, err
		}
	}
	token, err := state.NewToken()
	if err != nil {
		return nil, err
	}
	p, err := startDeactd(ctx, deactdNode{bin: bin, dir: dir, nodeID: "bench", token: token, env: env})
	if err != nil {
		return nil, err
	}
	r := p.Ready
	return &Deployment{
		Desc:       fmt.Sprintf("1 deactd child process (pid %d, role all, embedded etcd)", p.PID()),
		AuthzAddrs: []string{r.AuthzAddr}, HTTPAddrs: []string{r.CheckAddr},
		AdminURL: r.URL(r.AdminAddr), AdminToken: token, ReadyURLs: []string{r.URL(r.AdminAddr) + "/readyz"},
		PID: p.PID(), Children: []int{p.PID()}, close: func() { _ = p.Stop() },
	}, nil
}

// nullProcess is a null server in a child process.
type nullProcess struct {
	*childProc
	grpcAddr, httpAddr string
}

// startNullProcess runs self (deactbench, or os.Executable() when empty) with the null-server subcommand.
func startNullProcess(ctx context.Context, self, logPath string, env []string) (*nullProcess, error) {
	if self == "" {
		var err error
		if self, err = os.Executable(); err != nil {
			return nil, fmt.Errorf("null server: %w", err)
		}
	}
	n := &nullProcess{}
	scan := func(l string) bool {
		rest, ok := strings.CutPrefix(l, NullServerCommand+" ")
		if !ok {
			return false
		}
		for f := range strings.FieldsSeq(rest) {
			if v, ok := strings.CutPrefix(f, "grpc="); ok {
				n.grpcAddr = v
			} else if v, ok := strings.CutPrefix(f, "http="); ok {
				n.httpAddr = v
			}
		}
		return true
	}
	c, err := startChildProc(ctx, "null server", []string{self, NullServerCommand, "--addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0"},
		env, logPath, true, 30*time.Second, scan)
	if err != nil {
		return nil, err
	}
	n.childProc = c
	if n.grpcAddr == "" || n.httpAddr == "" {
		c.stop()
		return nil, fmt.Errorf("null server printed no addresses (log %s)", logPath)
	}
	return n, nil
}

// untilStdinCloses returns when ctx ends or stdin (nil: never) reaches its end: a subcommand child serves until
// its parent closes the pipe, which also happens when the parent dies.
func untilStdinCloses(ctx context.Context, stdin io.Reader) {
	eof := make(chan struct{})
	if stdin != nil {
		go func() { _, _ = io.Copy(io.Discard, stdin); close(eof) }()
	}
	select {
	case <-ctx.Done():
	case <-eof:
	}
}
