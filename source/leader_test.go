package source_test

import (
	"context"
	"errors"
	"log/slog"
	"net/url"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/Shopify/toxiproxy/v2"
	"github.com/deact/deact/internal/wait"
	"github.com/deact/deact/source"
	"github.com/deact/deact/state/etcdtest"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	clientv3 "go.etcd.io/etcd/client/v3"
)

func quiet() *slog.Logger {
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
}

// fleet tracks which candidates run their work, and the most that ever ran at once.
type fleet struct {
	mu      sync.Mutex
	running map[string]bool
	most    int
	terms   map[string]int
}

func newFleet() *fleet { return &fleet{running: map[string]bool{}, terms: map[string]int{}} }

func (f *fleet) set(node string, on bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.running[node] = on
	if on {
		f.terms[node]++
	}
	n := 0
	for _, r := range f.running {
		if r {
			n++
		}
	}
	f.most = max(f.most, n)
}

func (f *fleet) is(node string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.running[node]
}

func (f *fleet) termsOf(node string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.terms[node]
}

func (f *fleet) resetMax() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.most = 0
}

func (f *fleet) maxAtOnce() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.most
}

// candidate runs a Leader whose work marks the node running until its context ends, and fails on demand.
type candidate struct {
	l      *source.Leader
	cancel context.CancelFunc
	done   chan struct{}
	fail   atomic.Bool
}

func startCandidate(t *testing.T, cli *clientv3.Client, f *fleet, node string, ttl time.Duration) *candidate {
	t.Helper()
	l, err := source.NewLeader(source.LeaderConfig{Client: cli, Name: "zitadel", NodeID: node, TTL: ttl, Logger: quiet(),
		Backoff: source.Backoff{Min: 20 * time.Millisecond, Max: 200 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	c := &candidate{l: l, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(c.done)
		_ = l.Run(ctx, func(ctx context.Context) error {
			f.set(node, true)
			defer f.set(node, false)
			for {
				if c.fail.Load() {
					return errors.New("work failed")
				}
				select {
				case <-ctx.Done():
					return nil
				case <-time.After(5 * time.Millisecond):
				}
			}
		})
	}()
	t.Cleanup(c.stop)
	return c
}

func (c *candidate) stop() {
	c.cancel()
	<-c.done
}

// TestLeaderFailover: the other candidate takes over when the leader's session lease is revoked, when its work
// fails, and when it stops; in the last two they never run at once.
func TestLeaderFailover(t *testing.T) {
	t.Parallel()
	srv := etcdtest.Start(t)
	f := newFleet()
	a := startCandidate(t, etcdtest.Client(t, srv.Endpoints()), f, "a", 2*time.Second)
	wait.Until(t, "a leads", 20*time.Second, func() bool { return f.is("a") && a.l.IsLeader() })
	b := startCandidate(t, etcdtest.Client(t, srv.Endpoints()), f, "b", 2*time.Second)
	admin := etcdtest.Client(t, srv.Endpoints())
	ctx := context.Background()
	if who, err := a.l.Current(ctx); err != nil || who != "a" {
		t.Fatalf("current leader %q, %v", who, err)
	}

	// The leader's lease is revoked (what etcd does when it stops hearing from it): its work ends, b takes over.
	resp, err := admin.Get(ctx, source.ElectionPrefix+"zitadel/", clientv3.WithFirstCreate()...)
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("leader key: %v %v", resp, err)
	}
	if _, err := admin.Revoke(ctx, clientv3.LeaseID(resp.Kvs[0].Lease)); err != nil {
		t.Fatal(err)
	}
	wait.Until(t, "b leads after a's lease is revoked", 20*time.Second, func() bool { return f.is("b") && !f.is("a") })
	// A revoked lease is the one case where the two may overlap for the moment a takes to see its key deleted.
	f.resetMax()

	// The leader's work fails: it steps down, a (campaigning again) takes over.
	b.fail.Store(true)
	wait.Until(t, "a leads after b's work failed", 20*time.Second, func() bool { return f.is("a") })
	b.fail.Store(false)

	// The leader stops: it resigns, and b takes over well before a's lease could expire.
	stopped := time.Now()
	a.stop()
	if f.is("a") {
		t.Fatal("a's work still runs after Run returned")
	}
	wait.Until(t, "b leads after a stopped", 20*time.Second, func() bool { return f.is("b") })
	t.Logf("handover after a clean stop took %s (lease TTL 2s)", time.Since(stopped))
	if got := f.maxAtOnce(); got != 1 {
		t.Fatalf("%d candidates ran at once", got)
	}
	if who, err := b.l.Current(ctx); err != nil || who != "b" {
		t.Fatalf("current leader %q, %v", who, err)
	}
}

// TestLeaderCutOffFromEtcd: a leader that loses etcd stops its work before its lease can expire, so the other
// candidate never runs at the same time; when the network comes back it does not take over again. The lease is
// 5 s so that the margin (TTL/4) holds on a loaded machine under -race.
func TestLeaderCutOffFromEtcd(t *testing.T) {
	t.Parallel()
	srv := etcdtest.Start(t)
	u, err := url.Parse(srv.Endpoints()[0])
	if err != nil {
		t.Fatal(err)
	}
	proxy := toxiproxy.NewProxy(toxiproxy.NewServer(toxiproxy.NewMetricsContainer(prometheus.NewRegistry()), zerolog.Nop()),
		"etcd", "127.0.0.1:0", u.Host)
	if err := proxy.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(proxy.Stop)
	cutCli, err := clientv3.New(clientv3.Config{Endpoints: []string{"http://" + proxy.Listen}, DialTimeout: 2 * time.Second,
		DialKeepAliveTime: time.Second, DialKeepAliveTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cutCli.Close() })

	f := newFleet()
	a := startCandidate(t, cutCli, f, "a", 5*time.Second)
	wait.Until(t, "a leads", 20*time.Second, func() bool { return f.is("a") })
	b := startCandidate(t, etcdtest.Client(t, srv.Endpoints()), f, "b", 5*time.Second)

	proxy.Stop()
	wait.Until(t, "a steps down", 20*time.Second, func() bool { return !f.is("a") })
	wait.Until(t, "b leads", 20*time.Second, func() bool { return f.is("b") })
	if got := f.maxAtOnce(); got != 1 {
		t.Fatalf("%d candidates ran at once: a kept running after its lease could expire", got)
	}
	if err := proxy.Start(); err != nil {
		t.Fatal(err)
	}
	// a reconnects and campaigns; b keeps the lead.
	terms := f.termsOf("a")
	wait.Until(t, "a campaigns again", 20*time.Second, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		resp, err := cutCli.Get(ctx, source.ElectionPrefix+"zitadel/", clientv3.WithPrefix(), clientv3.WithCountOnly())
		return err == nil && resp.Count == 2
	})
	if f.is("a") || f.termsOf("a") != terms || !b.l.IsLeader() {
		t.Fatal("a took over again after reconnecting")
	}
	a.stop()
	b.stop()
}

func TestNewLeaderRejectsBadConfig(t *testing.T) {
	t.Parallel()
	srv := etcdtest.Start(t)
	cli := etcdtest.Client(t, srv.Endpoints())
	for name, cfg := range map[string]source.LeaderConfig{
		"no client":   {Name: "z", NodeID: "n"},
		"bad name":    {Client: cli, Name: "a/b", NodeID: "n"},
		"no node":     {Client: cli, Name: "z"},
		"ttl too low": {Client: cli, Name: "z", NodeID: "n", TTL: time.Second},
	} {
		if _, err := source.NewLeader(cfg); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
