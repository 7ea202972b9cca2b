// Package sourcetest runs what the end-to-end tests of deact's sources share: a local 3-gateway cluster whose
// admin node follows a fake upstream, an ext_authz client per gateway, and polling of the source's status record.
package sourcetest

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/deact/deact/daemon"
	"github.com/deact/deact/deploy/local"
	"github.com/deact/deact/state"
	"github.com/deact/deact/state/etcdtest"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// Cluster is a started local cluster with an ext_authz client per gateway, in the order of AuthzAddrs. It and
// its connections close at the test's cleanup.
type Cluster struct {
	*local.Cluster
	Gateways []authv3.AuthorizationClient
}

// Start starts a local cluster below dir; admin is applied to the config of its admin node (the one that runs
// the sources).
func Start(t testing.TB, dir string, admin func(*daemon.Config)) *Cluster {
	t.Helper()
	c, err := local.Start(local.Config{Dir: filepath.Join(dir, "cluster"), Daemon: func(dc *daemon.Config) {
		if dc.Role == daemon.AdminNode {
			admin(dc)
		}
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	sc := &Cluster{Cluster: c}
	for _, addr := range c.AuthzAddrs() {
		conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		sc.Gateways = append(sc.Gateways, authv3.NewAuthorizationClient(conn))
	}
	return sc
}

// Status polls the status record of the source named source until ok accepts it and returns it; after
// `within` it fails the test (what names the wait) with the last record seen.
func (c *Cluster) Status(t testing.TB, what, source string, within time.Duration, ok func(state.SourceStatus) bool) state.SourceStatus {
	t.Helper()
	store := state.NewStore(etcdtest.Client(t, c.Etcd.Endpoints()))
	deadline := time.Now().Add(within)
	var last state.SourceStatus
	for time.Now().Before(deadline) {
		all, err := store.ListSourceStatus(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		for _, st := range all {
			if st.Source == source {
				last = st
				if ok(st) {
					return st
				}
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s: status never matched; last %+v", what, last)
	return last
}
