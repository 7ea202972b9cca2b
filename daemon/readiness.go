package daemon

import (
	"encoding/json"
	"net/http"
)

// readyz reports readiness with detail: 200 only while not draining and, on a gateway, while the replica is
// synced and the node is not fenced.
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
	r := detail{Ready: true, Node: d.cfg.NodeID, Role: d.cfg.Role, Version: Version}
	select {
	case <-d.draining:
		r.Ready, r.Draining = false, true
	default:
	}
	if d.replica != nil {
		r.Fenced = d.reporter.Fenced()
		r.Ready = r.Ready && d.replica.Ready() && !r.Fenced
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
