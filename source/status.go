package source

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/deact/deact/state"
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the deact_source_* metrics, one series per source. Make one per registry and share it between
// the sources of a process.
type Metrics struct {
	reconcileSeconds *prometheus.HistogramVec
	reconcileChanges *prometheus.CounterVec
	reconcileErrors  *prometheus.CounterVec
	lastReconcileOK  *prometheus.GaugeVec
	events           *prometheus.CounterVec
	lagSeconds       *prometheus.GaugeVec
	leader           *prometheus.GaugeVec
	upstreamErrors   *prometheus.CounterVec
	tombstonesPruned *prometheus.CounterVec
	records          *prometheus.GaugeVec
}

// EventResult is what became of one upstream event.
type EventResult string

const (
	EventAccepted EventResult = "accepted" // applied, and it changed the mirrored state
	EventIgnored  EventResult = "ignored"  // valid, but stale, replayed or not about anything deact mirrors
	EventRejected EventResult = "rejected" // refused: bad signature, malformed, too old, unknown type of a known aggregate
)

// NewMetrics registers the metrics on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	src := []string{"source"}
	m := &Metrics{
		reconcileSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "deact_source_reconcile_duration_seconds",
			Help: "Duration of full reconciles with the upstream, failed ones included.", Buckets: prometheus.ExponentialBuckets(0.05, 2, 14)}, src),
		reconcileChanges: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "deact_source_reconcile_changes_total",
			Help: "Mirrored records reconciles wrote (created, changed or tombstoned)."}, src),
		reconcileErrors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "deact_source_reconcile_errors_total",
			Help: "Reconciles that failed; the mirrored state stays as it was."}, src),
		lastReconcileOK: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "deact_source_last_reconcile_success_timestamp_seconds",
			Help: "Unix time of the last successful reconcile."}, src),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "deact_source_events_total",
			Help: "Upstream events received, by result (accepted, ignored, rejected)."}, []string{"source", "result"}),
		lagSeconds: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "deact_source_event_lag_seconds",
			Help: "Receive time minus the upstream's creation time of the last event."}, src),
		leader: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "deact_source_leader",
			Help: "1 while this node leads the source's sync, else 0."}, src),
		upstreamErrors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "deact_source_upstream_errors_total",
			Help: "Failed calls to the upstream, by class (unreachable, unauthorized, forbidden, bad_response, suspicious)."}, []string{"source", "class"}),
		tombstonesPruned: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "deact_source_tombstones_pruned_total",
			Help: "Tombstones deleted after the retention."}, src),
		records: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "deact_source_records",
			Help: "Mirrored records held after the last reconcile."}, src),
	}
	reg.MustRegister(m.reconcileSeconds, m.reconcileChanges, m.reconcileErrors, m.lastReconcileOK, m.events,
		m.lagSeconds, m.leader, m.upstreamErrors, m.tombstonesPruned, m.records)
	return m
}

// StatusConfig configures a Status.
type StatusConfig struct {
	Store    *state.Store
	Source   string // the source's name
	Kind     string // connector type, e.g. "zitadel"
	Upstream string // base URL shown to operators; never with credentials
	NodeID   string
	Metrics  *Metrics // nil: none
	Logger   *slog.Logger
	Interval time.Duration // how often the leader writes the status [5s]
}

// Status counts what a source does and publishes it: as metrics at once, and as the source's state.SourceStatus,
// which Run writes while this node leads. Connectors call its methods from any goroutine.
//
// Counters are this node's since it started (LeaderSince says since when it leads); events received by a node
// that is not the leader show in its metrics only. A new leader that has not reconciled yet shows the previous
// leader's last reconcile and last event, so a failover does not blank what operators see.
type Status struct {
	cfg   StatusConfig
	log   *slog.Logger
	mu    sync.Mutex
	st    state.SourceStatus
	dirty chan struct{}
}

