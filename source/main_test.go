package source_test

import (
	"testing"

	"github.com/deact/deact/state/etcdtest"
	"go.uber.org/goleak"
)

// TestMain fails the package if a test leaves a goroutine of ours running (candidates, runners, status writers).
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, etcdtest.LeakOptions()...)
}
