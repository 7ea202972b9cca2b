// Package daemon wires state, authz and admin into the deactd process: embedded or external etcd, the replica
// and node registration, the ext_authz gRPC and HTTP check listeners, and the admin listener with health and
// metrics. cmd/deactd parses flags into a Config; tests and the local cluster start daemons in-process.
package daemon

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/deact/deact/admin"
	"github.com/deact/deact/authz"
	"github.com/deact/deact/source"
	"github.com/deact/deact/state"
	"github.com/deact/deact/state/etcdserver"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/reflection"
)

// Version is deactd's version, reported in node records and /readyz.
const Version = "0.1.0-dev"

// Roles a daemon can take.
const (
	RoleAll     = "all"     // gateway and admin
	RoleGateway = "gateway" // replica, node registration, ext_authz and HTTP check
	RoleAdmin   = "admin"   // admin API only
)

// Config is everything a daemon needs. Zero values take the defaults in brackets; Validate says what is wrong.
type Config struct {
	DataDir string // embedded etcd data and the generated admin token ["./deact-data"]
	NodeID  string // this gateway node's ID in the registry [hostname]
	Role    string // RoleAll, RoleGateway or RoleAdmin [all]

	EtcdEndpoints []string // external etcd; empty starts an embedded single-node etcd under DataDir
	EtcdCACert    string   // CA bundle for etcd's server certificates (https endpoints)
	EtcdCert      string   // client certificate for etcd mTLS
	EtcdKey       string   // its key
	EtcdLogLevel  string   // embedded etcd's log level ["error"]

	AuthzAddr     string // ext_authz gRPC listener ["127.0.0.1:9191"]; port 0 picks one
	HTTPCheckAddr string // HTTP check listener ["127.0.0.1:9192"]
	AdminAddr     string // admin API, health and metrics ["127.0.0.1:8080"]
	// ReportAddr is where admin nodes take gateways' direct reports [AdminAddr's host, any free port: gateways
	// find it in etcd]; ReportAdvertise the address gateways dial for it [the bound address, an unspecified
	// host replaced by this host's first global unicast address].
	ReportAddr, ReportAdvertise string

	// TLS for the three listeners: both files set turns TLS on. ClientCA additionally requires client
	// certificates signed by it (mTLS).
	TLSCert, TLSKey, TLSClientCA string

	AdminToken     string        // bootstrap admin token; empty uses the one stored in DataDir or makes one
	ConfirmTimeout time.Duration // admin's wait for gateway nodes after a write [2s]
	WriteTimeout   time.Duration // admin's bound on the etcd calls of one request; past it, 503 [5s]
	AuditRetention time.Duration // admin nodes delete audit records older than this, hourly [90 days]; <0 keeps all

	// Sources are the upstreams (ZITADEL, Commvault) admin nodes follow into the mirrored layer: each one's
	// handler is served on every admin node under /v1/sources/{name}/, its sync runs on one admin node at a time.
	Sources []source.Source
	// TombstoneRetention is how long a removed upstream org, project or app keeps denying
	// [source.DefaultTombstoneRetention: ZITADEL's 90-day refresh token lifetime + 12h]; <0 keeps tombstones.
	TombstoneRetention time.Duration
	SourceLeaderTTL    time.Duration // lease of a source's election [5s]: failover time when a leader dies

	Presets   []string // authz route presets [zitadel, commvault]
	RulesFile string   // custom authz rules (YAML or JSON)
	Staleness string   // per-op staleness policy, e.g. "backup=deny-after:5m" [serve last known state]

	// Connection limits of the three listeners. MaxConns bounds each listener's open connections [derived from
	// the open-file limit: what is left after a reserve for etcd and the data dir, shared equally]; when full,
	// the connection quiet the longest is closed for a new one. A connection must send its first request (TLS
	// and HTTP/2 handshakes included) within HandshakeTimeout [5s]; one without requests is closed after
	// IdleTimeout [2m] (HTTP keep-alive, gRPC MaxConnectionIdle).
	MaxConns         int
	HandshakeTimeout time.Duration
	IdleTimeout      time.Duration

	ProgressInterval time.Duration // how often the replica asks etcd to confirm it is current [500ms]
	NodeTTL          time.Duration // lease TTL of the gateway's registry record, whole seconds ≥ 5s [10s]
	ResyncInterval   time.Duration // anti-entropy relist period [10m]
	DrainDelay       time.Duration // after health turns NOT_SERVING, wait this long before draining [0]
	DrainTimeout     time.Duration // bound on draining in-flight requests [10s]

	Zitadel ZitadelConfig // the ZITADEL source (admin nodes); off unless its URL or signing key file is set
	// Commvault is the Commvault source (admin nodes); off unless its URL is set.
	Commvault CommvaultConfig

	Logger *slog.Logger // [text to stderr at info]
	Out    io.Writer    // where the start banner with addresses (and a new admin token) goes [stdout]
}

