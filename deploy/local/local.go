// Package local runs a whole deact deployment on loopback: an etcd cluster (embedded members), gateway nodes
// and an admin node, each a real deactd with its own listeners, etcd client and log file — in this process
// (daemon.Start) by default, or as deactd child processes (Config.Exec) started through internal/launch, which
// reads each child's --ready-file. cmd/deactlocal starts one from the command line; end-to-end tests use it for
// multi-node runs.
package local

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/deact/deact/daemon"
	"github.com/deact/deact/internal/launch"
	"github.com/deact/deact/state"
	"github.com/deact/deact/state/etcdserver"
)

// Config describes the deployment. Zero values take the defaults in brackets.
type Config struct {
	Dir      string // data and logs; required
	Members  int    // etcd members [3]
	Gateways int    // gateway nodes [3]
	// AdminToken for the admin node [generated].
	AdminToken string
	// Daemon, when set, adjusts each in-process node's configuration before it starts (e.g. staleness policy).
	Daemon func(*daemon.Config)
	// Exec, when set, is a deactd binary: the nodes run as its child processes (SIGTERM to stop), each logging
	// to its own file and writing its ready file (<Dir>/<node>.ready.json), instead of in this process. Daemon
	// does not apply then.
	Exec string
	// AdminArgs are extra deactd flags for the admin node when it runs as a child process (Exec), e.g. a
	// source's --zitadel-url.
	AdminArgs []string
	// LogLevel of the nodes' log files [info].
	LogLevel slog.Level
}

// Cluster is a running deployment. Stop it with Close.
type Cluster struct {
	Etcd       *etcdserver.Cluster
	Gateways   []*Node
	Admin      *Node
	AdminToken string
	Dir        string

	cfg   Config
	files []*os.File
}

// Node is one running deactd.
type Node struct {
	ID            string
	AuthzAddr     string // ext_authz gRPC (gateways)
	HTTPCheckAddr string // HTTP check (gateways)
	AdminAddr     string // admin API, /readyz, /metrics
	LogFile       string
	PID           int // the child process with Config.Exec, 0 in process
	stop          func() error
	once          sync.Once
}

// Stop stops the node (SIGTERM semantics: drain, leave the registry) and waits for it.
func (n *Node) Stop() error {
	var err error
	n.once.Do(func() { err = n.stop() })
	return err
}

