package etcdserver_test

import (
	"context"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/deact/deact/state/etcdserver"
	"github.com/deact/deact/state/etcdtest"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, etcdtest.LeakOptions()...)
}

// TestPrivateMemberTakesOverATCPMembersData: a member that ran on loopback TCP ports (as deactd's embedded
// etcd did before) restarts on the same data as a private member (a 0600 unix socket, no peer listener), keeps
// its data, and the TCP ports are closed.
func TestPrivateMemberTakesOverATCPMembersData(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	tcp, err := etcdserver.Start(etcdserver.Config{Dir: filepath.Join(dir, "etcd"), LogLevel: "fatal"})
	if err != nil {
		t.Fatal(err)
	}
	cli := etcdtest.Client(t, tcp.Endpoints())
	if _, err := cli.Put(context.Background(), "k", "v"); err != nil {
		t.Fatal(err)
	}
	tcpURL, peerURL := tcp.Config().ClientURL, tcp.Config().PeerURL
	tcp.Close()

	sock := filepath.Join(dir, "etcd.sock")
	priv, err := etcdserver.Start(etcdserver.Config{Dir: filepath.Join(dir, "etcd"), LogLevel: "fatal",
		ClientURL: "unix://" + sock, PeerURL: "unix://" + filepath.Join(dir, "peer.unused"), NoPeerListener: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(priv.Close)
	fi, err := os.Stat(sock)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o600 {
		t.Errorf("socket mode %v, want a 0600 socket", fi.Mode())
	}
	resp, err := etcdtest.Client(t, priv.Endpoints()).Get(context.Background(), "k")
	if err != nil || len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != "v" {
		t.Fatalf("data after the move to a socket: %v %v", resp, err)
	}
	for _, u := range []string{tcpURL, peerURL} {
		pu, err := url.Parse(u)
		if err != nil {
			t.Fatal(err)
		}
		if c, err := net.DialTimeout("tcp", pu.Host, time.Second); err == nil {
			c.Close()
			t.Errorf("%s still listens", u)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "peer.unused")); !os.IsNotExist(err) {
		t.Errorf("a peer socket exists: %v", err)
	}
}