func (c *Config) setDefaults() {
	def := func(p *string, v string) {
		if *p == "" {
			*p = v
		}
	}
	def(&c.DataDir, "./deact-data")
	def(&c.Role, RoleAll)
	def(&c.AuthzAddr, "127.0.0.1:9191")
	def(&c.HTTPCheckAddr, "127.0.0.1:9192")
	def(&c.AdminAddr, "127.0.0.1:8080")
	def(&c.EtcdLogLevel, "error")
	if c.NodeID == "" {
		h, _ := os.Hostname()
		c.NodeID = sanitizeNodeID(h)
	}
	if c.ConfirmTimeout == 0 {
		c.ConfirmTimeout = 2 * time.Second
	}
	if c.DrainTimeout == 0 {
		c.DrainTimeout = 10 * time.Second
	}
	if c.HandshakeTimeout == 0 {
		c.HandshakeTimeout = 5 * time.Second
	}
	if c.IdleTimeout == 0 {
		c.IdleTimeout = 2 * time.Minute
	}
	if c.AuditRetention == 0 {
		c.AuditRetention = 90 * 24 * time.Hour
	}
	if c.TombstoneRetention == 0 {
		c.TombstoneRetention = source.DefaultTombstoneRetention
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	if c.Out == nil {
		c.Out = os.Stdout
	}
}

// sanitizeNodeID turns a host name into a valid ID.
func sanitizeNodeID(h string) string {
	b := []byte(h)
	for i, c := range b {
		if state.ValidateID("node", string(c)) != nil {
			b[i] = '-'
		}
	}
	if len(b) == 0 {
		return "node"
	}
	return string(b)
}

// Validate checks the configuration and says what is wrong in terms of flags.
func (c *Config) Validate() error {
	var errs []error
	switch c.Role {
	case RoleAll, RoleGateway, RoleAdmin:
	default:
		errs = append(errs, fmt.Errorf("--role %q: want all, gateway or admin", c.Role))
	}
	if c.gateway() && c.NodeID != "" { // empty takes the host name
		if err := state.ValidateID("node", c.NodeID); err != nil {
			errs = append(errs, fmt.Errorf("--node-id: %w", err))
		}
	}
	if (c.EtcdCert == "") != (c.EtcdKey == "") {
		errs = append(errs, errors.New("--etcd-cert and --etcd-key go together"))
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		errs = append(errs, errors.New("--tls-cert and --tls-key go together"))
	}
	if c.TLSClientCA != "" && c.TLSCert == "" {
		errs = append(errs, errors.New("--tls-client-ca needs --tls-cert and --tls-key"))
	}
	if len(c.EtcdEndpoints) > 0 && (c.EtcdCACert != "" || c.EtcdCert != "") {
		for _, ep := range c.EtcdEndpoints {
			if !strings.HasPrefix(ep, "https://") {
				errs = append(errs, fmt.Errorf("--etcd-endpoints %q: TLS flags need https:// endpoints", ep))
			}
		}
	}
	if c.NodeTTL != 0 && (c.NodeTTL < 5*time.Second || c.NodeTTL%time.Second != 0) {
		errs = append(errs, fmt.Errorf("--node-ttl %v: want whole seconds, at least 5s", c.NodeTTL))
	}
	if c.MaxConns < 0 || c.HandshakeTimeout < 0 || c.IdleTimeout < 0 {
		errs = append(errs, errors.New("--max-conns, --handshake-timeout and --idle-timeout cannot be negative"))
	}
	if _, err := authz.ParseStalenessPolicy(c.Staleness); err != nil {
		errs = append(errs, fmt.Errorf("--staleness: %w", err))
	}
	errs = append(errs, c.Zitadel.validate(c)...)
	errs = append(errs, c.Commvault.validate(c)...)
	return errors.Join(errs...)
}

func (c *Config) gateway() bool { return c.Role == RoleAll || c.Role == RoleGateway }
func (c *Config) admin() bool   { return c.Role == RoleAll || c.Role == RoleAdmin }

// Daemon is a running deactd. Its address fields hold the bound addresses (real ports, not 0).
type Daemon struct {
	AuthzAddr     string // empty when the role has no gateway
	HTTPCheckAddr string
	AdminAddr     string
	ReportAddr    string // empty when the role has no admin
	EtcdEndpoints []string

	cfg      Config
	log      *slog.Logger
	embedded *etcdserver.Server
	cli      *clientv3.Client
	replica  *state.Replica
	authz    *authz.Authorizer
	grpc     *grpc.Server
	health   *health.Server
	https    []*http.Server
	maxConns int // per listener
	reg      *prometheus.Registry
	draining chan struct{}
	// reporter keeps this gateway in the node registry; while it is fenced the gateway refuses to decide and
	// is not ready.
	reporter *state.NodeReporter

	cancel context.CancelFunc // stops background components
	bg     sync.WaitGroup
	errc   chan error
	done   chan struct{}
	err    error
}

// Start brings a daemon up: it opens every listener before it returns (so a caller can read the addresses),
// and serves until ctx ends, then drains and stops. Wait returns when it has stopped.
func Start(ctx context.Context, cfg Config) (_ *Daemon, err error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	d := &Daemon{cfg: cfg, log: cfg.Logger, draining: make(chan struct{}), errc: make(chan error, 8), done: make(chan struct{})}
	defer func() {
		if err != nil {
			d.closeAll()
		}
	}()
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("data dir: %w", err)
	}
	// The data dir holds the embedded etcd's socket and the admin token: this user's alone, even if it was
	// made before with looser permissions. (The socket and the token file are 0600 themselves.)
	if err := os.Chmod(cfg.DataDir, 0o700); err != nil {
		d.log.Warn("cannot make the data dir private (0700)", "dir", cfg.DataDir, "err", err)
	}
	// Before etcd starts: the limit is raised for it too.
	if err := d.connectionBudget(); err != nil {
		return nil, err
	}
	if err := d.connectEtcd(); err != nil {
		return nil, err
	}
	if d.embedded != nil {
		// A fatal error of the embedded etcd (disk full, corrupt data) stops deactd rather than leave it serving
		// ever staler state with no store behind it.
		go func() {
			for err := range d.embedded.Err() {
				if err != nil {
					d.fail(fmt.Errorf("embedded etcd: %w", err))
					return
				}
			}
		}()
	}
	bgctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	d.cancel = cancel
	store := state.NewStore(d.cli)

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	d.reg = reg

	if cfg.gateway() {
		if err := d.startGateway(bgctx, reg); err != nil {
			return nil, err
		}
	}
	adminMux := http.NewServeMux()
	var bs bootstrap
	if cfg.admin() {
		fanout := state.NewFanout(d.cli, d.log)
		d.run(bgctx, "fanout", fanout.Run)
		if err := d.startReportServer(bgctx, fanout, reg); err != nil {
			return nil, err
		}
		api, err := admin.New(admin.Config{Store: store, Fanout: fanout, Logger: d.log, Registry: reg, ConfirmTimeout: cfg.ConfirmTimeout,
			WriteTimeout: cfg.WriteTimeout})
		if err != nil {
			return nil, err
		}
		if bs, err = d.bootstrapToken(ctx, store); err != nil {
			return nil, err
		}
		adminMux.Handle("/", api.Handler())
		// App records from before the app-ID index get their entries, so the store's uniqueness checks cover them.
		d.run(bgctx, "app-id index", func(ctx context.Context) error {
			added, conflicts, err := store.IndexAppIDs(ctx)
			if (err != nil && ctx.Err() == nil) || conflicts > 0 {
				d.log.Warn("app-id index", "added", added, "conflicts", conflicts, "err", err)
			}
			return nil
		})
		if cfg.AuditRetention > 0 {
			d.run(bgctx, "audit pruning", func(ctx context.Context) error { d.pruneAudit(ctx, store); return nil })
		}
		if err := d.addZitadel(fanout, adminMux); err != nil {
			return nil, err
		}
		if err := d.addCommvault(); err != nil {
			return nil, err
		}
		if err := d.startSources(bgctx, store, reg, adminMux); err != nil {
			return nil, err
		}
	}
	adminMux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok\n") })
	adminMux.HandleFunc("GET /readyz", d.readyz)
	adminMux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	if d.AdminAddr, err = d.serveHTTP("admin", cfg.AdminAddr, adminMux, true); err != nil {
		return nil, fmt.Errorf("--admin-addr: %w", err)
	}
	d.banner(bs)
	go d.stopWhenDone(ctx)
	return d, nil
}

