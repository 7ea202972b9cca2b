package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/deact/deact/admin/adminapi"
	"github.com/deact/deact/state"
)

// AdminConfig configures the admin write benchmark. Zero values take the defaults in brackets.
type AdminConfig struct {
	// Deployment is the deact under test (admin URL and token); nil starts the local cluster in Dir, with
	// the deactd binary Deactd [built from ./cmd/deactd].
	Deployment *Deployment
	Dir        string
	Deactd     string

	Concurrency int           // concurrent writers [64]
	Duration    time.Duration // [10s]
	MaxWrites   int64         // bound on writes; 0 for none
	// ExpectNodes is the confirmation every write must get, e.g. 3 for "3/3" [the deployment's gateways].
	ExpectNodes int
	RunID       string // prefix of the org IDs [random]
	Progress    io.Writer
}

// AdminReport is the throughput of durable, confirmed writes through the native admin API: each writer
// deactivates (every op) and then reactivates orgs that no other writer touches.
type AdminReport struct {
	Deployment   string      `json:"deployment"`
	Concurrency  int         `json:"concurrency"`
	DurationS    float64     `json:"durationS"`
	ExpectNodes  int         `json:"expectNodes"`
	Writes       int64       `json:"writes"`
	WritesPerS   float64     `json:"writesPerS"`
	DeactPerS    float64     `json:"deactivationsPerS"`
	Latency      Percentiles `json:"latency"`     // request sent → answer (commit + confirmation wait)
	ConfirmWait  Percentiles `json:"confirmWait"` // X-Deact-Confirm-Wait-Ms
	NotConfirmed int64       `json:"notConfirmed"`
	Errors       int64       `json:"errors"`
	Timeline     []Window    `json:"timeline"`
	Examples     []string    `json:"examples,omitempty"`
	// EtcdPerWrite is what the deployment's etcd members did during the run, summed over the members and
	// divided by Writes: requests handled by gRPC method (Range, Txn, ...) and "walFsync", the WAL syncs. It
	// counts every client (gateways' node records, probes, keep-alives too). Only when etcd runs in this
	// process (the local cluster); a machine with slower disks shows the same counts and fewer writes/s.
	EtcdPerWrite map[string]float64 `json:"etcdPerWrite,omitempty"`
}

func (r *AdminReport) err() error {
	var errs []error
	if r.Errors > 0 {
		errs = append(errs, fmt.Errorf("%w: admin: %d writes failed", ErrCorrectness, r.Errors))
	}
	if r.NotConfirmed > 0 {
		errs = append(errs, fmt.Errorf("%w: admin: %d writes not confirmed by %d/%d nodes", ErrCorrectness, r.NotConfirmed, r.ExpectNodes, r.ExpectNodes))
	}
	return errors.Join(errs...)
}

