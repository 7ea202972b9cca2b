package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc/metadata"

	"github.com/deact/deact/admin/adminapi"
	"github.com/deact/deact/internal/launch"
	"github.com/deact/deact/state"
)

// FleetConfig configures the fleet simulation. Zero values take the defaults in brackets.
type FleetConfig struct {
	Gateways []int // fleet sizes, one run each on a fresh cluster [10, 100, 300]
	Dir      string
	// Changes is the churn of each run: org deactivations and reactivations through the admin API [100].
	Changes int
	// Concurrency is the number of writers of the churn, each flipping its own org [1]: 1 measures one change
	// at a time, more a burst that the node reports may coalesce.
	Concurrency int
	// ConfirmTimeout is the confirmation bound every churn write asks of the admin [2s].
	ConfirmTimeout time.Duration
	// NoPause leaves out the paused case; otherwise 1% of each fleet (at least one gateway) are deactd child
	// processes that are SIGSTOPped after the churn, for PausedChanges writes with the bound PausedBound.
	NoPause       bool
	PausedChanges int           // [5]
	PausedBound   time.Duration // [1s]
	// PausedTTL is the node lease TTL of the pausable gateways [30s]: the paused case must end while their
	// leases live (a lease outlives the last keep-alive by at least TTL less a third of its fence bound).
	PausedTTL time.Duration
	// ReplicasPerClient is how many in-process replicas share one etcd client [50].
	ReplicasPerClient int
	// MaxDuration bounds each run's churn [5m].
	MaxDuration time.Duration
	// Deactd is the deactd binary of the admin node and the pausable gateways [go build ./cmd/deactd];
	// DeactdEnv is added to their environment. Self runs the etcd-cluster subcommand [os.Executable()].
	Deactd    string
	DeactdEnv []string
	Self      string
	Progress  io.Writer
}

// FleetReport is the fleet simulation: one run per fleet size.
type FleetReport struct {
	Changes        int         `json:"changes"`
	Concurrency    int         `json:"concurrency"`
	ConfirmBoundMs float64     `json:"confirmBoundMs"`
	Design         string      `json:"design"`
	Runs           []*FleetRun `json:"runs"`
}

// FleetRun is one fleet size's figures.
//
// Etcd's figures come from its own process (CPU from /proc) and counters (/metrics): per change they are the
// churn window's deltas divided by the changes, and they include the fleet's background (heartbeats, lease
// keep-alives, replica probes), which Idle measures on its own before the churn.
type FleetRun struct {
	Gateways    int `json:"gateways"`
	InProcess   int `json:"inProcess"`   // replicas with node reporting in deactbench
	Children    int `json:"children"`    // deactd gateway child processes (the pausable ones)
	EtcdClients int `json:"etcdClients"` // clients the in-process replicas share

	Changes     int     `json:"changes"`
	ChurnS      float64 `json:"churnS"`
	Confirmed   int     `json:"confirmed"`   // answers confirmed by every gateway of the fleet
	Unconfirmed int     `json:"unconfirmed"` // answers with confirmed < total
	// Dropped counts answers whose total was below the fleet: gateways out of the registry (a lost lease; the
	// node is fenced and registers again); MinTotal is the smallest total seen, Reregistered the leases
	// granted during the churn (each a node that lost its registration).
	Dropped      int `json:"dropped"`
	MinTotal     int `json:"minTotal"`
	Reregistered int `json:"reregistered"`
	Failed       int `json:"failed"` // writes that failed, or that an in-process replica never applied

	Answer      Percentiles `json:"answer"`      // write sent → admin's confirmed answer
	ConfirmWait Percentiles `json:"confirmWait"` // the wait the admin reported
	AppliedAll  Percentiles `json:"appliedAll"`  // write sent → applied by every in-process replica

	EtcdPerChange   map[string]float64 `json:"etcdPerChange"` // gRPC requests by method, mvccPuts, walFsync
	WritesPerChange float64            `json:"writesPerChange"`
	EtcdCPUMsPerChg float64            `json:"etcdCpuMsPerChange"`
	EtcdCores       float64            `json:"etcdCores"` // etcd CPU / wall during the churn
	Idle            FleetIdle          `json:"idle"`
	DBSizeMiB       float64            `json:"dbSizeMiB"` // largest member's
	DBInUseMiB      float64            `json:"dbInUseMiB"`

	Paused   *FleetPaused `json:"paused,omitempty"`
	Examples []string     `json:"examples,omitempty"`
}

