package main

import (
	"testing"

	"github.com/deact/deact/internal/golist"
)

// TestLinksNoServer: deactctl reaches the admin API through adminapi only, so it links none of the server: not
// package admin or daemon, nor what only the server needs (connect, vanguard, the ZITADEL protos, the embedded
// etcd server).
func TestLinksNoServer(t *testing.T) {
	t.Parallel()
	golist.Check(t, "deactctl", golist.Deps(t, "."),
		[]string{"github.com/deact/deact/admin", "github.com/deact/deact/daemon", "github.com/deact/deact/state/etcdserver",
			"connectrpc.com/", "go.etcd.io/etcd/server/"},
		[]string{"github.com/deact/deact/admin/adminapi"},
		[]string{"github.com/deact/deact/admin/adminapi"})
}