// RunAdmin runs the admin write benchmark. It returns an error wrapping ErrCorrectness if a write failed or was
// not confirmed by every expected node.
func RunAdmin(ctx context.Context, cfg AdminConfig) (*AdminReport, error) {
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = 64
	}
	if cfg.Duration <= 0 {
		cfg.Duration = 10 * time.Second
	}
	if cfg.RunID == "" {
		cfg.RunID = newRunID()
	}
	dep, done, err := deploymentOrLocal(ctx, cfg.Deployment, cfg.Dir, cfg.Deactd, "admin", cfg.Progress)
	if err != nil {
		return nil, err
	}
	defer done()
	if cfg.ExpectNodes <= 0 {
		cfg.ExpectNodes = dep.Gateways()
	}
	ac, err := newAdminClient(dep.AdminURL, dep.AdminToken, cfg.Concurrency, 2*time.Second)
	if err != nil {
		return nil, err
	}
	defer ac.Close()
	if cfg.ExpectNodes > 0 {
		if err := waitNodes(ctx, ac, cfg.ExpectNodes); err != nil {
			return nil, err
		}
	}

	rep := &AdminReport{Deployment: dep.Desc, Concurrency: cfg.Concurrency, DurationS: cfg.Duration.Seconds(), ExpectNodes: cfg.ExpectNodes}
	waits := newSampleSet(0)
	var notConfirmed, failed atomic.Int64
	var mu sync.Mutex
	example := func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		if len(rep.Examples) < maxExamples {
			rep.Examples = append(rep.Examples, fmt.Sprintf(format, args...))
		}
	}
	// Writer w's k-th write: org k/2 of its own, deactivated when k is even, reactivated when odd.
	next := make([]int, cfg.Concurrency)
	exec := func(ctx context.Context, w int, _ time.Time) (sent, done time.Time) {
		k := next[w]
		org := fmt.Sprintf("%s-adm%d-%d", cfg.RunID, w, k/2)
		sent = time.Now()
		a, err := setOrg(ctx, ac, org, k%2 == 0)
		done = time.Now()
		var refused *adminapi.Error
		switch {
		case errors.As(err, &refused):
			failed.Add(1)
			example("%s: HTTP %d %s", org, refused.Status, refused.Message)
		case err != nil:
			if ctx.Err() == nil {
				failed.Add(1)
				example("%s: %v", org, err)
			}
			return sent, done
		case !confirmedByAll(a.Confirmation) || (cfg.ExpectNodes > 0 && a.Confirmation.Total != cfg.ExpectNodes):
			notConfirmed.Add(1)
			example("%s: confirmed %d/%d", org, a.Confirmation.Confirmed, a.Confirmation.Total)
		}
		if err == nil {
			waits.add(time.Duration(a.Confirmation.WaitedMs * float64(time.Millisecond)))
		}
		next[w] = k + 1
		return sent, done
	}
	live := newLiveStatus()
	stop := make(chan struct{})
	var bg sync.WaitGroup
	if cfg.Progress != nil {
		bg.Add(1)
		go func() {
			defer bg.Done()
			progress(cfg.Progress, "admin writes", cfg.Duration, live, func() string {
				return fmt.Sprintf("not confirmed %d  failed %d", notConfirmed.Load(), failed.Load())
			}, stop)
		}()
	}
	rctx, cancel := context.WithTimeout(ctx, cfg.Duration+time.Minute)
	defer cancel()
	var etcdBefore map[string]float64
	if dep.EtcdInProcess {
		etcdBefore = etcdCounts()
	}
	out := schedule{Workers: cfg.Concurrency, Duration: cfg.Duration, MaxRequests: cfg.MaxWrites}.run(rctx, exec, live)
	close(stop)
	bg.Wait()
	if ctx.Err() != nil {
		return rep, ctx.Err()
	}
	rep.Writes = out.Completed - failed.Load()
	if out.Elapsed > 0 {
		rep.WritesPerS = float64(rep.Writes) / out.Elapsed.Seconds()
		rep.DeactPerS = rep.WritesPerS / 2
	}
	rep.Latency = percentilesOf(out.Corrected)
	rep.ConfirmWait = waits.percentiles()
	rep.NotConfirmed, rep.Errors = notConfirmed.Load(), failed.Load()
	rep.Timeline = out.Timeline
	if etcdBefore != nil && rep.Writes > 0 {
		rep.EtcdPerWrite = map[string]float64{}
		for k, n := range etcdCounts() {
			if d := n - etcdBefore[k]; d > 0 {
				rep.EtcdPerWrite[k] = d / float64(rep.Writes)
			}
		}
	}
	return rep, rep.err()
}

// newAdminClient is a client of the admin API at base (a loopback URL), with conns connections, asking every
// write to wait up to confirm for the gateways.
func newAdminClient(base, token string, conns int, confirm time.Duration) (*adminapi.Client, error) {
	if err := checkLoopbackURL(base); err != nil {
		return nil, err
	}
	if token == "" {
		return nil, fmt.Errorf("admin API %s: no admin token (--admin-token or DEACT_ADMIN_TOKEN)", base)
	}
	tr := &http.Transport{MaxIdleConns: conns, MaxIdleConnsPerHost: conns, MaxConnsPerHost: conns, IdleConnTimeout: time.Minute}
	return adminapi.New(adminapi.Config{URL: base, Token: token, HTTP: &http.Client{Transport: tr, Timeout: time.Minute},
		ConfirmTimeout: confirm})
}

// setOrg deactivates (every op) or reactivates org id.
func setOrg(ctx context.Context, ac *adminapi.Client, id string, deactivate bool) (adminapi.WriteResult, error) {
	if deactivate {
		return ac.DeactivateOrg(ctx, id, adminapi.DeactivateRequest{Ops: "all", Reason: "deactbench"})
	}
	return ac.ReactivateOrg(ctx, id, adminapi.DeactivateRequest{})
}

// confirmedByAll reports whether every live gateway node confirmed a write, and there was at least one.
func confirmedByAll(c state.Confirmation) bool { return c.Total > 0 && c.Confirmed == c.Total }

// waitNodes waits until at least n gateway nodes are registered (bounded by ctx and 30 s).
func waitNodes(ctx context.Context, ac *adminapi.Client, n int) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for {
		nodes, err := ac.Nodes(ctx)
		if err == nil && len(nodes.Nodes) >= n {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %d gateway nodes to register (have %d, last error %v): %w", n, len(nodes.Nodes), err, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}
