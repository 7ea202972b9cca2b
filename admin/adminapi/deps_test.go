package adminapi_test

import (
	"testing"

	"github.com/deact/deact/internal/golist"
)

// TestLeaf: adminapi is what clients link to reach the admin API, so it links none of the server: not package
// admin, nor connect, vanguard or the ZITADEL protos. Of deact's packages it imports state only.
func TestLeaf(t *testing.T) {
	t.Parallel()
	golist.Check(t, "adminapi", golist.Deps(t, "."),
		[]string{"github.com/deact/deact/", "connectrpc.com/"},
		[]string{"github.com/deact/deact/admin/adminapi", "github.com/deact/deact/state"}, nil)
}
