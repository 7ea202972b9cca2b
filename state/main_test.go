package state_test

import (
	"testing"

	"github.com/deact/deact/state/etcdtest"
	"go.uber.org/goleak"
)

// TestMain fails the package if a test leaves a goroutine of ours running (replicas, reporters, fan-outs).
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, etcdtest.LeakOptions()...)
}