// Run starts a daemon and waits until it has stopped.
func Run(ctx context.Context, cfg Config) error {
	d, err := Start(ctx, cfg)
	if err != nil {
		return err
	}
	return d.Wait()
}

// Wait blocks until the daemon has stopped and returns why, nil for a requested stop.
func (d *Daemon) Wait() error {
	<-d.done
	return d.err
}

func (d *Daemon) connectEtcd() error {
	cfg := d.cfg
	endpoints := cfg.EtcdEndpoints
	if len(endpoints) == 0 {
		srv, err := startEmbedded(cfg)
		if err != nil {
			return err
		}
		d.embedded = srv
		endpoints = srv.Endpoints()
	}
	d.EtcdEndpoints = endpoints
	var tlsCfg *tls.Config
	if cfg.EtcdCACert != "" || cfg.EtcdCert != "" {
		info := transport.TLSInfo{TrustedCAFile: cfg.EtcdCACert, CertFile: cfg.EtcdCert, KeyFile: cfg.EtcdKey}
		c, err := info.ClientConfig()
		if err != nil {
			return fmt.Errorf("etcd TLS: %w", err)
		}
		tlsCfg = c
	}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints: endpoints, TLS: tlsCfg, Logger: zap.NewNop(),
		DialTimeout: 5 * time.Second, DialKeepAliveTime: 5 * time.Second, DialKeepAliveTimeout: 3 * time.Second,
	})
	if err != nil {
		return fmt.Errorf("etcd client: %w", err)
	}
	d.cli = cli
	return nil
}

