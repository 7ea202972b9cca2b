package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/deact/deact/internal/procstat"
	"github.com/deact/deact/state"
	"github.com/deact/deact/state/etcdserver"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// SyncConfig configures the initial-sync benchmark. Zero values take the defaults in brackets.
type SyncConfig struct {
	Dir     string // etcd data, the built deactd and its log; required
	Records int    // etcd keys to load: Records/4 orgs with a domain each, Records/4 apps with a client ID each [100000]
	// Deactd is the deactd binary to start; empty builds ./cmd/deactd (go build, from the current module).
	Deactd string
	// Settle is how long after ready the child's memory is sampled again, once the garbage of the initial
	// list has been collected and returned [3s]; negative for no second sample.
	Settle   time.Duration
	RunID    string // prefix of the IDs [random]
	Progress io.Writer
}

// SyncReport is a fresh gateway's time to ready over a loaded etcd, and its memory.
type SyncReport struct {
	Records    int     `json:"records"` // etcd keys under the state prefix
	Orgs       int     `json:"orgs"`
	Apps       int     `json:"apps"`
	LoadS      float64 `json:"loadS"`
	LoadPerS   float64 `json:"loadPerS"`
	Deactd     string  `json:"deactd"`
	BuildS     float64 `json:"buildS,omitempty"`
	ListeningS float64 `json:"listeningS"`              // process start → listeners open (the ready file's listeningAt)
	ReadyS     float64 `json:"readyS"`                  // process start → ready, as /readyz 200 (first list applied; readyAt)
	RSSMiB     float64 `json:"rssMiB"`                  // VmRSS when ready
	PeakRSSMiB float64 `json:"peakRssMiB"`              // VmHWM when ready
	SettledMiB float64 `json:"settledRssMiB,omitempty"` // VmRSS Settle after ready
	SettleS    float64 `json:"settleS,omitempty"`
	// HeapInuseMiB is the child's Go heap in use (its /metrics), read after the RSS samples: the live
	// snapshot plus garbage not yet collected. RSS is higher by the runtime's headroom and freed pages it keeps.
	HeapInuseMiB float64  `json:"heapInuseMiB"`
	Revision     int64    `json:"revision"` // etcd revision after the load
	Applied      int64    `json:"appliedRevision"`
	SpotChecks   int      `json:"spotChecks"`
	WrongChecks  int      `json:"wrongChecks"`
	Examples     []string `json:"examples,omitempty"`
}

// RunSync loads the records into a new embedded etcd (fsync off: only the load gets faster), starts deactd as a
// child process with --role gateway on it, and measures the time until /readyz answers 200 and the child's
// memory then. A few checks against the child confirm it holds the loaded state.
func RunSync(ctx context.Context, cfg SyncConfig) (*SyncReport, error) {
	if cfg.Dir == "" {
		return nil, errors.New("sync: Dir is required")
	}
	if cfg.Records <= 0 {
		cfg.Records = 100_000
	}
	if cfg.RunID == "" {
		cfg.RunID = newRunID()
	}
	if cfg.Settle == 0 {
		cfg.Settle = 3 * time.Second
	}
	rep := &SyncReport{}
	bin := cfg.Deactd
	if bin == "" {
		var took time.Duration
		var err error
		if bin, took, err = buildDeactd(ctx, cfg.Dir, cfg.Progress, "sync"); err != nil {
			return nil, err
		}
		rep.BuildS = took.Seconds()
	}
	rep.Deactd = bin

	srv, err := etcdserver.Start(etcdserver.Config{Name: "sync", Dir: filepath.Join(cfg.Dir, "etcd"), UnsafeNoFsync: true, LogLevel: "fatal"})
	if err != nil {
		return nil, err
	}
	defer srv.Close()
	cli, err := clientv3.New(clientv3.Config{Endpoints: srv.Endpoints(), DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		return nil, err
	}
	defer cli.Close()

	start := time.Now()
	orgs, apps, err := loadRecords(ctx, state.NewStore(cli), cfg.RunID, cfg.Records, cfg.Progress)
	if err != nil {
		return nil, fmt.Errorf("load: %w", err)
	}
	rep.LoadS = time.Since(start).Seconds()
	rep.Orgs, rep.Apps, rep.Records = orgs, apps, 2*orgs+2*apps
	rep.LoadPerS = float64(rep.Records) / rep.LoadS
	resp, err := cli.Get(ctx, "/", clientv3.WithCountOnly())
	if err != nil {
		return nil, err
	}
	rep.Revision = resp.Header.Revision

	if cfg.Progress != nil {
		fmt.Fprintf(cfg.Progress, "sync: %d records loaded in %.1fs; starting deactd --role gateway\n", rep.Records, rep.LoadS)
	}
	return rep, startChild(ctx, cfg, bin, srv.Endpoints(), rep)
}

// loadRecords imports n keys in 4 parallel streams: n/4 orgs, each with a domain (org {run}-s{i}, a tenth of
// them deactivated for every op), and n/4 apps, each with a client ID, app i in org i.
func loadRecords(ctx context.Context, store *state.Store, run string, n int, progress io.Writer) (orgs, apps int, _ error) {
	const streams = 4
	per := max(n/4, 1)
	var wg sync.WaitGroup
	errs := make([]error, streams)
	for s := range streams {
		pr, pw := io.Pipe()
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := store.Import(ctx, pr, state.Change{Actor: "deactbench", Reason: "sync benchmark"})
			pr.CloseWithError(err)
			errs[s] = err
		}()
		go func() {
			w := bufio.NewWriterSize(pw, 64<<10)
			for i := s; i < per; i += streams {
				off := i%10 == 0
				fmt.Fprintf(w, `{"org":{"id":"%s-s%d","disableLogin":%t,"disableToken":%t,"disableBackup":%t,"disableRestore":%t,"domains":["s%d.%s.bench.example"]}}`+"\n",
					run, i, off, off, off, off, i, run)
				fmt.Fprintf(w, `{"app":{"id":"%s-sa%d","projectId":"%s-sp%d","orgId":"%s-s%d","clientIds":["%s-sa%d@sp"],"state":"active"}}`+"\n",
					run, i, run, i%1000, run, i, run, i)
			}
			if err := w.Flush(); err != nil {
				return
			}
			pw.Close()
		}()
	}
	wg.Wait()
	return per, per, errors.Join(errs...)
}

