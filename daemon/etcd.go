package daemon

import (
	"crypto/tls"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/deact/deact/state/etcdserver"
	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

func (d *Daemon) connectEtcd() error {
	cfg := d.cfg
	endpoints := cfg.EtcdEndpoints
	if len(endpoints) == 0 {
		srv, err := startEmbedded(cfg)
		if err != nil {
			return err
		}
		d.embedded = srv
		endpoints = srv.Endpoints()
	}
	d.EtcdEndpoints = endpoints
	var tlsCfg *tls.Config
	if cfg.EtcdCACert != "" || cfg.EtcdCert != "" {
		info := transport.TLSInfo{TrustedCAFile: cfg.EtcdCACert, CertFile: cfg.EtcdCert, KeyFile: cfg.EtcdKey}
		c, err := info.ClientConfig()
		if err != nil {
			return fmt.Errorf("etcd TLS: %w", err)
		}
		tlsCfg = c
	}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints: endpoints, TLS: tlsCfg, Logger: zap.NewNop(),
		DialTimeout: 5 * time.Second, DialKeepAliveTime: 5 * time.Second, DialKeepAliveTimeout: 3 * time.Second,
	})
	if err != nil {
		return fmt.Errorf("etcd client: %w", err)
	}
	d.cli = cli
	return nil
}

// maxSocketPath is the longest path a unix socket can have (sun_path less its NUL on Linux).
const maxSocketPath = 107

// startEmbedded starts the single-node etcd that only this process (and this user) can reach: its clients
// come through a unix socket in the data dir (0600, the dir 0700), it opens no TCP port and no peer listener.
// There is no etcd authentication on top: a password would have to sit in the same data dir, readable by the
// same user that can open the socket.
func startEmbedded(cfg Config) (*etcdserver.Server, error) {
	dir, err := filepath.Abs(cfg.DataDir)
	if err != nil {
		return nil, fmt.Errorf("data dir: %w", err)
	}
	sock := filepath.Join(dir, "etcd.sock")
	if len(sock) > maxSocketPath {
		return nil, fmt.Errorf("--data-dir %s: the embedded etcd's socket %s is longer than %d bytes; choose a shorter path", cfg.DataDir, sock, maxSocketPath)
	}
	// Earlier versions listened on loopback TCP ports kept in this file; the ports are gone.
	_ = os.Remove(filepath.Join(dir, "embedded-etcd.json"))
	return etcdserver.Start(etcdserver.Config{
		Name: "deactd", Dir: filepath.Join(dir, "etcd"), ClientURL: "unix://" + sock,
		PeerURL: "unix://" + filepath.Join(dir, "etcd-peer.unused"), NoPeerListener: true,
		LogLevel: cfg.EtcdLogLevel,
	})
}
