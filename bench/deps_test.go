package bench

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// TestBenchDrivesDeactFromOutside: package bench links none of the server's packages; it starts deactd as
// child processes (internal/launch) and talks to them over their APIs.
func TestBenchDrivesDeactFromOutside(t *testing.T) {
	t.Parallel()
	out, err := exec.Command("go", "list", "-deps", "github.com/deact/deact/bench").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	deps := strings.Fields(string(out))
	for _, pkg := range []string{
		"github.com/deact/deact/daemon",       // the process itself
		"github.com/deact/deact/deploy/local", // starts daemons in-process
		"github.com/deact/deact/authz",        // the decision
		"github.com/deact/deact/source",       // the upstream followers
	} {
		if slices.Contains(deps, pkg) {
			t.Errorf("bench depends on %s", pkg)
		}
	}
	if !slices.Contains(deps, "github.com/deact/deact/internal/launch") {
		t.Error("bench does not start deactd through internal/launch")
	}
}
