package admin

import (
	"github.com/deact/deact/state"
	"github.com/prometheus/client_golang/prometheus"
)

// metrics of the admin API, registered on the registry of Config.
type metrics struct {
	requests     *prometheus.CounterVec
	confirmWait  *prometheus.HistogramVec
	authFailures *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "deact", Subsystem: "admin", Name: "requests_total",
			Help: "Admin API requests by API, operation and outcome code.",
		}, []string{"api", "op", "code"}),
		confirmWait: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "deact", Subsystem: "admin", Name: "confirm_wait_seconds",
			Help:    "Time from a committed write until every live gateway node applied it (or the wait ended).",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
		}, []string{"complete"}),
		authFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "deact", Subsystem: "admin", Name: "auth_failures_total",
			Help: "Refused admin authentications by reason.",
		}, []string{"reason"}),
	}
	// Both outcomes exist from the start, so an alert on unconfirmed writes has a series to watch.
	m.confirmWait.WithLabelValues("true")
	m.confirmWait.WithLabelValues("false")
	if reg != nil {
		for _, c := range []prometheus.Collector{m.requests, m.confirmWait, m.authFailures} {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return m, nil
}

func (m *metrics) observeConfirm(c state.Confirmation, complete bool) {
	label := "false"
	if complete {
		label = "true"
	}
	m.confirmWait.WithLabelValues(label).Observe(c.Waited.Seconds())
}

func (m *metrics) request(api, op string, e *apiError) {
	code := "ok"
	if e != nil {
		code = e.name()
		if e.kind == kindUnauthenticated || e.kind == kindRateLimited {
			m.authFailures.WithLabelValues(e.id).Inc()
		}
	}
	m.requests.WithLabelValues(api, op, code).Inc()
}
