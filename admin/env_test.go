package admin_test

import (
	"bufio"
	"connectrpc.com/connect"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/deact/deact/admin"
	"github.com/deact/deact/internal/wait"
	"github.com/deact/deact/state"
	"github.com/deact/deact/state/etcdserver"
	"github.com/deact/deact/state/etcdtest"
	"github.com/prometheus/client_golang/prometheus"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, etcdtest.LeakOptions()...)
}

const bootstrapToken = "test-bootstrap-token-0123456789"

// env is one admin API on loopback in front of a real embedded etcd, with gateway nodes (replica + reporter)
// on the same etcd, served the way the daemon serves it: HTTP/1.1 and unencrypted HTTP/2 on one listener.
type env struct {
	t      testing.TB
	store  *state.Store
	cli    *clientv3.Client
	fanout *state.Fanout
	api    *admin.API
	url    string
	addr   string
	http1  *http.Client // HTTP/1.1
	h2c    *http.Client // HTTP/2 without TLS, as gRPC needs
	errors *errorLog
	// cluster is the etcd cluster behind the API when envOpts.cluster asked for one.
	cluster     *etcdserver.Cluster
	readTimeout time.Duration
}

type envOpts struct {
	nodes   int
	cluster int // members of an etcd cluster to run instead of one embedded member
	config  func(*admin.Config)
	// readTimeout is the listener's http.Server.ReadTimeout (the daemon's is 30s); zero: none.
	readTimeout time.Duration
	// progressInterval is the gateways' replica ProgressInterval [50ms].
	progressInterval time.Duration
	// directReports runs a report server for the Fanout, so gateways report on streams instead of records.
	directReports bool
}

// errorLog records every log record at error level: client mistakes must never produce one.
type errorLog struct {
	mu   sync.Mutex
	msgs []string
}

func (l *errorLog) Enabled(_ context.Context, lv slog.Level) bool { return lv >= slog.LevelError }
func (l *errorLog) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.msgs = append(l.msgs, r.Message)
	return nil
}
func (l *errorLog) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *errorLog) WithGroup(string) slog.Handler      { return l }
func (l *errorLog) take() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	m := l.msgs
	l.msgs = nil
	return m
}

func newEnv(t testing.TB, o envOpts) *env {
	t.Helper()
	var endpoints []string
	var cluster *etcdserver.Cluster
	if o.cluster > 0 {
		cluster = etcdtest.StartCluster(t, o.cluster)
		endpoints = cluster.Endpoints()
	} else {
		endpoints = etcdtest.Start(t).Endpoints()
	}
	cli := etcdtest.Client(t, endpoints)
	e := &env{t: t, store: state.NewStore(cli), cli: cli, errors: &errorLog{}, cluster: cluster}
	log := slog.New(e.errors)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	run := func(f func(context.Context) error) {
		wg.Add(1)
		go func() { defer wg.Done(); _ = f(ctx) }()
	}
	e.fanout = state.NewFanout(cli, log)
	run(e.fanout.Run)
	if o.progressInterval == 0 {
		o.progressInterval = 50 * time.Millisecond
	}
	if o.directReports {
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		rs, err := state.NewReportServer(state.ReportServerConfig{Client: cli, Fanout: e.fanout, Logger: log})
		if err != nil {
			t.Fatal(err)
		}
		run(func(ctx context.Context) error { return rs.Serve(ctx, lis) })
	}
	reporters := make([]*state.NodeReporter, 0, o.nodes)
	for i := range o.nodes {
		ncli := etcdtest.Client(t, endpoints)
		r := state.NewReplica(state.ReplicaConfig{Client: ncli, Logger: log, ProgressInterval: o.progressInterval, RetryInterval: 20 * time.Millisecond})
		run(r.Run)
		nr, err := state.NewNodeReporter(state.NodeReporterConfig{Client: ncli, Replica: r, NodeID: fmt.Sprintf("node-%d", i), Logger: log})
		if err != nil {
			t.Fatal(err)
		}
		run(nr.Run)
		reporters = append(reporters, nr)
	}
	wait.Eventually(t, "nodes registered", func() bool { return len(e.fanout.Nodes()) == o.nodes })
	if o.directReports {
		wait.Eventually(t, "nodes streaming", func() bool {
			for _, nr := range reporters {
				if nr.Stats().Streams != 1 {
					return false
				}
			}
			return true
		})
	}

	cfg := admin.Config{Store: e.store, Fanout: e.fanout, Logger: log, Registry: prometheus.NewRegistry(), AuthFailureBurst: 1000}
	if o.config != nil {
		o.config(&cfg)
	}
	api, err := admin.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	e.api = api
	if _, err := admin.Bootstrap(context.Background(), e.store, bootstrapToken); err != nil {
		t.Fatal(err)
	}
	e.readTimeout = o.readTimeout
	e.serve(api.Handler())
	return e
}

