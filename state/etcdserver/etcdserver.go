// Package etcdserver runs etcd members inside the current process through go.etcd.io/etcd/server/v3/embed.
// deactd uses it for its default single-node store; tests and the local cluster use it for real etcd on loopback.
package etcdserver

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// Config describes one member. Zero ports are replaced by free loopback ports before the member starts, so the
// advertised URLs are always the real ones.
type Config struct {
	Name      string // member name; "default" when empty
	Dir       string // data directory (required)
	ClientURL string // e.g. http://127.0.0.1:2379; http://127.0.0.1:0 picks a free port; unix:///abs/path is a socket
	PeerURL   string // e.g. http://127.0.0.1:2380; http://127.0.0.1:0 picks a free port
	// NoPeerListener starts a single member that listens for no peers: nothing can speak raft to it or ask it
	// about the cluster. PeerURL is then only advertised (a placeholder no one dials).
	NoPeerListener bool

	// InitialCluster is "name=peerURL,..." for a multi-member cluster; empty means a single member.
	InitialCluster string
	// UnsafeNoFsync trades durability for speed; only for benchmarks that load millions of records.
	UnsafeNoFsync bool
	// LogLevel for etcd's own logger ("error" when empty: etcd is chatty).
	LogLevel string
	// StartTimeout bounds the wait for the member to become ready (30 s when zero).
	StartTimeout time.Duration
	// TLS for clients (ClientURL must then be https): the member's certificate and key, and, with
	// ClientCA, client certificates signed by that CA are required (mTLS).
	CertFile, KeyFile, ClientCA string
}

// Server is one running member. Close stops it and releases its data directory; its data stays on disk.
type Server struct {
	etcd      *embed.Etcd
	cfg       Config
	clientURL string
	closeOnce sync.Once
}

// Start starts a member and waits until it serves clients (for a cluster member: until the cluster has a quorum).
func Start(cfg Config) (*Server, error) {
	if cfg.Dir == "" {
		return nil, errors.New("etcdserver: Dir is required")
	}
	if cfg.Name == "" {
		cfg.Name = "default"
	}
	if cfg.ClientURL == "" {
		cfg.ClientURL = "http://127.0.0.1:0"
	}
	if cfg.PeerURL == "" {
		cfg.PeerURL = "http://127.0.0.1:0"
	}
	if cfg.LogLevel == "" {
		cfg.LogLevel = "error"
	}
	if cfg.StartTimeout == 0 {
		cfg.StartTimeout = 30 * time.Second
	}
	if cfg.NoPeerListener && cfg.InitialCluster != "" {
		return nil, errors.New("etcdserver: NoPeerListener is for a single member")
	}
	var err error
	if cfg.ClientURL, err = FreeURL(cfg.ClientURL); err != nil {
		return nil, err
	}
	if cfg.PeerURL, err = FreeURL(cfg.PeerURL); err != nil {
		return nil, err
	}
	cu, err := url.Parse(cfg.ClientURL)
	if err != nil {
		return nil, fmt.Errorf("etcdserver: client URL: %w", err)
	}
	pu, err := url.Parse(cfg.PeerURL)
	if err != nil {
		return nil, fmt.Errorf("etcdserver: peer URL: %w", err)
	}

	ec := embed.NewConfig()
	ec.Name = cfg.Name
	ec.Dir = filepath.Clean(cfg.Dir)
	ec.ListenClientUrls = []url.URL{*cu}
	ec.AdvertiseClientUrls = []url.URL{*cu}
	ec.ListenPeerUrls = []url.URL{*pu}
	if cfg.NoPeerListener {
		ec.ListenPeerUrls = nil
	}
	ec.AdvertisePeerUrls = []url.URL{*pu}
	if cfg.InitialCluster != "" {
		ec.InitialCluster = cfg.InitialCluster
		ec.InitialClusterToken = "deact"
	} else {
		ec.InitialCluster = ec.InitialClusterFromName(cfg.Name)
	}
	lg, err := newLogger(cfg.LogLevel)
	if err != nil {
		return nil, err
	}
	ec.ZapLoggerBuilder = embed.NewZapLoggerBuilder(lg)
	if cfg.CertFile != "" {
		ec.ClientTLSInfo = transport.TLSInfo{CertFile: cfg.CertFile, KeyFile: cfg.KeyFile, TrustedCAFile: cfg.ClientCA, ClientCertAuth: cfg.ClientCA != ""}
	}
	ec.UnsafeNoFsync = cfg.UnsafeNoFsync
	// Keep an hour of history: enough for a replica that was briefly away to resume its watch, and bounded
	// (every node report and audit record is a revision). A replica further behind relists.
	ec.AutoCompactionMode = embed.CompactorModePeriodic
	ec.AutoCompactionRetention = "1h"
	// Replicas confirm they are current through progress notifications; keep the server's own period short.
	ec.WatchProgressNotifyInterval = 5 * time.Second
	// Bulk imports of a million records need room; etcd's 2 GiB default quota is the same.
	ec.QuotaBackendBytes = 8 << 30
	// The server rejects gRPC requests above this size; imports batch below it.
	ec.MaxRequestBytes = 4 << 20

	e, err := embed.StartEtcd(ec)
	if err != nil {
		return nil, fmt.Errorf("etcdserver: start %s: %w", cfg.Name, err)
	}
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		e.Close()
		return nil, fmt.Errorf("etcdserver: %s failed while starting: %w", cfg.Name, err)
	case <-time.After(cfg.StartTimeout):
		e.Server.Stop()
		e.Close()
		return nil, fmt.Errorf("etcdserver: %s not ready after %s", cfg.Name, cfg.StartTimeout)
	}
	if cu.Scheme == "unix" || cu.Scheme == "unixs" {
		// The socket is made with the umask's permissions; only this user may connect. (The directory holding it
		// should be private too: etcd creates the socket before this chmod.)
		if err := os.Chmod(cu.Host+cu.Path, 0o600); err != nil {
			e.Close()
			return nil, fmt.Errorf("etcdserver: %s socket: %w", cfg.Name, err)
		}
	}
	return &Server{etcd: e, cfg: cfg, clientURL: cfg.ClientURL}, nil
}

