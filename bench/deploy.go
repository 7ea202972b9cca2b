package bench

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"sync"
	"time"

	"github.com/deact/deact/internal/launch"
	"github.com/deact/deact/state"
	"github.com/deact/deact/state/etcdserver"
)

// Deployment is the deact under test: its gateways' check addresses and its admin API. Close stops what
// deactbench started itself (nothing for a deployment given by address).
type Deployment struct {
	Desc       string   // e.g. "1 deactd child process (pid 123, role all, embedded etcd)"
	AuthzAddrs []string // ext_authz gRPC
	HTTPAddrs  []string // HTTP check endpoint host:port
	AdminURL   string
	AdminToken string
	// ReadyURLs are the gateways' /readyz, when known.
	ReadyURLs []string
	// PID is the process that serves the checks when deactbench started it as a single child (0 otherwise):
	// its CPU is measured per run. Children are every server process deactbench started for the deployment
	// (PID among them): their CPU is not counted as the machine's other load.
	PID      int
	Children []int
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

// deploymentOrLocal returns dep, or when it is nil starts the local cluster in dir with deactd bin (built when
// empty); done stops what it started.
func deploymentOrLocal(ctx context.Context, dep *Deployment, dir, bin, mode string, progress io.Writer) (_ *Deployment, done func(), err error) {
	if dep != nil {
		return dep, func() {}, nil
	}
	if dir == "" {
		return nil, nil, fmt.Errorf("%s: starting the local cluster needs a directory (Dir)", mode)
	}
	if dep, err = StartLocal(ctx, dir, bin, progress); err != nil {
		return nil, nil, fmt.Errorf("start local cluster: %w", err)
	}
	return dep, dep.Close, nil
}

// Layout of the local cluster, as deploy/local's (cmd/deactlocal) defaults.
const (
	localMembers  = 3
	localGateways = 3
)

// StartLocal starts a local cluster in dir: an etcd cluster of 3 members in this process (so that its request
// counters can be read, see etcdCounts), and 3 gateways and an admin node as deactd child processes (bin, or
// ./cmd/deactd built into dir when empty) through the launcher; it returns once every gateway is ready and
// registered. Close stops the nodes, then etcd.
func StartLocal(ctx context.Context, dir, bin string, progress io.Writer) (_ *Deployment, err error) {
	if bin == "" {
		if bin, _, err = buildDeactd(ctx, dir, progress, "local cluster"); err != nil {
			return nil, err
		}
	}
	token, err := state.NewToken()
	if err != nil {
		return nil, err
	}
	etcd, err := etcdserver.StartCluster(filepath.Join(dir, "etcd"), localMembers, "error")
	if err != nil {
		return nil, err
	}
	var nodes []*launch.Process
	stop := func() {
		var wg sync.WaitGroup
		for _, n := range nodes {
			wg.Add(1)
			go func() { defer wg.Done(); _ = n.Stop() }()
		}
		wg.Wait()
		etcd.Close()
	}
	defer func() {
		if err != nil {
			stop()
		}
	}()
	dep := &Deployment{AdminToken: token, EtcdInProcess: true, EtcdEndpoints: etcd.Endpoints()}
	for i := range localGateways + 1 {
		n := deactdNode{bin: bin, dir: dir, nodeID: fmt.Sprintf("gw%d", i+1), role: "gateway", etcd: etcd.Endpoints()}
		if i == localGateways {
			n.nodeID, n.role, n.token = "admin", "admin", token
		}
		p, err := startDeactd(ctx, n)
		if err != nil {
			return nil, err
		}
		nodes = append(nodes, p)
		dep.Children = append(dep.Children, p.PID())
		r := p.Ready
		if n.role == "admin" {
			dep.AdminURL = r.URL(r.AdminAddr)
			continue
		}
		dep.AuthzAddrs = append(dep.AuthzAddrs, r.AuthzAddr)
		dep.HTTPAddrs = append(dep.HTTPAddrs, r.CheckAddr)
		dep.ReadyURLs = append(dep.ReadyURLs, r.URL(r.AdminAddr)+"/readyz")
	}
	dep.Desc = fmt.Sprintf("local cluster: %d etcd members in this process, %d gateways and 1 admin node as deactd child processes",
		localMembers, localGateways)
	dep.close = stop
	ac, err := newAdminClient(dep.AdminURL, dep.AdminToken, 2, 2*time.Second)
	if err != nil {
		return nil, err
	}
	defer ac.Close()
	if err := waitNodes(ctx, ac, localGateways); err != nil {
		return nil, err
	}
	return dep, nil
}
