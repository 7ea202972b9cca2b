package bench

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/deact/deact/admin"
	"github.com/deact/deact/daemon"
	"github.com/deact/deact/deploy/local"
)

// Deployment is the deact under test: its gateways' check addresses and its admin API. Close stops what
// deactbench started itself (nothing for a deployment given by address).
type Deployment struct {
	Desc       string   // e.g. "in-process deactd (embedded etcd)"
	AuthzAddrs []string // ext_authz gRPC
	HTTPAddrs  []string // HTTP check endpoint host:port
	AdminURL   string
	AdminToken string
	// ReadyURLs are the gateways' /readyz, when known.
	ReadyURLs []string
	// PID is the process that serves the checks when deactbench started it as a child (0 otherwise): its CPU
	// is measured per run.
	PID int
	// EtcdEndpoints are the deployment's etcd client URLs, when known: the propagation benchmark measures etcd's
	// own floor on them, beside deact.
	EtcdEndpoints []string
	// EtcdInProcess says the deployment's etcd members run in this process: their request counters are read
	// from the default Prometheus registry (see etcdCounts).
	EtcdInProcess bool
	close         func()
}

// Gateways is the number of gateway nodes.
func (d *Deployment) Gateways() int { return max(len(d.AuthzAddrs), len(d.HTTPAddrs)) }

// Close stops the deployment if deactbench started it.
func (d *Deployment) Close() {
	if d != nil && d.close != nil {
		d.close()
		d.close = nil
	}
}

// StartDaemon starts one deactd in this process (role all, embedded single-node etcd in dir, free loopback
// ports, logs to dir/deactd.log) and waits until its replica is ready.
func StartDaemon(ctx context.Context, dir string) (*Deployment, error) {
	token, err := admin.NewToken()
	if err != nil {
		return nil, err
	}
	logf, err := os.Create(filepath.Join(dir, "deactd.log"))
	if err != nil {
		return nil, err
	}
	dctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	d, err := daemon.Start(dctx, daemon.Config{
		DataDir: filepath.Join(dir, "deactd"), NodeID: "bench", AdminToken: token,
		AuthzAddr: "127.0.0.1:0", HTTPCheckAddr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0",
		Logger: slog.New(slog.NewTextHandler(logf, &slog.HandlerOptions{Level: slog.LevelWarn})), Out: io.Discard,
	})
	if err != nil {
		cancel()
		logf.Close()
		return nil, err
	}
	dep := &Deployment{
		Desc:       "1 in-process deactd (role all, embedded etcd)",
		AuthzAddrs: []string{d.AuthzAddr}, HTTPAddrs: []string{d.HTTPCheckAddr},
		AdminURL: "http://" + d.AdminAddr, AdminToken: token, ReadyURLs: []string{"http://" + d.AdminAddr + "/readyz"},
		EtcdInProcess: true, close: func() { cancel(); _ = d.Wait(); logf.Close() },
	}
	if err := waitReady(ctx, dep.ReadyURLs); err != nil {
		dep.Close()
		return nil, err
	}
	return dep, nil
}

// deploymentOrLocal returns dep, or when it is nil starts the local cluster in dir; done stops what it started.
func deploymentOrLocal(ctx context.Context, dep *Deployment, dir, mode string) (_ *Deployment, done func(), err error) {
	if dep != nil {
		return dep, func() {}, nil
	}
	if dir == "" {
		return nil, nil, fmt.Errorf("%s: starting the local cluster needs a directory (Dir)", mode)
	}
	if dep, err = StartLocal(ctx, dir); err != nil {
		return nil, nil, fmt.Errorf("start local cluster: %w", err)
	}
	return dep, dep.Close, nil
}

// StartLocal starts the local deployment (deploy/local: 3 etcd members, 3 gateways, 1 admin node) in this
// process with data and logs in dir, and waits until every gateway is ready and registered.
func StartLocal(ctx context.Context, dir string) (*Deployment, error) {
	c, err := local.Start(local.Config{Dir: dir, LogLevel: slog.LevelWarn})
	if err != nil {
		return nil, err
	}
	dep := &Deployment{
		Desc:       fmt.Sprintf("local cluster in-process: %d etcd members, %d gateways, 1 admin node", len(c.Etcd.Endpoints()), len(c.Gateways)),
		AuthzAddrs: c.AuthzAddrs(), AdminURL: c.AdminURL(), AdminToken: c.AdminToken, close: c.Close,
		EtcdInProcess: true, EtcdEndpoints: c.Etcd.Endpoints(),
	}
	for _, g := range c.Gateways {
		dep.HTTPAddrs = append(dep.HTTPAddrs, g.HTTPCheckAddr)
		dep.ReadyURLs = append(dep.ReadyURLs, "http://"+g.AdminAddr+"/readyz")
	}
	if err := waitReady(ctx, dep.ReadyURLs); err != nil {
		dep.Close()
		return nil, err
	}
	ac, err := newAdminClient(dep.AdminURL, dep.AdminToken, 2)
	if err != nil {
		dep.Close()
		return nil, err
	}
	defer ac.close()
	if err := ac.waitNodes(ctx, len(c.Gateways)); err != nil {
		dep.Close()
		return nil, err
	}
	return dep, nil
}

// waitReady polls each /readyz until it answers 200 (bounded by ctx and 60 s).
func waitReady(ctx context.Context, urls []string) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	client := &http.Client{Transport: &http.Transport{}}
	defer client.CloseIdleConnections()
	for _, u := range urls {
		if err := checkLoopbackURL(u); err != nil {
			return err
		}
		for {
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
			resp, err := client.Do(req)
			if err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					break
				}
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("%s not ready: %w", u, ctx.Err())
			case <-time.After(20 * time.Millisecond):
			}
		}
	}
	return nil
}