// maxSocketPath is the longest path a unix socket can have (sun_path less its NUL on Linux).
const maxSocketPath = 107

// startEmbedded starts the single-node etcd that only this process (and this user) can reach: its clients
// come through a unix socket in the data dir (0600, the dir 0700), it opens no TCP port and no peer listener.
// There is no etcd authentication on top: a password would have to sit in the same data dir, readable by the
// same user that can open the socket.
func startEmbedded(cfg Config) (*etcdserver.Server, error) {
	dir, err := filepath.Abs(cfg.DataDir)
	if err != nil {
		return nil, fmt.Errorf("data dir: %w", err)
	}
	sock := filepath.Join(dir, "etcd.sock")
	if len(sock) > maxSocketPath {
		return nil, fmt.Errorf("--data-dir %s: the embedded etcd's socket %s is longer than %d bytes; choose a shorter path", cfg.DataDir, sock, maxSocketPath)
	}
	// Earlier versions listened on loopback TCP ports kept in this file; the ports are gone.
	_ = os.Remove(filepath.Join(dir, "embedded-etcd.json"))
	return etcdserver.Start(etcdserver.Config{
		Name: "deactd", Dir: filepath.Join(dir, "etcd"), ClientURL: "unix://" + sock,
		PeerURL: "unix://" + filepath.Join(dir, "etcd-peer.unused"), NoPeerListener: true,
		LogLevel: cfg.EtcdLogLevel,
	})
}

