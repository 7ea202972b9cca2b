package daemon_test

import (
	"bytes"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/deact/deact/daemon"
	"github.com/deact/deact/source/commvault/commvaulttest"
)

func TestCommvaultConfigValidate(t *testing.T) {
	t.Parallel()
	const u = "https://cv.example.com/webconsole/api"
	for name, tc := range map[string]struct {
		role daemon.NodeRole
		cv   daemon.CommvaultConfig
		ok   bool
	}{
		"login":                   {daemon.AdminNode, daemon.CommvaultConfig{URL: u, User: "u", PasswordFile: "p"}, true},
		"fixed token":             {daemon.AllInOne, daemon.CommvaultConfig{URL: u, TokenFile: "t", SyncInterval: time.Second}, true},
		"off":                     {daemon.GatewayNode, daemon.CommvaultConfig{}, true},
		"gateway":                 {daemon.GatewayNode, daemon.CommvaultConfig{URL: u, TokenFile: "t"}, false},
		"no credentials":          {daemon.AllInOne, daemon.CommvaultConfig{URL: u}, false},
		"both":                    {daemon.AllInOne, daemon.CommvaultConfig{URL: u, User: "u", PasswordFile: "p", TokenFile: "t"}, false},
		"user without a password": {daemon.AllInOne, daemon.CommvaultConfig{URL: u, User: "u"}, false},
		"flags without url":       {daemon.AllInOne, daemon.CommvaultConfig{User: "u", PasswordFile: "p"}, false},
		"tiny interval":           {daemon.AllInOne, daemon.CommvaultConfig{URL: u, TokenFile: "t", SyncInterval: time.Millisecond}, false},
		"negative concurrency":    {daemon.AllInOne, daemon.CommvaultConfig{URL: u, TokenFile: "t", Concurrency: -1}, false},
	} {
		c := daemon.Config{Role: tc.role, NodeID: "n", Commvault: tc.cv}
		if err := c.Validate(); (err == nil) != tc.ok {
			t.Errorf("%s: Validate() = %v", name, err)
		}
	}
}

// lockedBuffer collects a daemon's log lines from many goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestCommvaultSecretsStayOutOfLogs: a deactd that polls Commvault warns about a password file others can read,
// and neither the password nor a token shows in its logs (debug level) or its status, through a good round and
// a refused login.
func TestCommvaultSecretsStayOutOfLogs(t *testing.T) {
	t.Parallel()
	fake := commvaulttest.New()
	t.Cleanup(fake.Close)
	fake.Password = "pw-Zq81-never-logged"
	fake.AddOrg("Acme", "acme")
	pw := filepath.Join(t.TempDir(), "password")
	if err := os.WriteFile(pw, []byte(fake.Password+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	logs := &lockedBuffer{}
	d := start(t, func(c *daemon.Config) {
		c.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
		c.Commvault = daemon.CommvaultConfig{URL: fake.URL, User: fake.User, PasswordFile: pw, SyncInterval: 100 * time.Millisecond}
	})
	sources := func() string {
		req, _ := http.NewRequest("GET", "http://"+d.AdminAddr+"/v1/sources", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	waitFor := func(what string, ok func(string) bool) string {
		deadline := time.Now().Add(20 * time.Second)
		for {
			s := sources()
			if ok(s) {
				return s
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: %s", what, s)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitFor("a good round", func(s string) bool { return strings.Contains(s, `"lastReconcileOkAt"`) })
	fake.Password = "another-password"
	fake.ExpireTokens()
	status := waitFor("the refused login", func(s string) bool { return strings.Contains(s, "Invalid Username or Password") })
	out := logs.String()
	if !strings.Contains(out, "readable by others") {
		t.Errorf("no warning about the password file's mode")
	}
	for _, secret := range []string{"pw-Zq81-never-logged", "cHctWnE4MS1uZXZlci1sb2dnZWQ", "QSDK "} {
		if strings.Contains(out, secret) || strings.Contains(status, secret) {
			t.Errorf("%q shows in the logs or the status", secret)
		}
	}
}
