package adminapi_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestLeaf: adminapi is what clients link to reach the admin API, so it links none of the server: not package
// admin, nor connect, vanguard or the ZITADEL protos. Of deact's packages it imports state only.
func TestLeaf(t *testing.T) {
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
	if len(deps) < 10 {
		t.Fatalf("go list -deps answered %q", deps)
	}
	for _, dep := range deps {
		ours := strings.HasPrefix(dep, "github.com/deact/deact/")
		if ours && dep != "github.com/deact/deact/admin/adminapi" && dep != "github.com/deact/deact/state" ||
			strings.HasPrefix(dep, "connectrpc.com/") {
			t.Errorf("adminapi links %s", dep)
		}
	}
}
