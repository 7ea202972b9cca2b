// Package etcdtest gives tests a real etcd: an embedded member (or a 3-member cluster) on free loopback ports
// with its data in the test's temporary directory, and a client for it. Everything stops at test cleanup.
package etcdtest

import (
	"errors"
	"syscall"
	"testing"
	"time"

	"github.com/deact/deact/state/etcdserver"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/goleak"
	"go.uber.org/zap"
)

// Start starts one member for the test.
func Start(t testing.TB) *etcdserver.Server {
	t.Helper()
	s, err := onFreePorts(func() (*etcdserver.Server, error) {
		return etcdserver.Start(etcdserver.Config{Dir: t.TempDir(), LogLevel: "fatal"})
	})
	if err != nil {
		t.Fatalf("start etcd: %v", err)
	}
	t.Cleanup(s.Close)
	return s
}

// StartCluster starts n members for the test.
func StartCluster(t testing.TB, n int) *etcdserver.Cluster {
	t.Helper()
	c, err := onFreePorts(func() (*etcdserver.Cluster, error) { return etcdserver.StartCluster(t.TempDir(), n, "fatal") })
	if err != nil {
		t.Fatalf("start etcd cluster: %v", err)
	}
	t.Cleanup(c.Close)
	return c
}

// onFreePorts runs start, again (up to 5 times) when it failed on a port in use: members' ports are picked free
// before the members bind them, so another process may take one meanwhile; each try picks others.
func onFreePorts[T any](start func() (T, error)) (T, error) {
	var v T
	var err error
	for range 5 {
		if v, err = start(); err == nil || !errors.Is(err, syscall.EADDRINUSE) {
			break
		}
	}
	return v, err
}

// Client returns a client for endpoints, closed at cleanup.
func Client(t testing.TB, endpoints []string) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   endpoints,
		DialTimeout: 5 * time.Second,
		Logger:      zap.NewNop(),
	})
	if err != nil {
		t.Fatalf("etcd client: %v", err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

// Restart starts a member again from the configuration (and data) of one that was closed.
func Restart(t testing.TB, cfg etcdserver.Config) *etcdserver.Server {
	t.Helper()
	s, err := etcdserver.Start(cfg)
	if err != nil {
		t.Fatalf("restart etcd: %v", err)
	}
	t.Cleanup(s.Close)
	return s
}

// LeakOptions are the goleak options for packages whose tests run embedded etcd: they ignore goroutines that
// etcd's server and client libraries keep for the whole process, and the keep-alive HTTP connections members
// of a cluster probe each other with, which outlive a member's Close. Nothing of deact's is ignored.
func LeakOptions() []goleak.Option {
	return []goleak.Option{
		goleak.IgnoreTopFunction("go.etcd.io/etcd/pkg/v3/traceutil.init.func1"),
		goleak.IgnoreTopFunction("google.golang.org/grpc/internal/grpcsync.(*CallbackSerializer).run"),
		goleak.IgnoreTopFunction("gopkg.in/natefinch/lumberjack%2ev2.(*Logger).millRun"),
		goleak.IgnoreAnyFunction("go.opencensus.io/stats/view.(*worker).start"),
		goleak.IgnoreAnyFunction("github.com/soheilhy/cmux.(*MuxConn).Read"),
		goleak.IgnoreAnyFunction("net/http.(*connReader).abortPendingRead"),
		goleak.IgnoreAnyFunction("net/http.(*persistConn).readLoop"),
		goleak.IgnoreAnyFunction("net/http.(*persistConn).writeLoop"),
	}
}