// FleetIdle is the fleet's cost to etcd with no change: per second, before the churn.
type FleetIdle struct {
	Seconds      float64 `json:"seconds"`
	WritesPerS   float64 `json:"writesPerS"`
	RangesPerS   float64 `json:"rangesPerS"`
	EtcdCores    float64 `json:"etcdCores"`
	KeepAlivesPS float64 `json:"leaseKeepAlivesPerS"`
}

// FleetPaused is the 1%-paused case: Paused gateways SIGSTOPped, Changes writes with the bound BoundMs.
type FleetPaused struct {
	Paused  int     `json:"paused"`
	Changes int     `json:"changes"`
	BoundMs float64 `json:"boundMs"`
	// Short counts the answers whose confirmed/total was exactly (gateways − paused)/gateways.
	Short       int         `json:"short"`
	Answer      Percentiles `json:"answer"`
	ConfirmWait Percentiles `json:"confirmWait"`
	// Stale are the nodes /v1/nodes showed behind the last write after it was answered, with their staleMs;
	// StaleOK says they were exactly the paused ones, each stale at least since its pause.
	Stale       map[string]int64 `json:"stale"`
	Listed      int              `json:"listed"`         // nodes /v1/nodes listed (all of the fleet, or the check fails)
	LiveStaleMs int64            `json:"liveMaxStaleMs"` // the most stale live node
	StaleOK     bool             `json:"staleOk"`
}

// fleetDesign says what the simulation runs, for the report.
const fleetDesign = "3 etcd members in one child process (deactbench etcd-cluster); 1 admin deactd child process; " +
	"gateways: state.NewReplica + state.NewNodeReporter in deactbench (the code a gateway runs), sharing etcd clients, " +
	"plus 1% (at least 1) deactd gateway child processes that the paused case SIGSTOPs"

func (r *FleetRun) err() error {
	var errs []error
	if r.Unconfirmed > 0 || r.Dropped > 0 || r.Failed > 0 {
		errs = append(errs, fmt.Errorf("%w: fleet %d: %d writes not confirmed by every live gateway, %d with gateways out of the registry (as few as %d), %d failed or not applied",
			ErrCorrectness, r.Gateways, r.Unconfirmed, r.Dropped, r.MinTotal, r.Failed))
	}
	if p := r.Paused; p != nil && (p.Short != p.Changes || !p.StaleOK) {
		errs = append(errs, fmt.Errorf("%w: fleet %d, %d paused: %d of %d answers short by exactly the paused ones; stale nodes %v (want exactly the paused)",
			ErrCorrectness, r.Gateways, p.Paused, p.Short, p.Changes, p.Stale))
	}
	return errors.Join(errs...)
}

func (r *FleetRun) example(format string, args ...any) {
	if len(r.Examples) < maxExamples {
		r.Examples = append(r.Examples, fmt.Sprintf(format, args...))
	}
}

