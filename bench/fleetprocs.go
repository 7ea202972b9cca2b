package bench

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	pmodel "github.com/prometheus/common/model"

	"github.com/deact/deact/internal/launch"
	"github.com/deact/deact/state/etcdserver"
)

// EtcdClusterCommand is the subcommand of deactbench that runs a local etcd cluster (RunEtcdCluster); the fleet
// mode starts this executable with it, so that etcd's CPU is its own process's.
const EtcdClusterCommand = "etcd-cluster"

// RunEtcdCluster is the etcd-cluster subcommand: it starts --members etcd members on loopback (state/etcdserver,
// data under --dir), prints one line "etcd-cluster endpoints=URL,URL,URL" on stdout, and serves until SIGTERM or
// SIGINT, ctx's end, or the end of stdin (the parent closed it or died). It returns the exit status.
func RunEtcdCluster(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("deactbench "+EtcdClusterCommand, flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("dir", "", "data directory of the members (required)")
	members := fs.Int("members", 3, "etcd members")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 || *dir == "" || *members < 1 {
		fmt.Fprintf(stderr, "deactbench %s: want --dir and no arguments (got %q)\n", EtcdClusterCommand, fs.Args())
		return 2
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	c, err := etcdserver.StartCluster(*dir, *members, "error")
	if err != nil {
		fmt.Fprintln(stderr, "deactbench etcd-cluster:", err)
		return 1
	}
	defer c.Close()
	if _, err := fmt.Fprintf(stdout, "%s endpoints=%s\n", EtcdClusterCommand, strings.Join(c.Endpoints(), ",")); err != nil {
		return 1
	}
	untilStdinCloses(ctx, stdin)
	return 0
}

// fleetEtcd is the fleet's etcd cluster: its members run in one child process, whose CPU is etcd's alone.
type fleetEtcd struct {
	*childProc
	endpoints []string
	members   int
}

// startFleetEtcd runs self (deactbench, or os.Executable() when empty) with the etcd-cluster subcommand: three
// members with data under dir.
func startFleetEtcd(ctx context.Context, self, dir string) (*fleetEtcd, error) {
	if self == "" {
		var err error
		if self, err = os.Executable(); err != nil {
			return nil, fmt.Errorf("etcd cluster: %w", err)
		}
	}
	e := &fleetEtcd{members: 3}
	scan := func(l string) bool {
		v, ok := strings.CutPrefix(l, EtcdClusterCommand+" endpoints=")
		if ok {
			e.endpoints = strings.Split(v, ",")
		}
		return ok
	}
	c, err := startChildProc(ctx, "etcd cluster", []string{self, EtcdClusterCommand, "--dir", dir, "--members", fmt.Sprint(e.members)},
		nil, dir+".log", true, time.Minute, scan)
	if err != nil {
		return nil, err
	}
	e.childProc = c
	return e, nil
}

// counts scrapes one member's /metrics: the members share their process and its Prometheus registry, so one
// scrape holds the whole cluster's counters (see countsOf), and the mvcc counters count each write once per member.
func (e *fleetEtcd) counts(ctx context.Context) (map[string]float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, e.endpoints[0]+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	req.Close = true // no idle connection left behind
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("etcd metrics: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("etcd metrics: HTTP %d", resp.StatusCode)
	}
	p := expfmt.NewTextParser(pmodel.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("etcd metrics: %w", err)
	}
	mfs := make([]*dto.MetricFamily, 0, len(fams))
	for _, mf := range fams {
		mfs = append(mfs, mf)
	}
	out := countsOf(mfs)
	// Each member applies every write: the cluster's writes are the sum over members divided by their number.
	for name, key := range map[string]string{"etcd_mvcc_put_total": "mvccPuts", "etcd_mvcc_delete_total": "mvccDeletes"} {
		if mf := fams[name]; mf != nil {
			for _, m := range mf.GetMetric() {
				out[key] += m.GetCounter().GetValue() / float64(e.members)
			}
		}
	}
	return out, nil
}

// startFleetDeactd starts one deactd child process (bin) on the fleet's etcd with role and node ID id, data and
// log under dir, extra flags args and extra environment env (the admin token by token), and waits until it is
// ready. It returns the child and its admin URL.
func startFleetDeactd(ctx context.Context, bin string, env []string, token, dir, id, role string, endpoints, args []string) (*launch.Process, string, error) {
	p, err := startDeactd(ctx, deactdNode{bin: bin, dir: dir, nodeID: id, role: role, etcd: endpoints, token: token, env: env, args: args})
	if err != nil {
		return nil, "", err
	}
	return p, p.Ready.URL(p.Ready.AdminAddr), nil
}
