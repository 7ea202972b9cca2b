package main

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// TestLinksNoServer: deactctl reaches the admin API through adminapi only, so it links none of the server: not
// package admin or daemon, nor what only the server needs (connect, vanguard, the ZITADEL protos, the embedded
// etcd server).
func TestLinksNoServer(t *testing.T) {
	t.Parallel()
	goTool, err := exec.LookPath("go") // go test puts its own go first on PATH
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(goTool, "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	deps := strings.Fields(string(out))
	if len(deps) < 10 || !slices.Contains(deps, "github.com/deact/deact/admin/adminapi") {
		t.Fatalf("go list -deps answered %d packages without adminapi: %q", len(deps), deps)
	}
	for _, dep := range deps {
		for _, bad := range []string{
			"github.com/deact/deact/admin", "github.com/deact/deact/daemon", "github.com/deact/deact/state/etcdserver",
		} {
			if dep == bad || strings.HasPrefix(dep, bad+"/") && !strings.HasPrefix(dep, "github.com/deact/deact/admin/adminapi") {
				t.Errorf("deactctl links %s", dep)
			}
		}
		for _, bad := range []string{"connectrpc.com/", "go.etcd.io/etcd/server/"} {
			if strings.HasPrefix(dep, bad) {
				t.Errorf("deactctl links %s", dep)
			}
		}
	}
}
