package bench

import (
	"testing"

	"github.com/deact/deact/internal/golist"
)

// TestBenchDrivesDeactFromOutside: package bench links none of the server's packages; it starts deactd as
// child processes (internal/launch) and reaches the admin API through adminapi's client.
func TestBenchDrivesDeactFromOutside(t *testing.T) {
	t.Parallel()
	golist.Check(t, "bench", golist.Deps(t, "github.com/deact/deact/bench"),
		[]string{
			"github.com/deact/deact/daemon",       // the process itself
			"github.com/deact/deact/admin",        // the admin API's server
			"github.com/deact/deact/deploy/local", // starts daemons in-process
			"github.com/deact/deact/authz",        // the decision
			"github.com/deact/deact/source",       // the upstream followers
			"connectrpc.com/vanguard",             // the server's protocol translation
		},
		[]string{"github.com/deact/deact/admin/adminapi"},
		[]string{"github.com/deact/deact/internal/launch", "github.com/deact/deact/admin/adminapi"})
}