func (d *Daemon) startGateway(ctx context.Context, reg *prometheus.Registry) error {
	cfg := d.cfg
	d.replica = state.NewReplica(state.ReplicaConfig{
		Client: d.cli, Logger: d.log, ProgressInterval: cfg.ProgressInterval, ResyncInterval: cfg.ResyncInterval,
	})
	registerReplicaMetrics(reg, d.replica)
	d.run(ctx, "replica", d.replica.Run)
	reportTLS, err := d.reportTLS()
	if err != nil {
		return err
	}
	reporter, err := state.NewNodeReporter(state.NodeReporterConfig{
		Client: d.cli, Replica: d.replica, NodeID: cfg.NodeID, Version: Version, Logger: d.log, TTL: cfg.NodeTTL,
		ReportTLS: reportTLS,
	})
	if err != nil {
		return err
	}
	registerReporterMetrics(reg, reporter)
	d.run(ctx, "node reporter", reporter.Run) // ErrNodeIDInUse stops the daemon
	d.reporter = reporter

	policy, _ := authz.ParseStalenessPolicy(cfg.Staleness) // validated
	presets := cfg.Presets
	a, err := authz.New(authz.Config{
		Replica: d.replica, Presets: presets, RulesFile: cfg.RulesFile, Logger: d.log, Registry: reg,
		RevisionHeader: true, Staleness: policy, Fenced: reporter.Fenced,
	})
	if err != nil {
		return err
	}
	d.authz = a

	opts := []grpc.ServerOption{
		grpc.MaxConcurrentStreams(1024),
		grpc.MaxRecvMsgSize(4 << 20),
		// A connection that has not finished its HTTP/2 handshake in time is closed (gRPC waits 120 s by default).
		grpc.ConnectionTimeout(cfg.HandshakeTimeout),
		// Idle connections are closed; quiet ones are pinged, and closed when the peer is gone.
		grpc.KeepaliveParams(keepalive.ServerParameters{MaxConnectionIdle: cfg.IdleTimeout, Time: 30 * time.Second, Timeout: 10 * time.Second}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 5 * time.Second, PermitWithoutStream: true}),
	}
	if tlsCfg, err := d.serverTLS(); err != nil {
		return err
	} else if tlsCfg != nil {
		opts = append(opts, grpc.Creds(credentials.NewTLS(tlsCfg)))
	}
	lis, err := d.listen("authz", cfg.AuthzAddr)
	if err != nil {
		return fmt.Errorf("--authz-addr: %w", err)
	}
	d.AuthzAddr = lis.Addr().String()
	d.grpc = grpc.NewServer(append(opts, grpc.UnaryInterceptor(lis.unaryBusy))...)
	authv3.RegisterAuthorizationServer(d.grpc, a)
	d.health = health.NewServer()
	d.health.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
	d.health.SetServingStatus(authv3.Authorization_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_NOT_SERVING)
	healthpb.RegisterHealthServer(d.grpc, d.health)
	reflection.Register(d.grpc)
	go func() {
		if err := d.grpc.Serve(lis); err != nil {
			d.fail(fmt.Errorf("authz gRPC: %w", err))
		}
	}()
	// Health follows readiness: SERVING while the replica is synced and the node is not fenced (registered,
	// caught up with its registration, its lease proven alive), so the admin API waits for every node that
	// serves. Polled: the fence closes by the clock, not by an event.
	go func() {
		serving := false
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-d.draining:
				return
			case <-ctx.Done():
				return
			case <-t.C:
			}
			if now := d.replica.Ready() && !reporter.Fenced(); now != serving {
				serving = now
				st := healthpb.HealthCheckResponse_NOT_SERVING
				if serving {
					st = healthpb.HealthCheckResponse_SERVING
				}
				select {
				case <-d.draining: // Shutdown has set NOT_SERVING for good
					return
				default:
					d.health.SetServingStatus("", st)
					d.health.SetServingStatus(authv3.Authorization_ServiceDesc.ServiceName, st)
				}
			}
		}
	}()
	if d.HTTPCheckAddr, err = d.serveHTTP("check", cfg.HTTPCheckAddr, a.HTTPHandler(), false); err != nil {
		return fmt.Errorf("--http-check-addr: %w", err)
	}
	return nil
}