// NewStatus returns a reporter for one source.
func NewStatus(cfg StatusConfig) *Status {
	if cfg.Interval <= 0 {
		cfg.Interval = 5 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	s := &Status{cfg: cfg, log: cfg.Logger.With("source", cfg.Source), dirty: make(chan struct{}, 1),
		st: state.SourceStatus{Source: cfg.Source, Kind: cfg.Kind, Upstream: cfg.Upstream}}
	if m := cfg.Metrics; m != nil {
		// Series exist from the start, so a dashboard shows 0 rather than nothing.
		for _, r := range []EventResult{EventAccepted, EventIgnored, EventRejected} {
			m.events.WithLabelValues(cfg.Source, string(r))
		}
		m.reconcileErrors.WithLabelValues(cfg.Source)
		m.reconcileChanges.WithLabelValues(cfg.Source)
		m.leader.WithLabelValues(cfg.Source).Set(0)
		m.lagSeconds.WithLabelValues(cfg.Source)
		for _, class := range UpstreamErrorClasses {
			m.upstreamErrors.WithLabelValues(cfg.Source, class)
		}
	}
	return s
}

// UpstreamErrorClasses are the classes UpstreamError is called with; their series exist from the start.
var UpstreamErrorClasses = []string{"unreachable", "unauthorized", "forbidden", "bad_response", "suspicious"}

func (s *Status) update(f func(st *state.SourceStatus)) {
	s.mu.Lock()
	f(&s.st)
	s.mu.Unlock()
	select {
	case s.dirty <- struct{}{}:
	default:
	}
}

// Reconciled records the end of a reconcile that began at start: changed records written, records held after it
// (mirrored records of the source, tombstones included), err nil on success.
func (s *Status) Reconciled(start time.Time, changed, records, tombstones int64, err error) {
	now := time.Now().UTC()
	d := time.Since(start)
	s.update(func(st *state.SourceStatus) {
		st.LastReconcileAt, st.LastReconcileDuration, st.LastReconcileChanged = now, d, changed
		st.Reconciles++
		if err != nil {
			st.LastReconcileError = err.Error()
			st.ReconcileErrors++
			st.LastError, st.LastErrorAt = err.Error(), now
		} else {
			st.LastReconcileError = ""
			st.LastReconcileOKAt = now
			st.Records, st.Tombstones = records, tombstones
		}
	})
	if m := s.cfg.Metrics; m != nil {
		m.reconcileSeconds.WithLabelValues(s.cfg.Source).Observe(d.Seconds())
		m.reconcileChanges.WithLabelValues(s.cfg.Source).Add(float64(changed))
		if err != nil {
			m.reconcileErrors.WithLabelValues(s.cfg.Source).Inc()
		} else {
			m.lastReconcileOK.WithLabelValues(s.cfg.Source).Set(float64(now.UnixNano()) / 1e9)
			m.records.WithLabelValues(s.cfg.Source).Set(float64(records))
		}
	}
}

// Event records one event of type typ, created upstream at created (zero if unknown).
func (s *Status) Event(typ string, result EventResult, created time.Time) {
	now := time.Now().UTC()
	var lag time.Duration
	if !created.IsZero() {
		lag = max(now.Sub(created), 0)
	}
	s.update(func(st *state.SourceStatus) {
		switch result {
		case EventAccepted:
			st.EventsAccepted++
		case EventIgnored:
			st.EventsIgnored++
		default:
			st.EventsRejected++
		}
		if result != EventRejected {
			st.LastEventAt, st.LastEventType = now, typ
			if !created.IsZero() {
				st.LagMs = lag.Milliseconds()
			}
		}
	})
	if m := s.cfg.Metrics; m != nil {
		m.events.WithLabelValues(s.cfg.Source, string(result)).Inc()
		if result != EventRejected && !created.IsZero() {
			m.lagSeconds.WithLabelValues(s.cfg.Source).Set(lag.Seconds())
		}
	}
}

// UpstreamError records a failed call to the upstream, classified for the metric (unreachable, unauthorized,
// forbidden, bad_response, suspicious). The connector logs it; the message must not carry credentials.
func (s *Status) UpstreamError(class string, err error) {
	now := time.Now().UTC()
	s.update(func(st *state.SourceStatus) { st.LastError, st.LastErrorAt = err.Error(), now })
	if m := s.cfg.Metrics; m != nil {
		m.upstreamErrors.WithLabelValues(s.cfg.Source, class).Inc()
	}
}

// Pruned records tombstones deleted after the retention.
func (s *Status) Pruned(n int64) {
	s.update(func(st *state.SourceStatus) { st.TombstonesPruned += n })
	if m := s.cfg.Metrics; m != nil && n > 0 {
		m.tombstonesPruned.WithLabelValues(s.cfg.Source).Add(float64(n))
	}
}

// Get returns the status as it stands.
func (s *Status) Get() state.SourceStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.st
}

