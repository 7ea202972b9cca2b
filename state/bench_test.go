package state_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/deact/deact/internal/launch"
	"github.com/deact/deact/internal/procstat"
	"github.com/deact/deact/state"
	"github.com/deact/deact/state/etcdserver"
	"github.com/deact/deact/state/etcdtest"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// BenchmarkSnapshotLookup measures one org lookup in a snapshot of 10⁵ orgs, and one app lookup (by app ID, and
// by project and app) among 10⁵ apps: the hot path of every decision.
func BenchmarkSnapshotLookup(b *testing.B) {
	const n = 100_000
	recs := make([]state.Record, 0, 2*n)
	ids := make([]string, n)
	for i := range n {
		ids[i] = strconv.Itoa(69629023906488334 + i)
		recs = append(recs, state.Record{Org: &state.Org{ID: ids[i], Disabled: state.Ops(i % 2)}})
	}
	projects := make([]string, n)
	for i := range n {
		projects[i] = strconv.Itoa(79629023906488334 + i/10)
		st := state.Active
		if i%2 == 0 {
			st = state.Deactivated
		}
		recs = append(recs, state.Record{App: &state.App{ID: ids[i], ProjectID: projects[i], OrgID: ids[i/10], State: st}})
	}
	snap, err := state.BuildSnapshot(1, recs...)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("hit", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			if snap.Org(ids[i%len(ids)]) == nil {
				b.Fatal("missing")
			}
			i++
		}
	})
	b.Run("miss", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if snap.Org("1") != nil {
				b.Fatal("found")
			}
		}
	})
	b.Run("app-id", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			if snap.Apps(ids[i%n]) == nil {
				b.Fatal("missing")
			}
			i++
		}
	})
	b.Run("project-app", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			if snap.App(projects[i%n], ids[i%n]) == nil {
				b.Fatal("missing")
			}
			i++
		}
	})
}

// BenchmarkPropagation measures the time from a committed write to every replica having applied it, for 1, 10
// and 100 replicas (each with its own etcd connection) on one embedded etcd on loopback. It reports p50/p99/max.
func BenchmarkPropagation(b *testing.B) {
	for _, n := range []int{1, 10, 100} {
		b.Run(fmt.Sprintf("replicas=%d", n), func(b *testing.B) {
			srv := etcdtest.Start(b)
			store := state.NewStore(etcdtest.Client(b, srv.Endpoints()))
			replicas := make([]*state.Replica, n)
			for i := range replicas {
				replicas[i] = benchReplica(b, srv.Endpoints())
			}
			ctx := context.Background()
			var lat []time.Duration
			i := 0
			for b.Loop() {
				id := "o" + strconv.Itoa(i%50)
				var res state.Result
				var err error
				if i/50%2 == 0 {
					res, err = store.DeactivateOrg(ctx, id, state.OpsAll, false, who)
				} else {
					res, err = store.ReactivateOrg(ctx, id, who)
				}
				if err != nil {
					b.Fatal(err)
				}
				committed := time.Now()
				for _, r := range replicas {
					waitApplied(r, res.Revision)
				}
				lat = append(lat, time.Since(committed))
				i++
			}
			reportPercentiles(b, lat)
		})
	}
}

// waitApplied blocks (without spinning, which would steal the CPU the replicas need) until r has applied rev.
func waitApplied(r *state.Replica, rev int64) {
	for {
		changed := r.Changed()
		if r.AppliedRevision() >= rev {
			return
		}
		<-changed
	}
}

func benchReplica(b *testing.B, endpoints []string) *state.Replica {
	r := state.NewReplica(state.ReplicaConfig{Client: etcdtest.Client(b, endpoints), Logger: quietLogger()})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = r.Run(ctx) }()
	b.Cleanup(func() { cancel(); <-done })
	if err := r.WaitReady(context.Background()); err != nil {
		b.Fatal(err)
	}
	return r
}

