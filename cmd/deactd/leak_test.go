package main

import (
	"os"
	"testing"

	"github.com/deact/deact/state/etcdtest"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	if path := os.Getenv(dialAsEnv); path != "" {
		os.Exit(probeDial(path)) // a probe child of TestEmbeddedEtcdIsPrivate, not a test run
	}
	goleak.VerifyTestMain(m, etcdtest.LeakOptions()...)
}
