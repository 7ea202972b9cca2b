package daemon

import (
	"github.com/deact/deact/state"
	"github.com/prometheus/client_golang/prometheus"
)

// registerReplicaMetrics exports the replica's readiness, revision, staleness and counters, read at scrape time.
func registerReplicaMetrics(reg prometheus.Registerer, r *state.Replica) {
	gauge := func(name, help string, f func() float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "deact", Subsystem: "replica", Name: name, Help: help}, f)
	}
	counter := func(name, help string, f func() float64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: "deact", Subsystem: "replica", Name: name, Help: help}, f)
	}
	reg.MustRegister(
		gauge("ready", "1 once the first list of the state is applied and the replica is current with etcd.", func() float64 {
			if r.Ready() {
				return 1
			}
			return 0
		}),
		gauge("applied_revision", "etcd revision up to which the replica holds every change.", func() float64 { return float64(r.AppliedRevision()) }),
		gauge("staleness_seconds", "How far behind etcd's committed state the replica may be: time since the moment as of which it is known to hold every committed write.", func() float64 { return r.Staleness().Seconds() }),
		gauge("records", "Records in the current snapshot.", func() float64 { return float64(r.Snapshot().Len()) }),
		counter("relists_total", "Full lists applied (the first, after a compaction or a failed list, and anti-entropy).", func() float64 { return float64(r.Stats().Relists) }),
		counter("watch_resumes_total", "Watches resumed from the applied revision after one broke, without a list.", func() float64 { return float64(r.Stats().Resumes) }),
		counter("corrections_total", "Records a relist found different from what the watch had delivered.", func() float64 { return float64(r.Stats().Corrections) }),
		counter("bad_records_total", "Records that could not be decoded (held deactivated or dropped).", func() float64 { return float64(r.Stats().BadRecords) }),
		gauge("seeded", "1 when the first snapshot came from an admin node's replica (then caught up with etcd), not from a list of etcd.", func() float64 {
			if r.Stats().Seeded {
				return 1
			}
			return 0
		}),
	)
}
