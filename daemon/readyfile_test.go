package daemon_test

import (
	"errors"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/deact/deact/daemon"
	"github.com/deact/deact/internal/launch"
	"github.com/deact/deact/internal/wait"
	"github.com/deact/deact/state/etcdtest"
)

// TestReadyFile: --ready-file is written once the node is ready (/readyz 200 by then), atomically, 0600, with
// the node, role, version, pid, every listener's bound address and the etcd endpoints; a stale file there is
// removed at start, and the file is removed when the daemon stops.
func TestReadyFile(t *testing.T) {
	for _, tc := range []struct {
		name     string
		role     daemon.NodeRole
		authz    bool // has the gateway listeners
		external bool // on an etcd of its own, not the embedded one
	}{
		{"all", daemon.AllInOne, true, false},
		{"gateway", daemon.GatewayNode, true, false},
		{"admin", daemon.AdminNode, false, false},
		{"gateway on an external etcd", daemon.GatewayNode, true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			path := filepath.Join(dir, "ready.json")
			if err := os.WriteFile(path, []byte(`{"node":"stale","adminAddr":"127.0.0.1:1","pid":1}`), 0o644); err != nil {
				t.Fatal(err)
			}
			var dataDir string
			var external []string
			if tc.external {
				external = etcdtest.Start(t).Endpoints()
			}
			d := start(t, func(c *daemon.Config) {
				c.Role, c.ReadyFile, c.EtcdEndpoints, dataDir = tc.role, path, external, c.DataDir
			})
			var r launch.Ready
			wait.Eventually(t, "the ready file", func() bool {
				var err error
				r, err = launch.ReadReady(path)
				return err == nil && r.Node != "stale"
			})
			if r.Node != "n1" || r.Role != string(tc.role) || r.Version != daemon.Version || r.PID != os.Getpid() || r.TLS {
				t.Errorf("ready file %+v", r)
			}
			if r.AdminAddr != d.AdminAddr || r.AuthzAddr != d.AuthzAddr || r.CheckAddr != d.HTTPCheckAddr {
				t.Errorf("ready file addresses %q %q %q, daemon %q %q %q", r.AdminAddr, r.AuthzAddr, r.CheckAddr, d.AdminAddr, d.AuthzAddr, d.HTTPCheckAddr)
			}
			bound := []string{r.AdminAddr}
			if tc.role != daemon.GatewayNode {
				if r.ReportAddr == "" || r.ReportAddr != d.ReportAddr {
					t.Errorf("ready file report address %q, daemon %q", r.ReportAddr, d.ReportAddr)
				}
				bound = append(bound, r.ReportAddr)
			} else if r.ReportAddr != "" {
				t.Errorf("gateway's ready file shows a report listener %q", r.ReportAddr)
			}
			if tc.authz {
				bound = append(bound, r.AuthzAddr, r.CheckAddr)
			} else if r.AuthzAddr != "" || r.CheckAddr != "" {
				t.Errorf("admin node's ready file shows gateway listeners %q %q", r.AuthzAddr, r.CheckAddr)
			}
			for _, a := range bound {
				if i := strings.LastIndexByte(a, ':'); i < 0 || !isPort(a[i+1:]) {
					t.Errorf("address %q has no bound port", a)
				}
			}
			if tc.external {
				if r.EtcdEmbedded || !slices.Equal(r.EtcdEndpoints, external) {
					t.Errorf("etcd %v %q, want the external %q", r.EtcdEmbedded, r.EtcdEndpoints, external)
				}
			} else if want := "unix://" + filepath.Join(dataDir, "etcd.sock"); !r.EtcdEmbedded || len(r.EtcdEndpoints) != 1 || r.EtcdEndpoints[0] != want {
				t.Errorf("etcd %v %q, want embedded %q", r.EtcdEmbedded, r.EtcdEndpoints, want)
			}
			if r.ListeningAt.IsZero() || r.ReadyAt.Before(r.ListeningAt) {
				t.Errorf("listening at %v, ready at %v", r.ListeningAt, r.ReadyAt)
			}
			fi, err := os.Stat(path)
			if err != nil || fi.Mode().Perm() != 0o600 {
				t.Errorf("ready file mode %v, %v; want 0600", fi.Mode(), err)
			}
			if ents, _ := os.ReadDir(dir); len(ents) != 1 {
				t.Errorf("the ready file's directory holds %d entries, want the file alone (no temporary left)", len(ents))
			}
			resp, err := http.Get("http://" + r.AdminAddr + "/readyz")
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Errorf("/readyz %d once the ready file is there", resp.StatusCode)
			}
			if err := d.stop(); err != nil {
				t.Fatal(err)
			}
			if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("after stop, the ready file: %v; want it removed", err)
			}
		})
	}
}

func isPort(s string) bool {
	n, err := strconv.Atoi(s)
	return err == nil && n > 0 && n < 65536
}