func reportPercentiles(b *testing.B, lat []time.Duration) {
	if len(lat) == 0 {
		return
	}
	slices.Sort(lat)
	pct := func(p float64) float64 { return float64(lat[int(p*float64(len(lat)-1))].Microseconds()) / 1000 }
	b.ReportMetric(pct(0.5), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
	b.ReportMetric(pct(1), "max-ms")
}

// BenchmarkInitialSync loads DEACT_SYNC_RECORDS state records (default 10⁶ keys: orgs, their domains, apps and
// their client IDs) into an embedded etcd, then measures a fresh sync of them three ways:
//
//   - gateway: what an operator's gateway node costs when it lists etcd (--seeds=false). deactd --role gateway
//     runs as a child process against that etcd (built from this module), so neither the load generator nor etcd
//     shares its memory: its time from start to /readyz 200, its peak RSS (VmHWM, the figure a container's
//     memory limit must cover), its RSS once ready and 3 s later, and its Go heap then (/metrics).
//   - gateway-seeded: the same gateway seeded by an admin node (deactd --role admin, a child process too, whose
//     replica is synced first), as gateways are by default (state/seed.go); and the admin node's CPU to serve it.
//   - replica: one Replica in this process: time to ready and the heap its snapshot holds.
//
// The gateway's figures are printed beside etcd's own floor in the same run: a client that reads the same stream
// and drops every record (etcd's range, on this host, shares its cores with the gateway).
//
// Run: make bench-sync (DEACT_SYNC_RECORDS=10000000 make bench-sync for 10⁷).
func BenchmarkInitialSync(b *testing.B) {
	n := 1_000_000
	if v := os.Getenv("DEACT_SYNC_RECORDS"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil {
			b.Fatal(err)
		}
	}
	srv, err := etcdserver.Start(etcdserver.Config{Dir: b.TempDir(), UnsafeNoFsync: true, LogLevel: "fatal"})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(srv.Close)
	store := state.NewStore(etcdtest.Client(b, srv.Endpoints()))
	loadStart := time.Now()
	loadRecords(b, store, n)
	b.Logf("%d records loaded in %.1fs", n, time.Since(loadStart).Seconds())

	bin := filepath.Join(b.TempDir(), "deactd")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/deact/deact/cmd/deactd").CombinedOutput(); err != nil {
		b.Fatalf("build deactd: %v: %s", err, out)
	}
	b.Run("gateway", func(b *testing.B) {
		for b.Loop() {
			before := drainFloor(b, srv.Endpoints(), n)
			g := measureGateway(b, bin, srv.Endpoints(), 3*time.Second, 0, "--seeds=false")
			floor := (before + drainFloor(b, srv.Endpoints(), n)) / 2
			fmt.Printf("etcd floor: a client that drops every record streams the %d records in %.2fs (mean of one drain before "+
				"and one after the gateway); the gateway's ready is %.2f× that\n", n, floor.Seconds(), g.ready.Seconds()/floor.Seconds())
			b.ReportMetric(floor.Seconds(), "etcd-floor-s")
			b.ReportMetric(g.ready.Seconds(), "ready-s")
			b.ReportMetric(g.cpu.Seconds(), "cpu-to-ready-s")
			b.ReportMetric(g.peak, "peak-rss-MiB")
			b.ReportMetric(g.rss, "ready-rss-MiB")
			b.ReportMetric(g.settled, "settled-rss-MiB")
			b.ReportMetric(g.heap, "settled-heap-MiB")
			b.ReportMetric(float64(n), "records")
			fmt.Printf("sync of %d records into deactd --role gateway (child process): ready in %.2fs (%.2fs of CPU); RSS peak %.0f MiB, "+
				"%.0f MiB when ready, %.0f MiB 3s later; Go heap in use then %.0f MiB\n", n, g.ready.Seconds(), g.cpu.Seconds(), g.peak, g.rss, g.settled, g.heap)
		}
	})
	b.Run("gateway-seeded", func(b *testing.B) {
		admin := startSeedingAdmin(b, bin, srv.Endpoints())
		for b.Loop() {
			adminCPU := procCPU(b, admin.PID())
			g := measureGateway(b, bin, srv.Endpoints(), 3*time.Second, admin.PID())
			adminCPU = g.otherCPU - adminCPU
			if !g.seeded {
				log, _ := os.ReadFile(g.log)
				b.Fatalf("the gateway was not seeded: it listed etcd. Its log:\n%s", log)
			}
			b.ReportMetric(g.ready.Seconds(), "ready-s")
			b.ReportMetric(g.cpu.Seconds(), "cpu-to-ready-s")
			b.ReportMetric(adminCPU.Seconds(), "admin-cpu-s")
			b.ReportMetric(g.peak, "peak-rss-MiB")
			b.ReportMetric(g.settled, "settled-rss-MiB")
			b.ReportMetric(float64(n), "records")
			fmt.Printf("sync of %d records into deactd --role gateway seeded by deactd --role admin (child processes): ready in %.2fs "+
				"(%.2fs of CPU; the admin node's to serve it %.2fs); RSS peak %.0f MiB, %.0f MiB when ready, %.0f MiB 3s later; Go heap in use then %.0f MiB\n",
				n, g.ready.Seconds(), g.cpu.Seconds(), adminCPU.Seconds(), g.peak, g.rss, g.settled, g.heap)
		}
	})
	b.Run("replica", func(b *testing.B) {
		for b.Loop() {
			runtime.GC()
			var before runtime.MemStats
			runtime.ReadMemStats(&before)
			start := time.Now()
			cli := etcdtest.Client(b, srv.Endpoints())
			r := state.NewReplica(state.ReplicaConfig{Client: cli, Logger: quietLogger()})
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() { defer close(done); _ = r.Run(ctx) }()
			if err := r.WaitReady(ctx); err != nil {
				b.Fatal(err)
			}
			ready := time.Since(start)
			runtime.GC()
			var after runtime.MemStats
			runtime.ReadMemStats(&after)
			if got := r.Snapshot().Len(); got < n {
				b.Fatalf("replica holds %d records, want ≥ %d", got, n)
			}
			b.ReportMetric(ready.Seconds(), "ready-s")
			b.ReportMetric(float64(after.HeapInuse-before.HeapInuse)/(1<<20), "snapshot-MiB")
			b.ReportMetric(float64(n), "records")
			cancel()
			<-done
			cli.Close()
		}
	})
}

