package state_test

import (
	"testing"

	"github.com/deact/deact/state/etcdtest"
	"go.uber.org/goleak"
)

// TestMain fails the package if a test leaves a goroutine of ours running (replicas, reporters, fan-outs).
func TestMain(m *testing.M) {
	// A toxiproxy stub can still be handing its last chunk to a closed link when a test's proxy stops; it is the
	// test harness's goroutine, not ours, and ends with the link.
	opts := append(etcdtest.LeakOptions(), goleak.IgnoreAnyFunction("github.com/Shopify/toxiproxy/v2/toxics.(*ToxicStub).Run"))
	goleak.VerifyTestMain(m, opts...)
}
