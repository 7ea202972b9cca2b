package main

import (
	"fmt"
	"os"
	"testing"

	"github.com/deact/deact/state/etcdtest"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	if path := os.Getenv(dialAsEnv); path != "" {
		os.Exit(probeDial(path)) // a probe child of TestEmbeddedEtcdIsPrivate, not a test run
	}
	code := m.Run()
	if deactdBuildDir != "" {
		os.RemoveAll(deactdBuildDir)
	}
	if code == 0 {
		if err := goleak.Find(etcdtest.LeakOptions()...); err != nil {
			fmt.Fprintln(os.Stderr, "goleak: errors on successful test run:", err)
			code = 1
		}
	}
	os.Exit(code)
}
