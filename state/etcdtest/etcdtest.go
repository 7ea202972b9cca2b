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

// Start starts one member for the test, on free ports (tried again on others when one was taken before the
// member bound it, as StartCluster does).
func Start(t testing.TB) *etcdserver.Server {
	t.Helper()
	var err error
	for range 5 {
		var s *etcdserver.Server
		if s, err = etcdserver.Start(etcdserver.Config{Dir: t.TempDir(), LogLevel: "fatal"}); err == nil {
			t.Cleanup(s.Close)
			return s
		}
		if !errors.Is(err, syscall.EADDRINUSE) {
			break
		}
	}
	t.Fatalf("start etcd: %v", err)
	return nil
}

// StartCluster starts n members for the test. The members' ports are picked free before the members bind them,
// so another process may take one meanwhile: that start is tried again, on other ports.
func StartCluster(t testing.TB, n int) *etcdserver.Cluster {
	t.Helper()
	var err error
	for range 5 {
		var c *etcdserver.Cluster
		if c, err = etcdserver.StartCluster(t.TempDir(), n, "fatal"); err == nil {
			t.Cleanup(c.Close)
			return c
		}
		if !errors.Is(err, syscall.EADDRINUSE) {
			break
		}
	}
	t.Fatalf("start etcd cluster: %v", err)
	return nil
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
