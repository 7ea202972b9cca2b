package commvault

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"time"

	"github.com/deact/deact/source"
)

// Config is the Commvault source as the daemon configures it.
type Config struct {
	Client      ClientConfig
	Interval    time.Duration // between rounds [1m], with jitter
	Concurrency int           // detail requests in flight [8]
}

// Source is Commvault as a source.Source: its Sync polls on the leader; it has no HTTP endpoint.
type Source struct {
	cfg    Config
	client *Client
}

var _ source.Source = (*Source)(nil)

// New validates cfg.
func New(cfg Config) (*Source, error) {
	c, err := NewClient(cfg.Client)
	if err != nil {
		return nil, err
	}
	return &Source{cfg: cfg, client: c}, nil
}

// Name is "commvault": the election, the mirror subtree and the status key.
func (s *Source) Name() string { return SourceName }

// Kind is "commvault".
func (s *Source) Kind() string { return "commvault" }

// Upstream is the web service root (NewClient refuses one with credentials).
func (s *Source) Upstream() string {
	u, err := url.Parse(s.cfg.Client.URL)
	if err != nil {
		return ""
	}
	u.User = nil
	return u.String()
}

// Handler is nil: Commvault pushes nothing.
func (s *Source) Handler(source.Env) http.Handler { return nil }

// Sync polls while this node leads.
func (s *Source) Sync(ctx context.Context, env source.Env) error {
	p, err := NewPoller(PollerConfig{Client: s.client, Store: env.Store, Interval: s.cfg.Interval,
		Concurrency: s.cfg.Concurrency, Logger: env.Logger, Report: func(st RoundStats, err error) { Report(env.Status, st, err) }})
	if err != nil {
		return err
	}
	return p.Run(ctx)
}

// Report hands one round's outcome to a source's status and metrics: the round as a reconcile, its lag (the
// age of Commvault's answer when the writes were committed), and a failure's class.
func Report(status *source.Status, st RoundStats, err error) {
	if status == nil {
		return
	}
	if err != nil {
		status.UpstreamError(ErrorClass(err), err)
	} else {
		status.Polled(st.Duration)
	}
	status.Reconciled(time.Now().Add(-st.Duration), int64(st.Written), int64(st.Records), int64(st.Tombstones), err)
}

// ErrorClass names a failure for deact_source_upstream_errors_total: source.ErrorClass, with a round that
// could not read some organizations (PartialError) a "bad_response".
func ErrorClass(err error) string {
	var pe *PartialError
	if errors.As(err, &pe) && !errors.Is(err, source.ErrSuspiciousListing) {
		return "bad_response"
	}
	return source.ErrorClass(err)
}
