package daemon

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/deact/deact/admin"
	"github.com/deact/deact/state"
)

// bootstrap is what bootstrapToken did, for the banner.
type bootstrap struct {
	token  string // shown only when generated here
	source string // "flag", "file" or "generated"
	result admin.BootstrapResult
}

// bootstrapToken offers a bootstrap admin token to the store: the one given, else the one kept in the data dir,
// else a new one written there (0600) and shown once. admin.Bootstrap creates it only while no all-orgs admin
// token exists and never re-creates a revoked one; a revoked or unneeded token is reported, not fatal, so that
// revoking the token a Kubernetes Secret still holds does not take the admin API down.
func (d *Daemon) bootstrapToken(ctx context.Context, store *state.Store) (bootstrap, error) {
	bs := bootstrap{source: "flag"}
	token := d.cfg.AdminToken
	path := filepath.Join(d.cfg.DataDir, "admin-token")
	if token == "" {
		bs.source = "file"
		if b, err := os.ReadFile(path); err == nil {
			token = strings.TrimSpace(string(b))
		} else {
			bs.source = "generated"
			if token, err = state.NewToken(); err != nil {
				return bs, err
			}
			// Written before it is created: a token in etcd that nobody holds would lock the operator out.
			if err := os.WriteFile(path, []byte(token+"\n"), 0o600); err != nil {
				return bs, fmt.Errorf("store admin token: %w", err)
			}
		}
	}
	bctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	res, err := admin.Bootstrap(bctx, store, token)
	if err != nil {
		return bs, fmt.Errorf("admin token: %w", err)
	}
	bs.result = res
	switch {
	case bs.source == "generated" && res == admin.BootstrapCreated:
		bs.token = token
	case bs.source == "generated":
		_ = os.Remove(path) // not a token: do not leave a secret that means nothing
	case res == admin.BootstrapRevoked:
		d.log.Warn("the bootstrap admin token was revoked; it stays revoked and is not re-created", "from", bs.source)
	case res == admin.BootstrapNotNeeded:
		d.log.Warn("the bootstrap admin token is not a token: the store holds an all-orgs admin token already; create tokens through the admin API", "from", bs.source)
	}
	return bs, nil
}