// Endpoints are the client URLs to give to clientv3.
func (s *Server) Endpoints() []string { return []string{s.clientURL} }

// Config returns the configuration the member runs with, real ports filled in; Start(s.Config()) restarts it.
func (s *Server) Config() Config { return s.cfg }

// Err reports a fatal error of the running member.
func (s *Server) Err() <-chan error { return s.etcd.Err() }

// Close stops the member gracefully; committed data stays in its directory.
func (s *Server) Close() {
	s.closeOnce.Do(s.etcd.Close)
}

// Cluster is a set of members started together on loopback.
type Cluster struct {
	Members []*Server
	configs []Config
}

// StartCluster starts n members with data under dir and waits for all of them.
func StartCluster(dir string, n int, logLevel string) (*Cluster, error) {
	if n < 1 {
		return nil, errors.New("etcdserver: a cluster needs at least one member")
	}
	cfgs := make([]Config, n)
	var initial []string
	for i := range cfgs {
		cu, err := FreeURL("http://127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		pu, err := FreeURL("http://127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		name := fmt.Sprintf("m%d", i)
		cfgs[i] = Config{Name: name, Dir: filepath.Join(dir, name), ClientURL: cu, PeerURL: pu, LogLevel: logLevel}
		initial = append(initial, name+"="+pu)
	}
	c := &Cluster{Members: make([]*Server, n), configs: cfgs}
	errc := make(chan error, n)
	for i := range cfgs {
		cfgs[i].InitialCluster = strings.Join(initial, ",")
		go func(i int) {
			s, err := Start(cfgs[i])
			c.Members[i] = s
			errc <- err
		}(i)
	}
	var errs []error
	for range cfgs {
		errs = append(errs, <-errc)
	}
	if err := errors.Join(errs...); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// Endpoints lists every member's client URL.
func (c *Cluster) Endpoints() []string {
	var eps []string
	for _, cfg := range c.configs {
		eps = append(eps, cfg.ClientURL)
	}
	return eps
}

// Stop stops member i; Restart starts it again with its data.
func (c *Cluster) Stop(i int) {
	if c.Members[i] != nil {
		c.Members[i].Close()
		c.Members[i] = nil
	}
}

// Restart starts a stopped member i again from its data directory.
func (c *Cluster) Restart(i int) error {
	if c.Members[i] != nil {
		return nil
	}
	cfg := c.configs[i]
	s, err := Start(cfg)
	if err != nil {
		return err
	}
	c.Members[i] = s
	return nil
}

// Close stops every member.
func (c *Cluster) Close() {
	for i := range c.Members {
		c.Stop(i)
	}
}

// FreeURL replaces a zero port in u by a free loopback port. The port is free when this returns; another process
// could take it before etcd binds it, which on a test machine is rare enough to accept.
func FreeURL(u string) (string, error) {
	pu, err := url.Parse(u)
	if err != nil {
		return "", fmt.Errorf("etcdserver: bad URL %q: %w", u, err)
	}
	if pu.Port() != "0" {
		return u, nil
	}
	l, err := net.Listen("tcp", net.JoinHostPort(pu.Hostname(), "0"))
	if err != nil {
		return "", fmt.Errorf("etcdserver: pick a free port: %w", err)
	}
	addr := l.Addr().String()
	l.Close()
	pu.Host = addr
	return pu.String(), nil
}

// newLogger is etcd's JSON logger to stderr at level, minus the errors every embedded member logs when it is
// closed ("use of closed network connection", "server closed"): they say nothing and alarm operators.
func newLogger(level string) (*zap.Logger, error) {
	lv, err := zapcore.ParseLevel(level)
	if err != nil {
		return nil, fmt.Errorf("etcdserver: log level: %w", err)
	}
	zc := zap.NewProductionConfig()
	zc.Level = zap.NewAtomicLevelAt(lv)
	zc.OutputPaths, zc.ErrorOutputPaths = []string{"stderr"}, []string{"stderr"}
	zc.Sampling = nil
	lg, err := zc.Build()
	if err != nil {
		return nil, err
	}
	return lg.WithOptions(zap.WrapCore(func(c zapcore.Core) zapcore.Core { return shutdownFilter{c} })), nil
}

type shutdownFilter struct{ zapcore.Core }

func (f shutdownFilter) With(fields []zapcore.Field) zapcore.Core {
	return shutdownFilter{f.Core.With(fields)}
}

func (f shutdownFilter) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if !f.Enabled(e.Level) {
		return ce
	}
	return ce.AddCore(e, f)
}

func (f shutdownFilter) Write(e zapcore.Entry, fields []zapcore.Field) error {
	if e.Message == "setting up serving from embedded etcd failed." {
		for _, fd := range fields {
			if err, ok := fd.Interface.(error); ok && isClosing(err) {
				return nil
			}
		}
	}
	return f.Core.Write(e, fields)
}

func isClosing(err error) bool {
	msg := strings.ToLower(err.Error())
	return errors.Is(err, net.ErrClosed) || strings.Contains(msg, "server closed") || strings.Contains(msg, "use of closed network connection")
}