// Start starts etcd, then the gateways and the admin node, and returns when all listen.
func Start(cfg Config) (_ *Cluster, err error) {
	if cfg.Dir == "" {
		return nil, errors.New("local: Dir is required")
	}
	if cfg.Members <= 0 {
		cfg.Members = 3
	}
	if cfg.Gateways <= 0 {
		cfg.Gateways = 3
	}
	if cfg.AdminToken == "" {
		if cfg.AdminToken, err = state.NewToken(); err != nil {
			return nil, err
		}
	}
	c := &Cluster{AdminToken: cfg.AdminToken, Dir: cfg.Dir, cfg: cfg}
	defer func() {
		if err != nil {
			c.Close()
		}
	}()
	if cfg.Exec != "" && cfg.Daemon != nil {
		return nil, errors.New("local: Daemon adjusts in-process nodes only; it cannot apply with Exec")
	}
	if c.Etcd, err = etcdserver.StartCluster(filepath.Join(cfg.Dir, "etcd"), cfg.Members, "error"); err != nil {
		return nil, err
	}
	for i := range cfg.Gateways {
		n, err := c.startNode(fmt.Sprintf("gw%d", i+1), daemon.GatewayNode)
		if err != nil {
			return nil, err
		}
		c.Gateways = append(c.Gateways, n)
	}
	if c.Admin, err = c.startNode("admin", daemon.AdminNode); err != nil {
		return nil, err
	}
	for _, n := range c.Gateways {
		if err := waitReady(n); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// waitReady waits until a gateway's /readyz says 200: synced, registered and not fenced, so that it decides.
func waitReady(n *Node) error {
	hc := http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(60 * time.Second)
	for {
		if r, err := hc.Get("http://" + n.AdminAddr + "/readyz"); err == nil {
			r.Body.Close()
			if r.StatusCode == http.StatusOK {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready within 60s; see %s", n.ID, n.LogFile)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (c *Cluster) startNode(id string, role daemon.NodeRole) (*Node, error) {
	logPath := filepath.Join(c.Dir, id+".log")
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	c.files = append(c.files, f)
	if c.cfg.Exec != "" {
		return c.execNode(id, role, f)
	}
	dc := daemon.Config{
		DataDir: filepath.Join(c.Dir, id), NodeID: id, Role: role,
		EtcdEndpoints: c.Etcd.Endpoints(), AdminToken: c.AdminToken,
		AuthzAddr: "127.0.0.1:0", HTTPCheckAddr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0",
		Logger: slog.New(slog.NewTextHandler(f, &slog.HandlerOptions{Level: c.cfg.LogLevel})).With("node", id),
		Out:    io.Discard,
	}
	if c.cfg.Daemon != nil {
		c.cfg.Daemon(&dc)
	}
	ctx, cancel := context.WithCancel(context.Background())
	d, err := daemon.Start(ctx, dc)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("%s: %w", id, err)
	}
	return &Node{
		ID: id, AuthzAddr: d.AuthzAddr, HTTPCheckAddr: d.HTTPCheckAddr, AdminAddr: d.AdminAddr, LogFile: logPath,
		stop: func() error { cancel(); return d.Wait() },
	}, nil
}

// execNode runs a node as a deactd child process through the launcher, which reads its addresses from the
// ready file. The admin token goes to the admin node only, through its environment: a command line is
// readable by every user (ps).
func (c *Cluster) execNode(id string, role daemon.NodeRole, logFile *os.File) (*Node, error) {
	argv := []string{c.cfg.Exec,
		"--data-dir", filepath.Join(c.Dir, id), "--node-id", id, "--role", string(role),
		"--etcd-endpoints", strings.Join(c.Etcd.Endpoints(), ","),
		"--authz-addr", "127.0.0.1:0", "--http-check-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0",
		"--log-level", strings.ToLower(c.cfg.LogLevel.String())}
	if role == daemon.AdminNode {
		argv = append(argv, c.cfg.AdminArgs...)
	}
	env := slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, "DEACT_ADMIN_TOKEN") })
	if role != daemon.GatewayNode {
		env = append(env, "DEACT_ADMIN_TOKEN="+c.AdminToken)
	}
	p, err := launch.Start(context.Background(), launch.Options{
		Argv: argv, Env: env, ReadyFile: filepath.Join(c.Dir, id+".ready.json"),
		Stdout: logFile, Stderr: logFile, Timeout: 60 * time.Second,
	})
	if err != nil {
		return nil, fmt.Errorf("%s: %w; see %s", id, err, logFile.Name())
	}
	return &Node{
		ID: id, AuthzAddr: p.Ready.AuthzAddr, HTTPCheckAddr: p.Ready.CheckAddr, AdminAddr: p.Ready.AdminAddr,
		LogFile: logFile.Name(), PID: p.PID(), stop: p.Stop,
	}, nil
}

// AdminURL is the admin node's base URL.
func (c *Cluster) AdminURL() string { return "http://" + c.Admin.AdminAddr }

// AuthzAddrs are the gateways' ext_authz gRPC addresses.
func (c *Cluster) AuthzAddrs() []string {
	var out []string
	for _, g := range c.Gateways {
		out = append(out, g.AuthzAddr)
	}
	return out
}

// Describe writes the addresses of every part, one per line.
func (c *Cluster) Describe(w io.Writer) {
	fmt.Fprintf(w, "etcd members:  %s\n", strings.Join(c.Etcd.Endpoints(), " "))
	for _, g := range c.Gateways {
		fmt.Fprintf(w, "gateway %-5s authz %s  check http://%s/check  admin http://%s  log %s\n", g.ID, g.AuthzAddr, g.HTTPCheckAddr, g.AdminAddr, g.LogFile)
	}
	fmt.Fprintf(w, "admin         %s  log %s\n", c.AdminURL(), c.Admin.LogFile)
	fmt.Fprintf(w, "admin token   %s\n", c.AdminToken)
}

// Close stops the nodes, then etcd. Data stays in Dir.
func (c *Cluster) Close() {
	if c.Admin != nil {
		_ = c.Admin.Stop()
	}
	var wg sync.WaitGroup
	for _, g := range c.Gateways {
		wg.Add(1)
		go func() { defer wg.Done(); _ = g.Stop() }()
	}
	wg.Wait()
	if c.Etcd != nil {
		c.Etcd.Close()
	}
	for _, f := range c.files {
		f.Close()
	}
}
