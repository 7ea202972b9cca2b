package authz

import (
	"context"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the check counters and latency histogram. Every label combination is resolved at start, so
// recording a check does not allocate.
type metrics struct {
	checks         [numActions][numOutcomes]prometheus.Counter
	unavailable    prometheus.Counter // op "unknown": a request is not classified before the replica is ready
	latency        [numTransports]prometheus.Observer
	logsSuppressed prometheus.Counter
	// denies counts denies by reason; a reason missing from denyReasons is counted as "other".
	denies map[Reason]prometheus.Counter
}

// denyReasons are the reasons deact_authz_denies_total is initialized with, so dashboards and alerts see
// every series from the start.
var denyReasons = [...]Reason{ReasonOrgDeactivated, ReasonProjectDeactivated, ReasonAppDeactivated, ReasonStale,
	ReasonTokenTooLarge, ReasonBadRouteFact, "other"}

// logBudget lets through at most perSec deny log lines a second, without a lock: a deactivated tenant retrying
// in a loop must not flood the logs (the checks counter still counts every deny).
type logBudget struct {
	perSec int64
	window atomic.Int64 // unix second of the current window
	used   atomic.Int64
}

func (b *logBudget) take() bool {
	if b.perSec <= 0 {
		return true
	}
	now := time.Now().Unix()
	if w := b.window.Load(); w != now && b.window.CompareAndSwap(w, now) {
		b.used.Store(0)
	}
	return b.used.Add(1) <= b.perSec
}

type outcome uint8

const (
	outcomeAllow outcome = iota
	outcomeDeny
	numOutcomes
)

var outcomeNames = [numOutcomes]string{"allow", "deny"}

type transport uint8

const (
	transportGRPC transport = iota
	transportHTTP
	numTransports
)

var transportNames = [numTransports]string{"grpc", "http"}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	checks := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "deact", Subsystem: "authz", Name: "checks_total",
		Help: "Authorization checks by op and decision (allow, deny, unavailable: replica not ready).",
	}, []string{"op", "decision"})
	latency := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: "deact", Subsystem: "authz", Name: "check_duration_seconds",
		Help:    "Time to decide a check, from request conversion to response, by transport.",
		Buckets: []float64{5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 1e-2, 5e-2},
	}, []string{"transport"})
	suppressed := prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: "deact", Subsystem: "authz", Name: "deny_logs_suppressed_total",
		Help: "Deny log lines left out because more than the configured number a second were denied.",
	})
	denies := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "deact", Subsystem: "authz", Name: "denies_total",
		Help: "Denied checks by reason (the x-deact-reason of the response).",
	}, []string{"reason"})
	if reg != nil {
		for _, c := range []prometheus.Collector{checks, latency, suppressed, denies} {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	m := &metrics{logsSuppressed: suppressed, denies: make(map[Reason]prometheus.Counter, len(denyReasons))}
	for _, r := range denyReasons {
		m.denies[r] = denies.WithLabelValues(string(r))
	}
	for op := range numActions {
		for o := range numOutcomes {
			m.checks[op][o] = checks.WithLabelValues(op.String(), outcomeNames[o])
		}
	}
	m.unavailable = checks.WithLabelValues("unknown", "unavailable")
	for t := range numTransports {
		m.latency[t] = latency.WithLabelValues(transportNames[t])
	}
	return m, nil
}

// record counts a decided check, logs a deny (never a token or header value: only op, route, subject and
// reason) and observes the latency since start.
func (a *Authorizer) record(ctx context.Context, t transport, d *Decision, start time.Time) {
	if d.Allow {
		a.metrics.checks[d.Action][outcomeAllow].Inc()
	} else {
		a.metrics.checks[d.Action][outcomeDeny].Inc()
		if c, ok := a.metrics.denies[d.Reason]; ok {
			c.Inc()
		} else {
			a.metrics.denies["other"].Inc()
		}
		if !a.denyLogs.take() {
			a.metrics.logsSuppressed.Inc()
		} else {
			a.logDeny(ctx, t, d)
		}
	}
	a.metrics.latency[t].Observe(time.Since(start).Seconds())
}

func (a *Authorizer) logDeny(ctx context.Context, t transport, d *Decision) {
	a.log.LogAttrs(ctx, slog.LevelInfo, "request denied",
		slog.String("op", d.Action.String()),
		slog.String("reason", string(d.Reason)),
		slog.String("subject_kind", d.Subject.Kind.String()),
		slog.String("subject_id", d.Subject.ID),
		slog.String("via_kind", d.Via.Kind.String()),
		slog.String("via_id", d.Via.ID),
		slog.String("route", d.Route),
		slog.Int64("revision", d.Revision),
		slog.String("transport", transportNames[t]))
}

func (a *Authorizer) recordUnavailable(t transport, start time.Time) {
	a.metrics.unavailable.Inc()
	a.metrics.latency[t].Observe(time.Since(start).Seconds())
}