// RunFleet runs the fleet simulation for each size in cfg.Gateways, each on a cluster of its own. It returns an
// error wrapping ErrCorrectness if a write was not confirmed by every gateway or not applied by every replica,
// or if the paused case answered other counts than the live ones or reported other nodes stale.
func RunFleet(ctx context.Context, cfg FleetConfig) (*FleetReport, error) {
	if len(cfg.Gateways) == 0 {
		cfg.Gateways = []int{10, 100, 300}
	}
	if cfg.Changes <= 0 {
		cfg.Changes = 100
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = 1
	}
	if cfg.ConfirmTimeout <= 0 {
		cfg.ConfirmTimeout = 2 * time.Second
	}
	if cfg.PausedChanges <= 0 {
		cfg.PausedChanges = 5
	}
	if cfg.PausedBound <= 0 {
		cfg.PausedBound = time.Second
	}
	if cfg.PausedTTL <= 0 {
		cfg.PausedTTL = 30 * time.Second
	}
	if cfg.ReplicasPerClient <= 0 {
		cfg.ReplicasPerClient = 50
	}
	if cfg.MaxDuration <= 0 {
		cfg.MaxDuration = 5 * time.Minute
	}
	if cfg.Dir == "" {
		return nil, errors.New("fleet: needs a directory (Dir)")
	}
	for _, n := range cfg.Gateways {
		if n < 1 || (!cfg.NoPause && n < 2) {
			return nil, fmt.Errorf("fleet: %d gateways: want at least 1 (2 with the paused case)", n)
		}
	}
	if cfg.Deactd == "" {
		var err error
		if cfg.Deactd, _, err = buildDeactd(ctx, cfg.Dir, cfg.Progress, "fleet"); err != nil {
			return nil, err
		}
	}
	rep := &FleetReport{Changes: cfg.Changes, Concurrency: cfg.Concurrency, ConfirmBoundMs: ms64(cfg.ConfirmTimeout), Design: fleetDesign}
	var errs []error
	for _, n := range cfg.Gateways {
		r, err := runFleet(ctx, cfg, n)
		if r != nil {
			rep.Runs = append(rep.Runs, r)
			if cfg.Progress != nil {
				r.writeRow(cfg.Progress)
			}
		}
		if err != nil {
			errs = append(errs, err)
			if r == nil || ctx.Err() != nil {
				break
			}
		}
	}
	return rep, errors.Join(errs...)
}