// Run publishes the status while ctx lasts, as the leader since `since`: at once, after every change (at most
// once a second) and every Interval.
func (s *Status) Run(ctx context.Context, since time.Time) error {
	if prev, err := s.previous(ctx); err == nil && prev != nil && prev.Leader != s.cfg.NodeID {
		s.mu.Lock()
		adopt(&s.st, prev)
		s.mu.Unlock()
	}
	s.update(func(st *state.SourceStatus) { st.Leader, st.LeaderSince = s.cfg.NodeID, since.UTC() })
	if m := s.cfg.Metrics; m != nil {
		m.leader.WithLabelValues(s.cfg.Source).Set(1)
		defer m.leader.WithLabelValues(s.cfg.Source).Set(0)
	}
	tick := time.NewTicker(s.cfg.Interval)
	defer tick.Stop()
	for {
		st := s.Get()
		st.UpdatedAt = time.Now().UTC()
		wctx, cancel := context.WithTimeout(ctx, s.cfg.Interval)
		err := s.cfg.Store.PutSourceStatus(wctx, st)
		cancel()
		if err != nil && ctx.Err() == nil {
			s.log.Warn("writing the source status failed", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		case <-s.dirty:
			select { // coalesce bursts of events into one write a second
			case <-ctx.Done():
				return nil
			case <-time.After(time.Second):
			}
		}
	}
}

func (s *Status) previous(ctx context.Context) (*state.SourceStatus, error) {
	all, err := s.cfg.Store.ListSourceStatus(ctx)
	if err != nil {
		return nil, err
	}
	for i := range all {
		if all[i].Source == s.cfg.Source {
			return &all[i], nil
		}
	}
	return nil, nil
}

// adopt fills what this node has not seen yet from the previous leader's record.
func adopt(st *state.SourceStatus, prev *state.SourceStatus) {
	if st.LastReconcileAt.IsZero() {
		st.LastReconcileAt, st.LastReconcileDuration, st.LastReconcileChanged = prev.LastReconcileAt, prev.LastReconcileDuration, prev.LastReconcileChanged
		st.LastReconcileError, st.LastReconcileOKAt = prev.LastReconcileError, prev.LastReconcileOKAt
		st.Records, st.Tombstones = prev.Records, prev.Tombstones
	}
	if st.LastEventAt.IsZero() {
		st.LastEventAt, st.LastEventType, st.LagMs = prev.LastEventAt, prev.LastEventType, prev.LagMs
	}
	if st.LastErrorAt.IsZero() {
		st.LastError, st.LastErrorAt = prev.LastError, prev.LastErrorAt
	}
}

// Polled records the lag of a polling source's round: how old the upstream's answer was when the round's
// writes were committed (a change upstream shows after at most the interval plus this). It sets the status's
// LagMs and deact_source_event_lag_seconds, as Event does for pushed events.
func (s *Status) Polled(lag time.Duration) {
	lag = max(lag, 0)
	s.update(func(st *state.SourceStatus) { st.LagMs = lag.Milliseconds() })
	if m := s.cfg.Metrics; m != nil {
		m.lagSeconds.WithLabelValues(s.cfg.Source).Set(lag.Seconds())
	}
}
