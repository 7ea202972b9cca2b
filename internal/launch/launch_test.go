package launch_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/deact/deact/internal/launch"
	"github.com/deact/deact/internal/procstat"
)

// The test binary plays the child: with fakeChildEnv set it behaves as the variable says (see TestMain).
const fakeChildEnv = "LAUNCH_TEST_CHILD"

func TestMain(m *testing.M) {
	if mode := os.Getenv(fakeChildEnv); mode != "" {
		os.Exit(fakeChild(mode, os.Args[1:]))
	}
	os.Exit(m.Run())
}

// fakeChild is a deactd stand-in: "ready" writes the ready file given by --ready-file and waits for SIGTERM
// (any signal ends it); "die" writes to stderr and exits 3; "hang" never gets ready; "other-pid" writes a
// ready file that names another process.
func fakeChild(mode string, args []string) int {
	var path string
	for i, a := range args {
		if a == "--ready-file" && i+1 < len(args) {
			path = args[i+1]
		}
	}
	switch mode {
	case "die":
		os.Stderr.WriteString("starting\nfatal: no etcd at unix:///nowhere\n")
		return 3
	case "hang":
		os.Stderr.WriteString("waiting for etcd\n")
		time.Sleep(time.Minute)
		return 0
	}
	r := launch.Ready{Node: "fake", Role: "all", Version: "test", PID: os.Getpid(), AdminAddr: "127.0.0.1:1"}
	if mode == "other-pid" {
		r.PID = 1
	}
	if err := launch.WriteReady(path, r); err != nil {
		os.Stderr.WriteString(err.Error())
		return 1
	}
	time.Sleep(time.Minute)
	return 0
}

func TestStart(t *testing.T) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		mode    string
		stale   bool   // a ready file of an earlier run is there before the start
		wantErr string // "" for ready
	}{
		{name: "ready", mode: "ready"},
		{name: "stale file replaced", mode: "ready", stale: true},
		{name: "dies early, stderr in the error", mode: "die", wantErr: "fatal: no etcd at unix:///nowhere"},
		{name: "not ready by the deadline", mode: "hang", wantErr: "was not ready within"},
		{name: "a file another process wrote", mode: "other-pid", wantErr: "written by pid 1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(t.TempDir(), "ready.json")
			if tc.stale {
				stale := launch.Ready{Node: "stale", AdminAddr: "127.0.0.1:2", PID: 1}
				if err := launch.WriteReady(path, stale); err != nil {
					t.Fatal(err)
				}
			}
			p, err := launch.Start(context.Background(), launch.Options{
				Argv: []string{self, "-test.run=^$"}, Env: append(os.Environ(), fakeChildEnv+"="+tc.mode),
				ReadyFile: path, Timeout: 2 * time.Second, StopTimeout: 10 * time.Second,
			})
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one saying %q", err, tc.wantErr)
				}
				if tc.mode == "hang" && !strings.Contains(err.Error(), "waiting for etcd") {
					t.Errorf("err = %v: want the child's stderr tail", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if p.Ready.Node != "fake" || p.Ready.PID != p.PID() {
				t.Errorf("ready %+v, pid %d", p.Ready, p.PID())
			}
			if err := p.Stop(); err == nil || !strings.Contains(err.Error(), "signal: terminated") {
				t.Errorf("stop: %v, want the child ended by SIGTERM", err)
			}
			select {
			case <-p.Done():
			default:
				t.Error("Stop returned before the child exited")
			}
		})
	}
}

func TestReadReadyRejectsWhatIsNotAReadyFile(t *testing.T) {
	dir := t.TempDir()
	for name, content := range map[string]string{
		"not json":   "node=x",
		"no node":    `{"adminAddr":"127.0.0.1:1","pid":2}`,
		"no address": `{"node":"n","pid":2}`,
		"no pid":     `{"node":"n","adminAddr":"127.0.0.1:1"}`,
	} {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(dir, strings.ReplaceAll(name, " ", "-"))
			if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
				t.Fatal(err)
			}
			if _, err := launch.ReadReady(path); err == nil {
				t.Fatal("accepted")
			}
		})
	}
}

// TestFreezeThaw: Freeze returns with every thread of the child stopped (a Go child has several), and Thaw
// resumes them all.
func TestFreezeThaw(t *testing.T) {
	t.Parallel()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	p, err := launch.Start(context.Background(), launch.Options{
		Argv: []string{self, "-test.run=^$"}, Env: append(os.Environ(), fakeChildEnv+"=ready"),
		ReadyFile: filepath.Join(t.TempDir(), "ready.json"), Timeout: 10 * time.Second, StopTimeout: 10 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Kill() })
	states := func() string {
		s, err := procstat.ThreadStates(p.PID())
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	if err := p.Freeze(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	if s := states(); len(s) < 2 || strings.Trim(s, "tT") != "" {
		t.Fatalf("thread states after Freeze %q, want every one stopped (T), and several", s)
	}
	if err := p.Thaw(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for strings.ContainsAny(states(), "tT") {
		if time.Now().After(deadline) {
			t.Fatalf("thread states after Thaw %q: still stopped", states())
		}
		time.Sleep(time.Millisecond)
	}
}