func ms64(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// fleet is one running fleet: etcd, the admin node, the gateways.
type fleet struct {
	etcd     *fleetEtcd
	admin    *launch.Process
	adminURL string
	token    string
	children []*launch.Process
	childIDs []string
	replicas *fleetReplicas
}

func (f *fleet) close() {
	if f.replicas != nil {
		f.replicas.close()
	}
	for _, c := range f.children {
		_ = c.Signal(syscall.SIGCONT) // a stopped process cannot handle SIGTERM
		_ = c.Stop()
	}
	if f.admin != nil {
		_ = f.admin.Stop()
	}
	if f.etcd != nil {
		f.etcd.stop()
	}
}

// startFleet starts etcd, the admin node, the pausable gateway children and the in-process replicas, and
// waits until all n gateways are registered.
func startFleet(ctx context.Context, cfg FleetConfig, dir string, n, children int, logger *slog.Logger) (_ *fleet, err error) {
	f := &fleet{}
	defer func() {
		if err != nil {
			f.close()
		}
	}()
	if f.etcd, err = startFleetEtcd(ctx, cfg.Self, filepath.Join(dir, "etcd")); err != nil {
		return nil, err
	}
	if f.token, err = state.NewToken(); err != nil {
		return nil, err
	}
	f.admin, f.adminURL, err = startFleetDeactd(ctx, cfg.Deactd, cfg.DeactdEnv, f.token, dir, "admin", "admin", f.etcd.endpoints, nil)
	if err != nil {
		return nil, fmt.Errorf("admin node: %w", err)
	}
	for i := range children {
		id := fmt.Sprintf("pausable-%02d", i)
		c, _, err := startFleetDeactd(ctx, cfg.Deactd, cfg.DeactdEnv, "", dir, id, "gateway", f.etcd.endpoints,
			[]string{"--node-ttl", cfg.PausedTTL.String()})
		if err != nil {
			return nil, fmt.Errorf("gateway %s: %w", id, err)
		}
		f.children, f.childIDs = append(f.children, c), append(f.childIDs, id)
	}
	if f.replicas, err = startFleetReplicas(ctx, f.etcd.endpoints, n-children, cfg.ReplicasPerClient, logger); err != nil {
		return nil, err
	}
	ac, err := newAdminClient(f.adminURL, f.token, 1, 2*time.Second)
	if err != nil {
		return nil, err
	}
	defer ac.Close()
	return f, waitNodes(ctx, ac, n)
}

// runFleet runs one fleet size: start, idle window, churn, paused case.
func runFleet(ctx context.Context, cfg FleetConfig, n int) (*FleetRun, error) {
	children := 0
	if !cfg.NoPause {
		children = max(1, n/100)
	}
	dir := filepath.Join(cfg.Dir, fmt.Sprintf("fleet-%d", n))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	logf, err := os.Create(filepath.Join(dir, "replicas.log"))
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	logger := slog.New(slog.NewTextHandler(logf, &slog.HandlerOptions{Level: slog.LevelWarn}))
	if cfg.Progress != nil {
		fmt.Fprintf(cfg.Progress, "fleet %d: starting etcd, admin, %d gateway child processes, %d replicas\n", n, children, n-children)
	}
	f, err := startFleet(ctx, cfg, dir, n, children, logger)
	if err != nil {
		return nil, fmt.Errorf("fleet %d: %w", n, err)
	}
	defer f.close()
	r := &FleetRun{Gateways: n, InProcess: n - children, Children: children, EtcdClients: len(f.replicas.clients)}

	ac, err := newAdminClient(f.adminURL, f.token, cfg.Concurrency, cfg.ConfirmTimeout)
	if err != nil {
		return r, err
	}
	defer ac.Close()

	// Idle: what the fleet costs etcd with nothing changing.
	idle := 3 * time.Second
	c0, cpu0, t0, err := f.sample(ctx)
	if err != nil {
		return r, err
	}
	select {
	case <-ctx.Done():
		return r, ctx.Err()
	case <-time.After(idle):
	}
	c1, cpu1, t1, err := f.sample(ctx)
	if err != nil {
		return r, err
	}
	secs := t1.Sub(t0).Seconds()
	r.Idle = FleetIdle{Seconds: secs, WritesPerS: fleetWrites(c0, c1) / secs, RangesPerS: (c1["Range"] - c0["Range"]) / secs,
		EtcdCores: (cpu1 - cpu0).Seconds() / secs, KeepAlivesPS: (c1["LeaseKeepAlive"] - c0["LeaseKeepAlive"]) / secs}

	// Churn.
	cctx, cancel := context.WithTimeout(ctx, cfg.MaxDuration)
	writes := churn(cctx, ac, cfg.Changes, cfg.Concurrency, "churn", cfg.Progress)
	cancel()
	c2, cpu2, t2, err := f.sample(ctx)
	if err != nil {
		return r, err
	}
	r.ChurnS = t2.Sub(t1).Seconds()
	answers, waits, applied := newSampleSet(0), newSampleSet(0), newSampleSet(0)
	for i, w := range writes { // failures first among the examples: they are rarer than short confirmations
		if w.err != nil && len(r.Examples) < maxExamples/2 {
			r.example("write %d: %v", i, w.err)
		}
	}
	for i, w := range writes {
		if w.err != nil {
			r.Failed++
			continue
		}
		r.Changes++
		answers.add(w.answer)
		waits.add(w.wait)
		if r.MinTotal == 0 || w.total < r.MinTotal {
			r.MinTotal = w.total
		}
		switch {
		case w.confirmed == n && w.total == n:
			r.Confirmed++
		case w.confirmed < w.total:
			r.Unconfirmed++
			r.example("write %d (revision %d) confirmed by %d/%d, fleet of %d", i, w.rev, w.confirmed, w.total, n)
		default:
			r.Dropped++
			r.example("write %d (revision %d) confirmed by %d/%d: %d of %d gateways out of the registry", i, w.rev, w.confirmed, w.total, n-w.total, n)
		}
		if d, ok := f.replicas.appliedAll(w.rev); ok {
			applied.add(d.Sub(w.sent))
		} else {
			r.Failed++
			r.example("write %d (revision %d) not applied by every in-process replica", i, w.rev)
		}
	}
	r.Answer, r.ConfirmWait, r.AppliedAll = answers.percentiles(), waits.percentiles(), applied.percentiles()
	if r.Changes > 0 {
		chg := float64(r.Changes)
		r.EtcdPerChange = map[string]float64{}
		for k, v := range c2 {
			if d := v - c1[k]; d > 0 {
				r.EtcdPerChange[k] = d / chg
			}
		}
		r.WritesPerChange = fleetWrites(c1, c2) / chg
		r.Reregistered = int(c2["LeaseGrant"] - c1["LeaseGrant"])
		r.EtcdCPUMsPerChg = ms64(cpu2-cpu1) / chg
		r.EtcdCores = (cpu2 - cpu1).Seconds() / r.ChurnS
	}
	if r.DBSizeMiB, r.DBInUseMiB, err = f.replicas.dbSize(ctx, f.etcd.endpoints); err != nil {
		r.example("db size: %v", err)
	}
	var pausedErr error
	if children > 0 && ctx.Err() == nil {
		if r.Paused, pausedErr = f.paused(ctx, cfg, r); pausedErr != nil {
			pausedErr = fmt.Errorf("fleet %d paused case: %w", n, pausedErr)
		}
	}
	if err := ctx.Err(); err != nil {
		return r, err
	}
	if pausedErr != nil {
		return r, errors.Join(r.err(), pausedErr) // the churn's figures stand; the paused ones did not finish
	}
	return r, r.err()
}

// fleetWrites is the keys etcd wrote between two samples of its counters (puts and deletes, once per write).
func fleetWrites(a, b map[string]float64) float64 {
	return b["mvccPuts"] - a["mvccPuts"] + b["mvccDeletes"] - a["mvccDeletes"]
}

// sample reads etcd's counters and CPU.
func (f *fleet) sample(ctx context.Context) (map[string]float64, time.Duration, time.Time, error) {
	c, err := f.etcd.counts(ctx)
	return c, procCPU(f.etcd.pid()), time.Now(), err
}

// paused SIGSTOPs the gateway children, makes cfg.PausedChanges writes with the paused bound, reads /v1/nodes,
// and lets the children go on.
func (f *fleet) paused(ctx context.Context, cfg FleetConfig, r *FleetRun) (*FleetPaused, error) {
	n := r.Gateways
	p := &FleetPaused{Paused: len(f.children), BoundMs: ms64(cfg.PausedBound), Stale: map[string]int64{}}
	ac, err := newAdminClient(f.adminURL, f.token, 1, cfg.PausedBound)
	if err != nil {
		return nil, err
	}
	defer ac.Close()
	for _, c := range f.children {
		if err := c.Freeze(5 * time.Second); err != nil {
			return nil, err
		}
	}
	paused := time.Now()
	defer func() {
		for _, c := range f.children {
			_ = c.Thaw()
		}
	}()
	// The paused leases live at least TTL − FenceBound/3 after the pause (the last keep-alive was sent no
	// earlier): stop writing well before, or the paused would leave the count and the case would test nothing.
	deadline := paused.Add(cfg.PausedTTL - state.FenceBound(cfg.PausedTTL)/3 - 2*time.Second)
	pctx, cancel := context.WithDeadline(ctx, deadline)
	writes := churn(pctx, ac, cfg.PausedChanges, 1, "paused", nil)
	cancel()
	answers, waits := newSampleSet(0), newSampleSet(0)
	var last int64
	for i, w := range writes {
		if w.err != nil {
			r.example("paused write %d: %v", i, w.err)
			continue
		}
		p.Changes++
		answers.add(w.answer)
		waits.add(w.wait)
		if w.total == n && w.confirmed == n-len(f.children) {
			p.Short++
		} else {
			r.example("paused write %d (revision %d) confirmed by %d/%d, want %d/%d", i, w.rev, w.confirmed, w.total, n-len(f.children), n)
		}
		last = max(last, w.rev)
	}
	p.Answer, p.ConfirmWait = answers.percentiles(), waits.percentiles()
	if p.Changes < cfg.PausedChanges {
		return p, fmt.Errorf("%d of %d writes answered before the paused leases could expire", p.Changes, cfg.PausedChanges)
	}
	asked := time.Now()
	listed, err := ac.Nodes(ctx)
	if err != nil {
		return p, err
	}
	nodes := listed.Nodes
	pausedIDs := map[string]bool{}
	for _, id := range f.childIDs {
		pausedIDs[id] = true
	}
	p.Listed = len(nodes)
	p.StaleOK = len(nodes) == n
	sincePause := asked.Sub(paused).Milliseconds()
	for _, nd := range nodes {
		if nd.AppliedRevision < last {
			p.Stale[nd.ID] = nd.StaleMs
			// Stale at least since its pause: its record is from before it, and the admin's clock is ours.
			p.StaleOK = p.StaleOK && pausedIDs[nd.ID] && nd.StaleMs >= sincePause
		} else {
			p.LiveStaleMs = max(p.LiveStaleMs, nd.StaleMs)
		}
	}
	p.StaleOK = p.StaleOK && len(p.Stale) == len(f.children)
	return p, nil
}

// fleetWrite is one churn write as the admin answered it.
type fleetWrite struct {
	sent             time.Time
	answer, wait     time.Duration
	rev              int64
	confirmed, total int
	err              error
	conflict         bool // 409: the org was in the state the write asked for already
}

// churn makes changes writes through the admin API with concurrency writers, each flipping an org of its own
// (deactivate, reactivate, ...), and returns them in the order they were started.
func churn(ctx context.Context, ac *adminapi.Client, changes, concurrency int, what string, progress io.Writer) []fleetWrite {
	out := make([]fleetWrite, changes)
	var next, done atomic.Int64
	var wg sync.WaitGroup
	for w := range concurrency {
		wg.Go(func() {
			org := fmt.Sprintf("fleet-%s-w%d", what, w)
			deactivate := true
			for {
				i := int(next.Add(1) - 1)
				if i >= changes {
					return
				}
				if ctx.Err() != nil {
					out[i].err = ctx.Err()
					continue
				}
				out[i] = fleetChange(ctx, ac, org, deactivate)
				// A write that failed may have committed all the same (a 503 past the write timeout): the
				// org's state then says which way the next one goes, and 409 is how the admin tells.
				if out[i].err == nil || out[i].conflict {
					deactivate = !deactivate
				}
				done.Add(1)
			}
		})
	}
	if progress != nil {
		stop, stopped := make(chan struct{}), make(chan struct{})
		defer func() { close(stop); <-stopped }()
		go func() {
			defer close(stopped)
			t := time.NewTicker(time.Second)
			defer t.Stop()
			for {
				select {
				case <-stop:
					return
				case <-t.C:
					fmt.Fprintf(progress, "%-24s %4d/%d writes\n", "fleet "+what, done.Load(), changes)
				}
			}
		}()
	}
	wg.Wait()
	return out
}

// fleetChange is one org flip through the native admin API: the answer's time, confirmation and revision.
func fleetChange(ctx context.Context, ac *adminapi.Client, org string, deactivate bool) fleetWrite {
	w := fleetWrite{sent: time.Now()}
	a, err := setOrg(ctx, ac, org, deactivate)
	w.answer = time.Since(w.sent)
	if err != nil {
		var ae *adminapi.Error
		w.conflict = errors.As(err, &ae) && ae.Status == http.StatusConflict
		w.err = err
		return w
	}
	if a.Revision <= 0 {
		w.err = fmt.Errorf("answer without a revision: %+v", a)
		return w
	}
	c := a.Confirmation
	w.rev, w.confirmed, w.total = a.Revision, c.Confirmed, c.Total
	w.wait = time.Duration(c.WaitedMs * float64(time.Millisecond))
	return w
}

// fleetReplicas are the in-process gateways: a replica and a node reporter each, the code deactd's gateway
// runs, sharing etcd clients.
//
// Sharing: each client is one gRPC connection per member. Each replica runs under its own outgoing metadata,
// so its watch is a watch stream of its own on that connection (clientv3 keys streams by metadata), as a
// gateway's is: a progress request is answered on the requester's stream alone (on a shared stream clientv3
// would broadcast every replica's progress answer to all of them, moving each one's applied revision, and so
// its reports, far more often than a gateway's). Reports, keep-alives and probes are unary requests. What etcd
// does per gateway is unchanged; what is saved is a connection per gateway, here and in etcd.
type fleetReplicas struct {
	clients []*clientv3.Client
	logs    []*appliedLog
	cancel  context.CancelFunc
	wg      sync.WaitGroup
}

// appliedLog records when a replica's applied revision moved, as its Changed channel showed it.
type appliedLog struct {
	mu   sync.Mutex
	revs []int64
	at   []time.Time
}

func (l *appliedLog) add(rev int64, at time.Time) {
	l.mu.Lock()
	l.revs, l.at = append(l.revs, rev), append(l.at, at)
	l.mu.Unlock()
}

// first is when the replica was first seen holding rev.
func (l *appliedLog) first(rev int64) (time.Time, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	i := sort.Search(len(l.revs), func(i int) bool { return l.revs[i] >= rev })
	if i == len(l.revs) {
		return time.Time{}, false
	}
	return l.at[i], true
}

func startFleetReplicas(ctx context.Context, endpoints []string, n, perClient int, logger *slog.Logger) (_ *fleetReplicas, err error) {
	rctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	f := &fleetReplicas{cancel: cancel}
	defer func() {
		if err != nil {
			f.close()
		}
	}()
	for range (n + perClient - 1) / perClient {
		cli, err := clientv3.New(clientv3.Config{
			Endpoints: endpoints, Logger: zap.NewNop(),
			DialTimeout: 5 * time.Second, DialKeepAliveTime: 5 * time.Second, DialKeepAliveTimeout: 3 * time.Second,
		})
		if err != nil {
			return nil, fmt.Errorf("etcd client: %w", err)
		}
		f.clients = append(f.clients, cli)
	}
	registered := make([]<-chan struct{}, n)
	failed := make(chan error, n)
	for i := range n {
		cli := f.clients[i/perClient]
		r := state.NewReplica(state.ReplicaConfig{Client: cli, Logger: logger})
		nr, err := state.NewNodeReporter(state.NodeReporterConfig{
			Client: cli, Replica: r, NodeID: fmt.Sprintf("gw-%04d", i), Version: "deactbench", Logger: logger,
		})
		if err != nil {
			return nil, err
		}
		l := &appliedLog{}
		f.logs = append(f.logs, l)
		registered[i] = nr.Registered()
		gctx := metadata.AppendToOutgoingContext(rctx, "deactbench-gateway", strconv.Itoa(i))
		f.wg.Go(func() { _ = r.Run(gctx) })
		f.wg.Go(func() {
			if err := nr.Run(gctx); err != nil {
				failed <- err
			}
		})
		f.wg.Go(func() {
			for {
				ch := r.Changed()
				select {
				case <-rctx.Done():
					return
				case <-ch:
					l.add(r.AppliedRevision(), time.Now())
				}
			}
		})
	}
	wctx, wcancel := context.WithTimeout(ctx, 2*time.Minute)
	defer wcancel()
	for i, reg := range registered {
		select {
		case <-reg:
		case err := <-failed:
			return nil, err
		case <-wctx.Done():
			return nil, fmt.Errorf("replica %d of %d not registered: %w", i, n, wctx.Err())
		}
	}
	return f, nil
}

// appliedAll is when every replica had applied rev: the latest of their first sightings.
func (f *fleetReplicas) appliedAll(rev int64) (time.Time, bool) {
	var last time.Time
	for _, l := range f.logs {
		at, ok := l.first(rev)
		if !ok {
			return time.Time{}, false
		}
		if at.After(last) {
			last = at
		}
	}
	return last, true
}

// dbSize is the largest member's database size and size in use, in MiB.
func (f *fleetReplicas) dbSize(ctx context.Context, endpoints []string) (size, inUse float64, _ error) {
	for _, ep := range endpoints {
		sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		st, err := f.clients[0].Status(sctx, ep)
		cancel()
		if err != nil {
			return size, inUse, err
		}
		size, inUse = max(size, float64(st.DbSize)/(1<<20)), max(inUse, float64(st.DbSizeInUse)/(1<<20))
	}
	return size, inUse, nil
}

// close stops the reporters (each revokes its lease) and the replicas, then closes the clients.
func (f *fleetReplicas) close() {
	f.cancel()
	f.wg.Wait()
	for _, c := range f.clients {
		_ = c.Close()
	}
}

// writeSummary prints the fleet table.
func (r *FleetReport) writeSummary(w io.Writer) {
	fmt.Fprintf(w, "\nfleet: %d changes per size through the native admin API, %d writer(s), confirm bound %s; %s\n",
		r.Changes, r.Concurrency, ms(r.ConfirmBoundMs), r.Design)
	fmt.Fprintf(w, "  %5s %6s %9s %8s %8s %9s %9s %9s %9s %9s %6s %9s %10s\n", "nodes", "writes", "etcd cpu", "etcd", "db", "confirm", "confirm",
		"applied", "applied", "all nodes", "min", "idle", "paused")
	fmt.Fprintf(w, "  %5s %6s %9s %8s %8s %9s %9s %9s %9s %9s %6s %9s %10s\n", "", "/chg", "ms/chg", "cores", "MiB", "p50", "p99",
		"all p50", "all p99", "confirmed", "total", "writes/s", "short,stale")
	for _, run := range r.Runs {
		run.writeRow(w)
	}
	for _, run := range r.Runs {
		if len(run.EtcdPerChange) > 0 {
			keys := slices.Sorted(maps.Keys(run.EtcdPerChange))
			parts := make([]string, 0, len(keys))
			for _, k := range keys {
				parts = append(parts, fmt.Sprintf("%s %.1f", k, run.EtcdPerChange[k]))
			}
			fmt.Fprintf(w, "  %d nodes, etcd per change: %s\n", run.Gateways, strings.Join(parts, ", "))
		}
		fmt.Fprintf(w, "  %d nodes idle: %.0f writes/s, %.0f ranges/s, %.0f lease keep-alives/s, etcd %.2f cores\n",
			run.Gateways, run.Idle.WritesPerS, run.Idle.RangesPerS, run.Idle.KeepAlivesPS, run.Idle.EtcdCores)
		if run.Dropped > 0 || run.Reregistered > 0 {
			fmt.Fprintf(w, "  %d nodes: %d answers counted fewer gateways (as few as %d); %d registrations lost and made again during the churn\n",
				run.Gateways, run.Dropped, run.MinTotal, run.Reregistered)
		}
		if p := run.Paused; p != nil {
			fmt.Fprintf(w, "  %d nodes, %d paused: %d/%d answers confirmed by exactly the %d live, answer p50 %s max %s (bound %s, wait max %s); /v1/nodes: %d of %d listed stale (%s), live nodes at most %dms stale\n",
				run.Gateways, p.Paused, p.Short, p.Changes, run.Gateways-p.Paused, ms(p.Answer.P50Ms), ms(p.Answer.MaxMs), ms(p.BoundMs),
				ms(p.ConfirmWait.MaxMs), len(p.Stale), p.Listed, staleList(p.Stale), p.LiveStaleMs)
		}
		for _, e := range run.Examples {
			fmt.Fprintf(w, "  ! %d nodes: %s\n", run.Gateways, e)
		}
	}
}

// writeRow prints one run's line of the table.
func (r *FleetRun) writeRow(w io.Writer) {
	paused := "-"
	if p := r.Paused; p != nil {
		paused = fmt.Sprintf("%d/%d,%v", p.Short, p.Changes, p.StaleOK)
	}
	fmt.Fprintf(w, "  %5d %6.1f %9.2f %8.2f %8.1f %9s %9s %9s %9s %4d/%-4d %6d %9.0f %10s\n", r.Gateways, r.WritesPerChange, r.EtcdCPUMsPerChg,
		r.EtcdCores, r.DBSizeMiB, ms(r.Answer.P50Ms), ms(r.Answer.P99Ms), ms(r.AppliedAll.P50Ms), ms(r.AppliedAll.P99Ms),
		r.Confirmed, r.Changes, r.MinTotal, r.Idle.WritesPerS, paused)
}

// staleList names the first stale nodes with their staleness.
func staleList(stale map[string]int64) string {
	ids := slices.Sorted(maps.Keys(stale))
	parts := make([]string, 0, min(len(ids), 12))
	for _, id := range ids[:min(len(ids), 12)] {
		parts = append(parts, fmt.Sprintf("%s %dms", id, stale[id]))
	}
	if len(ids) > 12 {
		parts = append(parts, fmt.Sprintf("%d more", len(ids)-12))
	}
	return strings.Join(parts, ", ")
}
