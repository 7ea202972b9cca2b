package bench

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDrivesAdminFromOutside: bench reaches the admin API through adminapi's client, never the server package.
func TestDrivesAdminFromOutside(t *testing.T) {
	goTool, err := exec.LookPath("go") // go test puts its own go first on PATH
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(goTool, "list", "-f", `{{join .Imports "\n"}}`, ".").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	imports := strings.Fields(string(out))
	if !strings.Contains(string(out), "github.com/deact/deact/admin/adminapi") {
		t.Fatalf("bench imports %q, not adminapi", imports)
	}
	for _, imp := range imports {
		if imp == "github.com/deact/deact/admin" {
			t.Errorf("bench imports %s", imp)
		}
	}
}
