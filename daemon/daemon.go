// Package daemon wires state, authz and admin into the deactd process: embedded or external etcd, the replica
// and node registration, the ext_authz gRPC and HTTP check listeners, and the admin listener with health and
// metrics. cmd/deactd parses flags into a Config; tests and the local cluster start daemons in-process.
package daemon

import (
	"context"
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
	"github.com/deact/deact/state"
	"github.com/deact/deact/state/etcdserver"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
)

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
	// listeningAt is when every listener was open, for the ready file.
	listeningAt time.Time
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
	d.removeReadyFile() // a stale one, of a deactd killed before it could remove it
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
			d.run(bgctx, "audit pruning", func(ctx context.Context) error { store.PruneAuditLoop(ctx, cfg.AuditRetention, d.log); return nil })
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
	d.listeningAt = time.Now()
	d.banner(bs)
	d.run(bgctx, "readiness", d.followReadiness)
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

func (d *Daemon) banner(bs bootstrap) {
	w := d.cfg.Out
	fmt.Fprintf(w, "deactd %s node=%s role=%s\n", Version, d.cfg.NodeID, d.cfg.Role)
	if d.AuthzAddr != "" {
		fmt.Fprintf(w, "  authz gRPC (ext_authz): %s\n", d.AuthzAddr)
		fmt.Fprintf(w, "  check HTTP (/check):    http://%s/check\n", d.HTTPCheckAddr)
	}
	fmt.Fprintf(w, "  admin HTTP/gRPC:        http://%s\n", d.AdminAddr)
	if d.ReportAddr != "" {
		fmt.Fprintf(w, "  gateway reports (gRPC): %s\n", d.ReportAddr)
	}
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
	d.removeReadyFile()
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