// startChild runs deactd on the loaded etcd, waits for ready, measures, checks a few answers and stops it.
func startChild(ctx context.Context, cfg SyncConfig, bin string, endpoints []string, rep *SyncReport) error {
	start := time.Now()
	c, err := startDeactd(ctx, deactdNode{bin: bin, dir: cfg.Dir, nodeID: "sync-bench", role: "gateway", etcd: endpoints,
		log: filepath.Join(cfg.Dir, "sync-deactd.log")})
	if err != nil {
		return err
	}
	defer c.Stop()
	r := c.Ready
	a := [2]string{r.AuthzAddr, r.URL(r.AdminAddr)}
	// Both times are the child's own (its ready file), from this process's start of it: the same clock.
	rep.ListeningS = r.ListeningAt.Sub(start).Seconds()
	rep.ReadyS = r.ReadyAt.Sub(start).Seconds()
	rss, hwm, err := procstat.Memory(c.PID())
	if err != nil {
		return err
	}
	rep.RSSMiB, rep.PeakRSSMiB = float64(rss)/(1<<20), float64(hwm)/(1<<20)
	rep.Applied = readyRevision(ctx, a[1]+"/readyz")
	if cfg.Settle > 0 {
		select {
		case <-time.After(cfg.Settle):
		case <-ctx.Done():
			return ctx.Err()
		}
		rss, _, err := procstat.Memory(c.PID())
		if err != nil {
			return err
		}
		rep.SettledMiB, rep.SettleS = float64(rss)/(1<<20), cfg.Settle.Seconds()
	}
	rep.HeapInuseMiB = metricValue(ctx, a[1]+"/metrics", "go_memstats_heap_inuse_bytes") / (1 << 20)

	// Spot checks: the first 20 orgs by login (every tenth is deactivated).
	s, err := newGRPCSender([]string{a[0]}, 1)
	if err != nil {
		return err
	}
	defer s.close()
	m := &model{run: cfg.RunID, orgs: make([]subject, min(20, max(cfg.Records/4, 1)))}
	for i := range m.orgs {
		m.orgs[i].id = fmt.Sprintf("%s-s%d", cfg.RunID, i)
		t := &template{kind: kindLogin, org: i, app: -1}
		t.grpc, t.header = m.requests(t, "")
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		deny, err := s.send(cctx, 0, t)
		cancel()
		rep.SpotChecks++
		if want := i%10 == 0; err != nil || deny != want {
			rep.WrongChecks++
			if len(rep.Examples) < maxExamples {
				rep.Examples = append(rep.Examples, fmt.Sprintf("org %s: want %s, got deny=%v err=%v", m.orgs[i].id, verdict(want), deny, err))
			}
		}
	}
	if rep.WrongChecks > 0 {
		return fmt.Errorf("%w: sync: %d of %d spot checks wrong", ErrCorrectness, rep.WrongChecks, rep.SpotChecks)
	}
	return nil
}

// metricValue reads one unlabelled gauge from a Prometheus text endpoint; 0 when it cannot.
func metricValue(ctx context.Context, u, name string) float64 {
	var f float64
	readURL(ctx, u, func(body io.Reader) {
		sc := bufio.NewScanner(body)
		for sc.Scan() {
			if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
				f, _ = strconv.ParseFloat(strings.TrimSpace(v), 64)
				return
			}
		}
	})
	return f
}

// readURL GETs u on a connection of its own and hands the body to read; it does nothing when the GET fails.
func readURL(ctx context.Context, u string, read func(io.Reader)) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return
	}
	client := &http.Client{Transport: &http.Transport{}}
	defer client.CloseIdleConnections()
	resp, err := client.Do(req)
	if err != nil {
		return
	}
	defer resp.Body.Close()
	read(resp.Body)
}

// readyRevision reads appliedRevision from a /readyz answer; 0 when it cannot.
func readyRevision(ctx context.Context, u string) int64 {
	var r struct {
		Revision int64 `json:"appliedRevision"`
	}
	readURL(ctx, u, func(body io.Reader) { _ = json.NewDecoder(body).Decode(&r) })
	return r.Revision
}
