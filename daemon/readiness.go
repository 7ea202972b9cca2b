package daemon

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"time"

	"github.com/deact/deact/internal/launch"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// readiness is whether the node serves, computed in one place for gRPC health, /readyz and the ready file.
type readiness struct {
	Ready    bool
	Draining bool
	// Fenced: the gateway refuses to decide, not provably in the registry and current.
	Fenced bool
}

// readiness: ready while not draining and, on a gateway, while the replica is synced and the node is not
// fenced (registered, caught up with its registration, its lease proven alive), so that the admin API waits
// for every node that serves.
func (d *Daemon) readiness() readiness {
	r := readiness{Ready: true}
	select {
	case <-d.draining:
		r.Ready, r.Draining = false, true
	default:
	}
	if d.replica != nil {
		r.Fenced = d.reporter.Fenced()
		r.Ready = r.Ready && d.replica.Ready() && !r.Fenced
	}
	return r
}

// followReadiness keeps gRPC health in step with readiness, and writes the ready file the first time the node
// is ready. Polled: the fence closes by the clock, not by an event; every 10 ms until the node is first ready
// (so that the ready file tells the time closely), every 100 ms after. It returns when draining starts
// (Shutdown has set health NOT_SERVING for good) or ctx ends.
func (d *Daemon) followReadiness(ctx context.Context) error {
	serving, written := false, false
	for {
		r := d.readiness()
		if r.Draining {
			return nil
		}
		if r.Ready && !written {
			written = true
			if err := d.writeReadyFile(); err != nil {
				return err
			}
		}
		if d.health != nil && r.Ready != serving {
			serving = r.Ready
			st := healthpb.HealthCheckResponse_NOT_SERVING
			if serving {
				st = healthpb.HealthCheckResponse_SERVING
			}
			select {
			case <-d.draining:
				return nil
			default:
				d.health.SetServingStatus("", st)
				d.health.SetServingStatus(authv3.Authorization_ServiceDesc.ServiceName, st)
			}
		}
		period := 100 * time.Millisecond
		if !written {
			period = 10 * time.Millisecond
		}
		select {
		case <-d.draining:
			return nil
		case <-ctx.Done():
			return nil
		case <-time.After(period):
		}
	}
}

// writeReadyFile writes Config.ReadyFile, if set.
func (d *Daemon) writeReadyFile() error {
	if d.cfg.ReadyFile == "" {
		return nil
	}
	r := launch.Ready{
		Node: d.cfg.NodeID, Role: string(d.cfg.Role), Version: Version, PID: os.Getpid(),
		AuthzAddr: d.AuthzAddr, CheckAddr: d.HTTPCheckAddr, AdminAddr: d.AdminAddr, ReportAddr: d.ReportAddr,
		TLS:          d.cfg.TLSCert != "",
		EtcdEmbedded: d.embedded != nil, EtcdEndpoints: d.EtcdEndpoints,
		ListeningAt: d.listeningAt, ReadyAt: time.Now(),
	}
	if err := launch.WriteReady(d.cfg.ReadyFile, r); err != nil {
		return fmt.Errorf("--ready-file: %w", err)
	}
	return nil
}

// removeReadyFile removes Config.ReadyFile, if set: at start (a stale one) and when the daemon has stopped.
func (d *Daemon) removeReadyFile() {
	if d.cfg.ReadyFile == "" {
		return
	}
	if err := os.Remove(d.cfg.ReadyFile); err != nil && !os.IsNotExist(err) {
		d.log.Warn("cannot remove the ready file", "file", d.cfg.ReadyFile, "err", err)
	}
}

// readyz reports readiness with detail: 200 only while ready (see readiness).
func (d *Daemon) readyz(w http.ResponseWriter, _ *http.Request) {
	type detail struct {
		Ready       bool   `json:"ready"`
		Draining    bool   `json:"draining"`
		Node        string `json:"node"`
		Role        string `json:"role"`
		Version     string `json:"version"`
		Fenced      bool   `json:"fenced,omitempty"` // the node refuses to decide: not provably in the registry and current
		Revision    int64  `json:"appliedRevision,omitempty"`
		StalenessMs int64  `json:"stalenessMs,omitempty"`
		Staleness   string `json:"stalenessPolicy,omitempty"`
	}
	rd := d.readiness()
	r := detail{Ready: rd.Ready, Draining: rd.Draining, Fenced: rd.Fenced, Node: d.cfg.NodeID, Role: string(d.cfg.Role), Version: Version}
	if d.replica != nil {
		r.Revision = d.replica.AppliedRevision()
		r.StalenessMs = d.replica.Staleness().Milliseconds()
		r.Staleness = d.cfg.Staleness
		if r.Staleness == "" {
			r.Staleness = "serve-last-known"
		}
	}
	w.Header().Set("Content-Type", "application/json")
	if !r.Ready {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	_ = json.NewEncoder(w).Encode(r)
}
