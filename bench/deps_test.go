package bench

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// TestBenchDrivesDeactFromOutside: package bench links none of the server's packages; it starts deactd as
// child processes (internal/launch) and reaches the admin API through adminapi's client.
func TestBenchDrivesDeactFromOutside(t *testing.T) {
	t.Parallel()
	goTool, err := exec.LookPath("go") // go test puts its own go first on PATH
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(goTool, "list", "-deps", "github.com/deact/deact/bench").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	deps := strings.Fields(string(out))
	for _, pkg := range []string{
		"github.com/deact/deact/daemon",       // the process itself
		"github.com/deact/deact/admin",        // the admin API's server
		"github.com/deact/deact/deploy/local", // starts daemons in-process
		"github.com/deact/deact/authz",        // the decision
		"github.com/deact/deact/source",       // the upstream followers
		"connectrpc.com/vanguard",             // the server's protocol translation
	} {
		if slices.Contains(deps, pkg) {
			t.Errorf("bench depends on %s", pkg)
		}
	}
	for _, pkg := range []string{"github.com/deact/deact/internal/launch", "github.com/deact/deact/admin/adminapi"} {
		if !slices.Contains(deps, pkg) {
			t.Errorf("bench does not use %s", pkg)
		}
	}
}
