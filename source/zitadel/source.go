package zitadel

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"time"

	"github.com/deact/deact/source"
	"github.com/deact/deact/state"
)

// Config is the ZITADEL source as the daemon configures it.
type Config struct {
	URL     string // ZITADEL's base URL; empty: events only, no reconcile
	Token   string // the service account's personal access token (with URL), or
	KeyFile []byte // its key file, for the JWT-profile grant
	// Keys are the event target's signing keys (several during a rotation); none: no webhook.
	Keys           []string
	Orgs           []string      // follow only these orgs [all]
	Interval       time.Duration // between reconciles [5m]
	Fanout         *state.Fanout // the webhook waits on it before answering; nil: no wait
	ConfirmTimeout time.Duration // [2s]
	WriteTimeout   time.Duration // bound on the webhook's store write [5s]
	HTTP           *http.Client  // for ZITADEL's APIs [30 s timeout]
}

// Source is ZITADEL as a source.Source: its Sync reconciles on the leader, its Handler is the event webhook on
// every admin node.
type Source struct {
	cfg      Config
	client   *Client
	verifier *Verifier
}

var _ source.Source = (*Source)(nil)

// New validates cfg.
func New(cfg Config) (*Source, error) {
	s := &Source{cfg: cfg}
	if cfg.URL == "" && len(cfg.Keys) == 0 {
		return nil, errors.New("zitadel source: neither a URL nor signing keys")
	}
	var err error
	if cfg.URL != "" {
		if s.client, err = NewClient(ClientConfig{URL: cfg.URL, Token: cfg.Token, KeyFile: cfg.KeyFile, HTTP: cfg.HTTP}); err != nil {
			return nil, err
		}
	}
	if len(cfg.Keys) > 0 {
		if s.verifier, err = NewVerifier(cfg.Keys, nil); err != nil {
			return nil, err
		}
	}
	for _, id := range cfg.Orgs {
		if err := state.ValidateID("org", id); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// Name is the source's name: its election, mirror subtree and status key.
func (s *Source) Name() string { return SourceName }

// Kind is "zitadel".
func (s *Source) Kind() string { return "zitadel" }

// Upstream is ZITADEL's base URL without credentials.
func (s *Source) Upstream() string {
	u, err := url.Parse(s.cfg.URL)
	if err != nil {
		return ""
	}
	u.User = nil
	return u.String()
}

// Handler serves the event webhook at SourceWebhookPath and WebhookPath (nil without signing keys); other paths
// are 404.
func (s *Source) Handler(env source.Env) http.Handler {
	if s.verifier == nil {
		return nil
	}
	h, err := NewWebhook(WebhookConfig{Store: env.Store, Verifier: s.verifier, Fanout: s.cfg.Fanout,
		ConfirmTimeout: s.cfg.ConfirmTimeout, WriteTimeout: s.cfg.WriteTimeout, Orgs: s.cfg.Orgs, Logger: env.Logger, Status: env.Status})
	if err != nil {
		return nil // only a nil store or verifier fails, and neither is
	}
	mux := http.NewServeMux()
	mux.Handle(SourceWebhookPath, h)
	mux.Handle(WebhookPath, h)
	return mux
}

// Sync reconciles at once and every Interval while this node leads; without a URL it waits for the end.
func (s *Source) Sync(ctx context.Context, env source.Env) error {
	if s.client == nil {
		<-ctx.Done()
		return nil
	}
	rec, err := NewReconciler(ReconcilerConfig{Client: s.client, Store: env.Store, Orgs: s.cfg.Orgs,
		Interval: s.cfg.Interval, Logger: env.Logger, Report: func(st SyncStats, err error) { report(env, st, err) }})
	if err != nil {
		return err
	}
	return rec.Run(ctx)
}

// report hands one reconcile's outcome to the source's status and metrics.
func report(env source.Env, st SyncStats, err error) {
	if env.Status == nil {
		return
	}
	if err != nil {
		env.Status.UpstreamError(source.ErrorClass(err), err)
	}
	env.Status.Reconciled(time.Now().Add(-st.Duration), int64(st.Written), int64(st.Records), int64(st.Tombstones), err)
}
