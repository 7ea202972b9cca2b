package daemon

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/deact/deact/source/zitadel"
	"github.com/deact/deact/state"
)

// ZitadelConfig is the ZITADEL source: on admin nodes, a reconcile of ZITADEL's orgs, projects and apps into the
// mirrored layer (one node at a time), and the Actions v2 event webhook (every admin node).
type ZitadelConfig struct {
	URL            string        // ZITADEL's base URL; empty turns the reconcile off
	TokenFile      string        // a service account's personal access token, or
	KeyFile        string        // its key file (JSON, JWT-profile grant)
	SigningKeyFile string        // the event target's signing key(s), one a line; empty turns the webhook off
	Orgs           []string      // follow only these org IDs [all]
	SyncInterval   time.Duration // between reconciles [5m]
}

func (z *ZitadelConfig) enabled() bool { return z.URL != "" || z.SigningKeyFile != "" }

func (z *ZitadelConfig) validate(c *Config) []error {
	var errs []error
	if !z.enabled() {
		if z.TokenFile != "" || z.KeyFile != "" || len(z.Orgs) > 0 || z.SyncInterval != 0 {
			errs = append(errs, errors.New("--zitadel-token-file, --zitadel-key-file, --zitadel-orgs and --zitadel-sync-interval need --zitadel-url"))
		}
		return errs
	}
	if !c.admin() {
		errs = append(errs, fmt.Errorf("--zitadel-url and --zitadel-signing-key-file need --role all or admin (not %s)", c.Role))
	}
	if z.URL != "" && (z.TokenFile == "") == (z.KeyFile == "") {
		errs = append(errs, errors.New("--zitadel-url needs one of --zitadel-token-file (personal access token) and --zitadel-key-file (service account key)"))
	}
	if z.URL == "" && (z.TokenFile != "" || z.KeyFile != "") {
		errs = append(errs, errors.New("--zitadel-token-file and --zitadel-key-file need --zitadel-url"))
	}
	if z.SyncInterval < 0 || (z.SyncInterval > 0 && z.SyncInterval < 100*time.Millisecond) {
		errs = append(errs, fmt.Errorf("--zitadel-sync-interval %v: want at least 100ms", z.SyncInterval))
	}
	for _, id := range z.Orgs {
		if err := state.ValidateID("org", id); err != nil {
			errs = append(errs, fmt.Errorf("--zitadel-orgs: %w", err))
		}
	}
	return errs
}

// addZitadel adds the ZITADEL source to the sources this admin node runs (startSources serves its webhook under
// /v1/sources/zitadel/ and runs its sync under the election), and serves the webhook at zitadel.WebhookPath too,
// the path the README gives for the ZITADEL target.
func (d *Daemon) addZitadel(fanout *state.Fanout, mux *http.ServeMux) error {
	z := d.cfg.Zitadel
	if !z.enabled() {
		return nil
	}
	cfg := zitadel.Config{URL: z.URL, Orgs: z.Orgs, Interval: z.SyncInterval, Fanout: fanout, ConfirmTimeout: d.cfg.ConfirmTimeout,
		WriteTimeout: d.cfg.WriteTimeout}
	if z.SigningKeyFile != "" {
		b, err := os.ReadFile(z.SigningKeyFile)
		if err != nil {
			return fmt.Errorf("--zitadel-signing-key-file: %w", err)
		}
		if cfg.Keys = zitadel.ParseKeys(b); len(cfg.Keys) == 0 {
			return fmt.Errorf("--zitadel-signing-key-file %s holds no key", z.SigningKeyFile)
		}
	}
	switch {
	case z.TokenFile != "":
		b, err := os.ReadFile(z.TokenFile)
		if err != nil {
			return fmt.Errorf("--zitadel-token-file: %w", err)
		}
		cfg.Token = strings.TrimSpace(string(b))
	case z.KeyFile != "":
		b, err := os.ReadFile(z.KeyFile)
		if err != nil {
			return fmt.Errorf("--zitadel-key-file: %w", err)
		}
		cfg.KeyFile = b
	}
	src, err := zitadel.New(cfg)
	if err != nil {
		return fmt.Errorf("--zitadel-*: %w", err)
	}
	d.cfg.Sources = append(d.cfg.Sources, src)
	if len(cfg.Keys) > 0 {
		mux.HandleFunc(zitadel.WebhookPath, func(w http.ResponseWriter, r *http.Request) {
			r2 := r.Clone(r.Context())
			r2.URL.Path, r2.URL.RawPath = zitadel.SourceWebhookPath, ""
			mux.ServeHTTP(w, r2)
		})
	} else {
		d.log.Info("zitadel events off (no --zitadel-signing-key-file): changes arrive with each reconcile only")
	}
	return nil
}
