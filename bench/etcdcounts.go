package bench

import (
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// etcdCounts reads the counters of the etcd members running in this process, which etcd registers in the default
// Prometheus registry: unary gRPC requests handled, by method, and "walFsync", the WAL syncs. Members are summed.
func etcdCounts() map[string]float64 {
	mfs, err := prometheus.DefaultGatherer.Gather()
	if err != nil {
		return nil
	}
	return countsOf(mfs)
}

// countsOf extracts etcdCounts' counters from gathered (or scraped) metric families.
func countsOf(mfs []*dto.MetricFamily) map[string]float64 {
	out := map[string]float64{}
	for _, mf := range mfs {
		switch mf.GetName() {
		case "grpc_server_handled_total":
			for _, m := range mf.GetMetric() {
				for _, l := range m.GetLabel() {
					if l.GetName() == "grpc_method" {
						out[l.GetValue()] += m.GetCounter().GetValue()
					}
				}
			}
		case "etcd_disk_wal_fsync_duration_seconds":
			for _, m := range mf.GetMetric() {
				out["walFsync"] += float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	return out
}