func (d *Daemon) serverTLS() (*tls.Config, error) {
	if d.cfg.TLSCert == "" {
		return nil, nil
	}
	info := transport.TLSInfo{CertFile: d.cfg.TLSCert, KeyFile: d.cfg.TLSKey, TrustedCAFile: d.cfg.TLSClientCA, ClientCertAuth: d.cfg.TLSClientCA != ""}
	c, err := info.ServerConfig()
	if err != nil {
		return nil, fmt.Errorf("listener TLS: %w", err)
	}
	return c, nil
}

// serveHTTP listens on addr and serves h; with h2c it also speaks HTTP/2 without TLS (gRPC on the admin port).
func (d *Daemon) serveHTTP(name, addr string, h http.Handler, h2c bool) (string, error) {
	lis, err := d.listen(name, addr)
	if err != nil {
		return "", err
	}
	srv := &http.Server{
		Handler: markBusy(h), ConnContext: connContext,
		ReadHeaderTimeout: d.cfg.HandshakeTimeout, ReadTimeout: 30 * time.Second, IdleTimeout: d.cfg.IdleTimeout,
		MaxHeaderBytes: 64 << 10, Protocols: new(http.Protocols),
		ErrorLog: slog.NewLogLogger(d.log.Handler(), slog.LevelDebug),
	}
	srv.Protocols.SetHTTP1(true)
	tlsCfg, err := d.serverTLS()
	if err != nil {
		lis.Close()
		return "", err
	}
	if tlsCfg != nil {
		srv.TLSConfig = tlsCfg
		srv.Protocols.SetHTTP2(true)
	} else if h2c {
		srv.Protocols.SetUnencryptedHTTP2(true)
	}
	d.https = append(d.https, srv)
	go func() {
		var err error
		if tlsCfg != nil {
			err = srv.ServeTLS(lis, "", "")
		} else {
			err = srv.Serve(lis)
		}
		if err != nil && !errors.Is(err, http.ErrServerClosed) {
			d.fail(fmt.Errorf("http %s: %w", addr, err))
		}
	}()
	return lis.Addr().String(), nil
}

// bootstrap is what bootstrapToken did, for the banner.
type bootstrap struct {
	token  string // shown only when generated here
	source string // "flag", "file" or "generated"
	result admin.BootstrapResult
}

// bootstrapToken offers a bootstrap admin token to the store: the one given, else the one kept in the data dir,
// else a new one written there (0600) and shown once. admin.Bootstrap creates it only while no all-orgs admin
// token exists and never re-creates a revoked one; a revoked or unneeded token is reported, not fatal, so that
// revoking the token a Kubernetes Secret still holds does not take the admin API down.
func (d *Daemon) bootstrapToken(ctx context.Context, store *state.Store) (bootstrap, error) {
	bs := bootstrap{source: "flag"}
	token := d.cfg.AdminToken
	path := filepath.Join(d.cfg.DataDir, "admin-token")
	if token == "" {
		bs.source = "file"
		if b, err := os.ReadFile(path); err == nil {
			token = strings.TrimSpace(string(b))
		} else {
			bs.source = "generated"
			if token, err = admin.NewToken(); err != nil {
				return bs, err
			}
			// Written before it is created: a token in etcd that nobody holds would lock the operator out.
			if err := os.WriteFile(path, []byte(token+"\n"), 0o600); err != nil {
				return bs, fmt.Errorf("store admin token: %w", err)
			}
		}
	}
	bctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	res, err := admin.Bootstrap(bctx, store, token)
	if err != nil {
		return bs, fmt.Errorf("admin token: %w", err)
	}
	bs.result = res
	switch {
	case bs.source == "generated" && res == admin.BootstrapCreated:
		bs.token = token
	case bs.source == "generated":
		_ = os.Remove(path) // not a token: do not leave a secret that means nothing
	case res == admin.BootstrapRevoked:
		d.log.Warn("the bootstrap admin token was revoked; it stays revoked and is not re-created", "from", bs.source)
	case res == admin.BootstrapNotNeeded:
		d.log.Warn("the bootstrap admin token is not a token: the store holds an all-orgs admin token already; create tokens through the admin API", "from", bs.source)
	}
	return bs, nil
}

