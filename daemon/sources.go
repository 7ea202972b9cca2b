package daemon

import (
	"context"
	"fmt"
	"net/http"

	"github.com/deact/deact/source"
	"github.com/deact/deact/state"
	"github.com/prometheus/client_golang/prometheus"
)

// startSources serves each source's handler and runs its election on this admin node.
func (d *Daemon) startSources(ctx context.Context, store *state.Store, reg *prometheus.Registry, mux *http.ServeMux) error {
	if len(d.cfg.Sources) == 0 {
		return nil
	}
	metrics := source.NewMetrics(reg)
	seen := map[string]bool{}
	for _, src := range d.cfg.Sources {
		if seen[src.Name()] {
			return fmt.Errorf("two sources are named %q", src.Name())
		}
		seen[src.Name()] = true
		r, err := source.NewRunner(source.RunnerConfig{Client: d.cli, Store: store, NodeID: d.cfg.NodeID, Logger: d.log,
			Metrics: metrics, TombstoneRetention: d.cfg.TombstoneRetention, LeaderTTL: d.cfg.SourceLeaderTTL}, src)
		if err != nil {
			return err
		}
		if h := r.Handler(); h != nil {
			mux.Handle("/v1/sources/"+src.Name()+"/", h)
		}
		d.run(ctx, "source "+src.Name(), r.Run)
	}
	return nil
}
