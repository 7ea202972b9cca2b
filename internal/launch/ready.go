// Package launch is the machine-readable side of deactd's start: the ready file deactd writes with
// --ready-file (Ready, WriteReady, ReadReady), and Start, which runs a deactd child process and returns once
// that file says the child is ready. The banner deactd prints is for people; programs read this file.
package launch

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// Ready is the content of the ready file, a JSON object. Its fields are a stable interface (the README's
// flags section documents them): new fields may be added, none is renamed or removed.
//
// The file is written once, the first time the node is ready (the condition of GET /readyz: not draining and,
// on a gateway, the replica synced and the node not fenced); it is not rewritten if the node later turns
// unready. deactd removes it when it stops (SIGTERM, or a fatal error), and removes a stale one when it starts;
// only a killed deactd leaves one behind.
type Ready struct {
	Node    string `json:"node"`    // --node-id
	Role    string `json:"role"`    // --role: all, gateway or admin
	Version string `json:"version"` // deactd's version
	PID     int    `json:"pid"`     // the deactd process
	// Listener addresses, host:port with the port bound (never 0). Authz and Check are empty on an admin-only
	// node. Admin also serves /healthz, /readyz and /metrics (there is no separate health or metrics listener).
	AuthzAddr string `json:"authzAddr,omitempty"` // ext_authz gRPC
	CheckAddr string `json:"checkAddr,omitempty"` // HTTP check, path /check
	AdminAddr string `json:"adminAddr"`           // admin API (HTTP and gRPC), health, metrics
	// ReportAddr is an admin node's gRPC listener for the gateways' report streams (empty on a gateway-only
	// node); gateways find it in etcd, this is for operators and firewalls.
	ReportAddr string `json:"reportAddr,omitempty"`
	TLS        bool   `json:"tls"` // the listeners speak TLS (https://, not http://)
	// EtcdEmbedded says deactd runs its own etcd: EtcdEndpoints is then its client URL, the unix socket
	// unix://<data-dir>/etcd.sock; otherwise they are the --etcd-endpoints.
	EtcdEmbedded  bool      `json:"etcdEmbedded"`
	EtcdEndpoints []string  `json:"etcdEndpoints"`
	ListeningAt   time.Time `json:"listeningAt"` // when every listener was open
	ReadyAt       time.Time `json:"readyAt"`     // when the node was first ready
}

// URL is the base URL of a listener address of r: http://addr, or https://addr with TLS.
func (r Ready) URL(addr string) string {
	if r.TLS {
		return "https://" + addr
	}
	return "http://" + addr
}

// WriteReady writes r to path atomically: a temporary file (0600) in the same directory, renamed over path,
// so that a reader sees no file or the whole file, never a part.
func WriteReady(path string, r Ready) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*.tmp") // 0600
	if err != nil {
		return err
	}
	_, err = f.Write(append(b, '\n'))
	err = errors.Join(err, f.Sync(), f.Close())
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		_ = os.Remove(f.Name())
	}
	return err
}

// ReadReady reads a ready file. A file that is not there is an error that matches fs.ErrNotExist; one whose
// content is not a ready file (no node, no admin address, no pid) is an error too.
func ReadReady(path string) (Ready, error) {
	var r Ready
	b, err := os.ReadFile(path)
	if err != nil {
		return r, err
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return r, fmt.Errorf("ready file %s: %w", path, err)
	}
	if r.Node == "" || r.AdminAddr == "" || r.PID <= 0 {
		return r, fmt.Errorf("ready file %s: no node, admin address or pid", path)
	}
	return r, nil
}