func (d *Daemon) banner(bs bootstrap) {
	w := d.cfg.Out
	fmt.Fprintf(w, "deactd %s node=%s role=%s\n", Version, d.cfg.NodeID, d.cfg.Role)
	if d.AuthzAddr != "" {
		fmt.Fprintf(w, "  authz gRPC (ext_authz): %s\n", d.AuthzAddr)
		fmt.Fprintf(w, "  check HTTP (/check):    http://%s/check\n", d.HTTPCheckAddr)
	}
	fmt.Fprintf(w, "  admin HTTP/gRPC:        http://%s\n", d.AdminAddr)
	if d.embedded != nil {
		fmt.Fprintf(w, "  etcd (embedded):        %s, data in %s\n", strings.Join(d.EtcdEndpoints, ","), filepath.Join(d.cfg.DataDir, "etcd"))
	} else {
		fmt.Fprintf(w, "  etcd:                   %s\n", strings.Join(d.EtcdEndpoints, ","))
	}
	file := filepath.Join(d.cfg.DataDir, "admin-token")
	given := map[string]string{"flag": "given by --admin-token / DEACT_ADMIN_TOKEN", "file": "in " + file}[bs.source]
	switch {
	case !d.cfg.admin():
	case bs.token != "":
		fmt.Fprintf(w, "  admin token (shown once, kept in %s): %s\n", file, bs.token)
	case bs.result == admin.BootstrapRevoked:
		fmt.Fprintf(w, "  admin token:            the one %s was revoked and stays revoked\n", given)
	case bs.result == admin.BootstrapNotNeeded && bs.source == "generated":
		fmt.Fprintf(w, "  admin token:            none created (the store holds admin tokens)\n")
	case bs.result == admin.BootstrapNotNeeded:
		fmt.Fprintf(w, "  admin token:            the one %s is not a token (the store holds admin tokens)\n", given)
	default:
		fmt.Fprintf(w, "  admin token:            %s\n", given)
	}
	d.log.Info("deactd started", "node", d.cfg.NodeID, "authz", d.AuthzAddr, "check", d.HTTPCheckAddr, "admin", d.AdminAddr)
}