// startSeedingAdmin starts bin as deactd --role admin on endpoints and waits until it serves seeds (its
// replica is ready and its registry entry says so) and is idle.
func startSeedingAdmin(b *testing.B, bin string, endpoints []string) *launch.Process {
	dir := b.TempDir()
	logf, err := os.Create(filepath.Join(dir, "deactd.log"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { logf.Close() })
	p, err := launch.Start(context.Background(), launch.Options{
		Argv: []string{bin, "--role", "admin", "--etcd-endpoints", strings.Join(endpoints, ","), "--data-dir", dir,
			"--admin-addr", "127.0.0.1:0", "--report-addr", "127.0.0.1:0", "--log-level", "warn"},
		ReadyFile: filepath.Join(dir, "ready.json"), Stderr: logf, Timeout: 10 * time.Minute, StopTimeout: 30 * time.Second,
	})
	if err != nil {
		b.Fatalf("deactd admin: %v (log %s)", err, logf.Name())
	}
	b.Cleanup(func() { _ = p.Stop() })
	cli := etcdtest.Client(b, endpoints)
	for deadline := time.Now().Add(10 * time.Minute); ; time.Sleep(50 * time.Millisecond) {
		resp, err := cli.Get(context.Background(), state.AdminsPrefix, clientv3.WithPrefix())
		if err == nil && len(resp.Kvs) == 1 && strings.Contains(string(resp.Kvs[0].Value), `"seeds":true`) {
			break
		}
		if time.Now().After(deadline) {
			b.Fatal("the admin node does not serve seeds")
		}
	}
	// An admin node that gateways restart against has been up a while: it is not still collecting what its own
	// list left. Wait for it to be idle (under 2% of a core over half a second).
	for deadline, last := time.Now().Add(time.Minute), procCPU(b, p.PID()); time.Now().Before(deadline); {
		time.Sleep(500 * time.Millisecond)
		cpu := procCPU(b, p.PID())
		if cpu-last < 10*time.Millisecond {
			break
		}
		last = cpu
	}
	return p
}

// drainFloor is the time a client that parses the list's stream as a replica does, and drops every record, takes
// to read the whole state: what etcd itself costs, on the same host in the same run.
func drainFloor(b *testing.B, endpoints []string, n int) time.Duration {
	cli := etcdtest.Client(b, endpoints)
	defer cli.Close()
	start := time.Now()
	got, err := state.DrainList(context.Background(), cli)
	if err != nil {
		b.Fatal(err)
	}
	if got < n {
		b.Fatalf("drained %d records, want ≥ %d", got, n)
	}
	return time.Since(start)
}

// gatewayRuns numbers the gateway children, each with a node ID of its own: one that took its predecessor's
// would wait for the predecessor's registration to be gone.
var gatewayRuns atomic.Int64

// gatewayFigures are one gateway child's sync: time to ready, the CPU it used until then (user and system, a
// figure a loaded host distorts less than the time), and memory in MiB.
type gatewayFigures struct {
	ready, cpu               time.Duration
	otherCPU                 time.Duration // the CPU process other (the seeding admin node) has used, read at ready
	seeded                   bool          // the gateway took its first snapshot from an admin node
	log                      string        // the gateway's log file
	peak, rss, settled, heap float64
}

// measureGateway starts bin as deactd --role gateway (with args) on endpoints through the launcher (which waits
// for its ready file: the replica synced and the node registered), reads its memory from /proc then and settle
// later, and stops it. other, if not 0, is a process whose CPU is read at ready too.
func measureGateway(b *testing.B, bin string, endpoints []string, settle time.Duration, other int, args ...string) gatewayFigures {
	dir := b.TempDir()
	logf, err := os.Create(filepath.Join(dir, "deactd.log"))
	if err != nil {
		b.Fatal(err)
	}
	defer logf.Close()
	start := time.Now()
	p, err := launch.Start(context.Background(), launch.Options{
		Argv: append([]string{bin, "--role", "gateway", "--etcd-endpoints", strings.Join(endpoints, ","),
			"--data-dir", dir, "--node-id", fmt.Sprintf("sync-bench-%d", gatewayRuns.Add(1)), "--authz-addr", "127.0.0.1:0", "--http-check-addr", "127.0.0.1:0",
			"--admin-addr", "127.0.0.1:0", "--log-level", "warn"}, args...),
		ReadyFile: filepath.Join(dir, "ready.json"), Stderr: logf, Timeout: 10 * time.Minute, StopTimeout: 30 * time.Second,
	})
	if err != nil {
		b.Fatalf("deactd gateway: %v (log %s)", err, logf.Name())
	}
	defer func() { _ = p.Stop() }()
	admin := p.Ready.URL(p.Ready.AdminAddr)
	hc := &http.Client{Transport: &http.Transport{}, Timeout: 10 * time.Second}
	defer hc.CloseIdleConnections()
	pid := p.PID()
	g := gatewayFigures{ready: time.Since(start), cpu: procCPU(b, pid), log: logf.Name()}
	if other != 0 {
		g.otherCPU = procCPU(b, other)
	}
	g.rss, g.peak = procMiB(b, pid)
	time.Sleep(settle)
	g.settled, _ = procMiB(b, pid)
	resp, err := hc.Get(admin + "/metrics")
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	for sc := bufio.NewScanner(resp.Body); sc.Scan(); {
		if v, ok := strings.CutPrefix(sc.Text(), "go_memstats_heap_inuse_bytes "); ok {
			f, _ := strconv.ParseFloat(strings.TrimSpace(v), 64)
			g.heap = f / (1 << 20)
		}
		g.seeded = g.seeded || sc.Text() == "deact_replica_seeded 1"
	}
	return g
}

// procCPU is the CPU time process pid has used.
func procCPU(b *testing.B, pid int) time.Duration {
	d, err := procstat.CPU(pid)
	if err != nil {
		b.Fatal(err)
	}
	return d
}

// procMiB reads VmRSS and VmHWM of a process, in MiB.
func procMiB(b *testing.B, pid int) (rss, hwm float64) {
	r, h, err := procstat.Memory(pid)
	if err != nil {
		b.Fatal(err)
	}
	return float64(r) / (1 << 20), float64(h) / (1 << 20)
}

// loadRecords imports n state records (etcd keys): n/4 orgs, each with one domain, and n/4 apps, each with one
// client ID; a tenth of the orgs deactivated. It writes in parallel streams.
func loadRecords(b *testing.B, store *state.Store, n int) {
	const streams = 4
	var wg sync.WaitGroup
	errs := make(chan error, streams)
	for s := range streams {
		pr, pw := io.Pipe()
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := store.Import(context.Background(), pr, who)
			pr.CloseWithError(err)
			errs <- err
		}()
		go func() {
			var sb strings.Builder
			for i := s; i < n/4; i += streams {
				sb.Reset()
				id := strconv.Itoa(100000000000000000 + i)
				dis := i%10 == 0
				fmt.Fprintf(&sb, `{"org":{"id":"%s","disableLogin":%t,"disableToken":%t,"domains":["d%s.example"]}}`+"\n", id, dis, dis, id)
				fmt.Fprintf(&sb, `{"app":{"id":"a%s","projectId":"p%d","orgId":"%s","clientIds":["c%s@p"]}}`+"\n", id, i%1000, id, id)
				if _, err := io.WriteString(pw, sb.String()); err != nil {
					return
				}
			}
			pw.Close()
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			b.Fatal(err)
		}
	}
}