// serve starts the handler as the daemon does: one listener, HTTP/1.1 plus unencrypted HTTP/2 (for gRPC).
func (e *env) serve(h http.Handler) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		e.t.Fatal(err)
	}
	hs := &http.Server{Handler: h, Protocols: new(http.Protocols), ReadHeaderTimeout: 5 * time.Second, ReadTimeout: e.readTimeout}
	hs.Protocols.SetHTTP1(true)
	hs.Protocols.SetUnencryptedHTTP2(true)
	done := make(chan struct{})
	go func() { defer close(done); _ = hs.Serve(ln) }()
	e.addr = ln.Addr().String()
	e.url = "http://" + e.addr
	e.http1 = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 128}}
	h2 := &http.Transport{Protocols: new(http.Protocols)}
	h2.Protocols.SetUnencryptedHTTP2(true)
	e.h2c = &http.Client{Transport: h2}
	e.t.Cleanup(func() {
		e.http1.CloseIdleConnections()
		h2.CloseIdleConnections()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = hs.Shutdown(ctx)
		<-done
	})
}

// token creates a token with a known secret straight in the store.
func (e *env) token(secret string, tok state.Token) string {
	e.t.Helper()
	tok.Hash = state.HashToken(secret)
	if _, err := e.store.CreateToken(context.Background(), tok, state.Change{Actor: "test"}); err != nil {
		e.t.Fatal(err)
	}
	return secret
}

// revision is etcd's current revision: unchanged means nothing was written.
func (e *env) revision() int64 {
	e.t.Helper()
	resp, err := e.cli.Get(context.Background(), "/deact/v1/")
	if err != nil {
		e.t.Fatal(err)
	}
	return resp.Header.Revision
}

type response struct {
	status int
	header http.Header
	body   string
}

func (r response) json(t testing.TB, v any) {
	t.Helper()
	if err := json.Unmarshal([]byte(r.body), v); err != nil {
		t.Fatalf("body %q: %v", r.body, err)
	}
}

// do sends one HTTP/1.1 request; headers are "Name: value" strings.
func (e *env) do(method, path, body string, headers ...string) response {
	e.t.Helper()
	req, err := http.NewRequest(method, e.url+path, strings.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	if body == "" {
		req.Body = http.NoBody
	}
	for _, h := range headers {
		k, v, _ := strings.Cut(h, ":")
		req.Header.Set(k, strings.TrimSpace(v))
	}
	a := wait.Response(e.t, e.http1, req)
	return response{status: a.Status, header: a.Header, body: a.Body}
}

// raw sends bytes as they are, for requests a client library would not send (e.g. the seed's sample request).
func (e *env) raw(req string) response {
	e.t.Helper()
	conn, err := net.Dial("tcp", e.addr)
	if err != nil {
		e.t.Fatal(err)
	}
	defer conn.Close()
	if _, err := io.WriteString(conn, req); err != nil {
		e.t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufioReader(conn), nil)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return response{status: resp.StatusCode, header: resp.Header, body: string(b)}
}

func bearer(tok string) string { return "Authorization: Bearer " + tok }

func bufioReader(r io.Reader) *bufio.Reader { return bufio.NewReader(r) }

func clientv3WithLease(id clientv3.LeaseID) clientv3.OpOption { return clientv3.WithLease(id) }

func asConnect(err error, target **connect.Error) bool { return errors.As(err, target) }