// readyz reports readiness with detail: 200 only while not draining and, on a gateway, while the replica is
// synced and the node is not fenced.
func (d *Daemon) readyz(w http.ResponseWriter, _ *http.Request) {
	type detail struct {
		Ready       bool   `json:"ready"`
		Draining    bool   `json:"draining"`
		Node        string `json:"node"`
		Role        string `json:"role"`
		Version     string `json:"version"`
		Fenced      bool   `json:"fenced,omitempty"` // the node refuses to decide: not provably in the registry and current
		Revision    int64  `json:"appliedRevision,omitempty"`
		StalenessMs int64  `json:"stalenessMs,omitempty"`
		Staleness   string `json:"stalenessPolicy,omitempty"`
	}
	r := detail{Ready: true, Node: d.cfg.NodeID, Role: d.cfg.Role, Version: Version}
	select {
	case <-d.draining:
		r.Ready, r.Draining = false, true
	default:
	}
	if d.replica != nil {
		r.Fenced = d.reporter.Fenced()
		r.Ready = r.Ready && d.replica.Ready() && !r.Fenced
		r.Revision = d.replica.AppliedRevision()
		r.StalenessMs = d.replica.Staleness().Milliseconds()
		r.Staleness = d.cfg.Staleness
		if r.Staleness == "" {
			r.Staleness = "serve-last-known"
		}
	}
	w.Header().Set("Content-Type", "application/json")
	if !r.Ready {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	_ = json.NewEncoder(w).Encode(r)
}

// startSources serves each source's handler and runs its election on this admin node.
func (d *Daemon) startSources(ctx context.Context, store *state.Store, reg *prometheus.Registry, mux *http.ServeMux) error {
	if len(d.cfg.Sources) == 0 {
		return nil
	}
	metrics := source.NewMetrics(reg)
	seen := map[string]bool{}
	for _, src := range d.cfg.Sources {
		if seen[src.Name()] {
			return fmt.Errorf("two sources are named %q", src.Name())
		}
		seen[src.Name()] = true
		r, err := source.NewRunner(source.RunnerConfig{Client: d.cli, Store: store, NodeID: d.cfg.NodeID, Logger: d.log,
			Metrics: metrics, TombstoneRetention: d.cfg.TombstoneRetention, LeaderTTL: d.cfg.SourceLeaderTTL}, src)
		if err != nil {
			return err
		}
		if h := r.Handler(); h != nil {
			mux.Handle("/v1/sources/"+src.Name()+"/", h)
		}
		d.run(ctx, "source "+src.Name(), r.Run)
	}
	return nil
}

// pruneAudit deletes audit records older than the retention, at start and then hourly. Several admin nodes
// doing it at once is harmless: it is one idempotent range delete.
func (d *Daemon) pruneAudit(ctx context.Context, store *state.Store) {
	t := time.NewTicker(time.Hour)
	defer t.Stop()
	for {
		n, err := store.PruneAudit(ctx, time.Now().Add(-d.cfg.AuditRetention))
		switch {
		case err != nil && ctx.Err() == nil:
			d.log.Warn("pruning the audit log failed", "err", err)
		case n > 0:
			d.log.Info("pruned the audit log", "records", n, "retention", d.cfg.AuditRetention)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// run starts a background component that stops when ctx ends.
func (d *Daemon) run(ctx context.Context, name string, f func(context.Context) error) {
	d.bg.Add(1)
	go func() {
		defer d.bg.Done()
		if err := f(ctx); err != nil {
			d.fail(fmt.Errorf("%s: %w", name, err))
		}
	}()
}

func (d *Daemon) fail(err error) {
	select {
	case d.errc <- err:
	default:
	}
}

// stopWhenDone waits for ctx or a fatal error, then shuts down in order: health NOT_SERVING, drain delay,
// drain listeners, stop components (the node leaves the registry), close etcd.
func (d *Daemon) stopWhenDone(ctx context.Context) {
	select {
	case <-ctx.Done():
	case err := <-d.errc:
		d.err = err
		d.log.Error("deactd stopping after an error", "err", err)
	}
	close(d.draining)
	if d.health != nil {
		d.health.Shutdown() // every service NOT_SERVING
	}
	if d.cfg.DrainDelay > 0 {
		time.Sleep(d.cfg.DrainDelay)
	}
	sctx, cancel := context.WithTimeout(context.Background(), d.cfg.DrainTimeout)
	defer cancel()
	var wg sync.WaitGroup
	for _, srv := range d.https {
		wg.Add(1)
		go func() { defer wg.Done(); _ = srv.Shutdown(sctx) }()
	}
	if d.grpc != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			stopped := make(chan struct{})
			go func() { d.grpc.GracefulStop(); close(stopped) }()
			select {
			case <-stopped:
			case <-sctx.Done():
				d.grpc.Stop()
			}
		}()
	}
	wg.Wait()
	d.closeAll()
	d.log.Info("deactd stopped")
	close(d.done)
}

// closeAll stops background components and closes etcd; safe on a partly started daemon.
func (d *Daemon) closeAll() {
	if d.cancel != nil {
		d.cancel()
	}
	d.bg.Wait()
	if d.authz != nil {
		d.authz.Close()
	}
	if d.cli != nil {
		d.cli.Close()
	}
	if d.embedded != nil {
		d.embedded.Close()
	}
}
