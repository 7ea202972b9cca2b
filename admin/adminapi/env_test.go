package adminapi_test

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/deact/deact/admin"
	"github.com/deact/deact/admin/adminapi"
	"github.com/deact/deact/state"
	"github.com/deact/deact/state/etcdtest"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, etcdtest.LeakOptions()...)
}

const rootToken = "adminapi-test-root-token-0123"

// env is the real admin API (admin.New) on loopback in front of a real embedded etcd, with one gateway node
// (replica and reporter) on the same etcd, so that writes are confirmed "1/1".
type env struct {
	t     *testing.T
	url   string
	store *state.Store
}

func newEnv(t *testing.T) *env {
	t.Helper()
	srv := etcdtest.Start(t)
	cli := etcdtest.Client(t, srv.Endpoints())
	log := slog.New(slog.DiscardHandler)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	fanout := state.NewFanout(cli, log)
	replica := state.NewReplica(state.ReplicaConfig{Client: cli, Logger: log, ProgressInterval: 50 * time.Millisecond})
	reporter, err := state.NewNodeReporter(state.NodeReporterConfig{Client: cli, Replica: replica, NodeID: "node-0", Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []func(context.Context) error{fanout.Run, replica.Run, reporter.Run} {
		wg.Add(1)
		go func() { defer wg.Done(); _ = f(ctx) }()
	}
	store := state.NewStore(cli)
	api, err := admin.New(admin.Config{Store: store, Fanout: fanout, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := admin.Bootstrap(ctx, store, rootToken); err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, url: serve(t, api.Handler()), store: store}
	c := e.client(rootToken)
	deadline := time.Now().Add(10 * time.Second)
	for {
		if n, err := c.Nodes(context.Background()); err == nil && len(n.Nodes) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the gateway node did not register")
		}
		time.Sleep(5 * time.Millisecond)
	}
	return e
}

// serve serves h on a loopback port until the test ends and returns its URL.
func serve(t *testing.T, h http.Handler) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	done := make(chan struct{})
	go func() { defer close(done); _ = hs.Serve(ln) }()
	t.Cleanup(func() { _ = hs.Close(); <-done })
	return "http://" + ln.Addr().String()
}

// client is a client of the env's API with token; it is closed when the test ends.
func (e *env) client(token string, cfg ...func(*adminapi.Config)) *adminapi.Client {
	e.t.Helper()
	c := adminapi.Config{URL: e.url, Token: token}
	for _, f := range cfg {
		f(&c)
	}
	api, err := adminapi.New(c)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(api.Close)
	return api
}

// raw GETs path with the root token and returns the body as the server sent it.
func (e *env) raw(method, path, body string) []byte {
	e.t.Helper()
	req, err := http.NewRequest(method, e.url+path, strings.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+rootToken)
	hc := &http.Client{Transport: &http.Transport{}}
	defer hc.CloseIdleConnections()
	resp, err := hc.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode/100 != 2 {
		e.t.Fatalf("%s %s: %d %s %v", method, path, resp.StatusCode, b, err)
	}
	return b
}
