// Command deactd is the deact daemon: the ext_authz gRPC server and HTTP check endpoint that enforce
// deactivations, the admin API that records them, and (by default) an embedded etcd holding them.
// Every flag can also be set through the environment: --admin-token is DEACT_ADMIN_TOKEN (pass secrets that way
// or with --admin-token-file, never on the command line).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/deact/deact/daemon"
)

func main() {
	cfg, err := parse(os.Args[1:])
	if err != nil {
		fmt.Fprintln(os.Stderr, "deactd:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := daemon.Run(ctx, cfg); err != nil {
		fmt.Fprintln(os.Stderr, "deactd:", err)
		os.Exit(1)
	}
}

// parse fills a Config from flags, with DEACT_* environment variables for flags not given.
func parse(args []string) (daemon.Config, error) {
	var c daemon.Config
	var role, etcd, presets, logLevel, logFormat, tokenFile string
	fs := flag.NewFlagSet("deactd", flag.ContinueOnError)
	fs.StringVar(&c.DataDir, "data-dir", "./deact-data", "directory for the embedded etcd's data and the generated admin token")
	fs.StringVar(&c.NodeID, "node-id", "", "this gateway node's ID in the registry (default: host name)")
	fs.StringVar(&role, "role", string(daemon.AllInOne), "all, gateway (enforcement only) or admin (admin API only)")
	fs.StringVar(&etcd, "etcd-endpoints", "", "comma-separated etcd client URLs; empty starts an embedded single-node etcd in --data-dir")
	fs.StringVar(&c.EtcdCACert, "etcd-cacert", "", "CA bundle that signed etcd's server certificates")
	fs.StringVar(&c.EtcdCert, "etcd-cert", "", "client certificate for etcd (mTLS)")
	fs.StringVar(&c.EtcdKey, "etcd-key", "", "key of --etcd-cert")
	fs.StringVar(&c.EtcdLogLevel, "etcd-log-level", "error", "log level of the embedded etcd")
	fs.StringVar(&c.AuthzAddr, "authz-addr", daemon.DefaultAuthzAddr, "ext_authz gRPC listen address (port 0 picks a free port)")
	fs.StringVar(&c.HTTPCheckAddr, "http-check-addr", daemon.DefaultHTTPCheckAddr, "HTTP check (nginx auth_request) listen address")
	fs.StringVar(&c.AdminAddr, "admin-addr", daemon.DefaultAdminAddr, "admin API, /healthz, /readyz and /metrics listen address")
	fs.StringVar(&c.ReadyFile, "ready-file", "", "once ready, write the node's ID, role, version, pid, listener addresses and etcd endpoints to this file as JSON (atomically, 0600); removed when deactd stops")
	fs.StringVar(&c.ReportAddr, "report-addr", "", "admin nodes: listen address for gateways' direct reports of what they applied (default: the --admin-addr host, any free port; gateways find it in etcd)")
	fs.StringVar(&c.ReportAdvertise, "report-advertise", "", "admin nodes: the address gateways dial for --report-addr (default: the bound address; an unspecified host becomes this host's first global unicast address)")
	fs.IntVar(&c.MaxConns, "max-conns", 0, "bound on each listener's open connections; when full, the connection quiet the longest makes room (default: derived from the open-file limit, a reserve kept for etcd)")
	fs.DurationVar(&c.HandshakeTimeout, "handshake-timeout", 0, "a new connection must send its first request (TLS and HTTP/2 handshakes included) within this (default 5s)")
	fs.DurationVar(&c.IdleTimeout, "idle-timeout", 0, "close connections that carried no request for this long: HTTP keep-alive and gRPC (default 2m)")
	fs.StringVar(&c.TLSCert, "tls-cert", "", "serve the listeners over TLS with this certificate")
	fs.StringVar(&c.TLSKey, "tls-key", "", "key of --tls-cert")
	fs.StringVar(&c.TLSClientCA, "tls-client-ca", "", "require client certificates signed by this CA (mTLS)")
	fs.StringVar(&c.AdminToken, "admin-token", "", "bootstrap admin token, created only while no all-orgs admin token exists and never once revoked (default: the one kept in --data-dir, or a new one printed once); prefer DEACT_ADMIN_TOKEN or --admin-token-file: every user can read a command line")
	fs.StringVar(&tokenFile, "admin-token-file", "", "read the bootstrap admin token from this file (e.g. a mounted Secret) instead of --admin-token")
	fs.DurationVar(&c.ConfirmTimeout, "confirm-timeout", 0, "how long the admin API waits for every gateway node to apply a write (default 2s)")
	fs.DurationVar(&c.WriteTimeout, "write-timeout", 0, "bound on the etcd calls of one admin request (auth, reads, the write); past it the API answers 503 unavailable (default 5s)")
	fs.DurationVar(&c.AuditRetention, "audit-retention", 0, "admin nodes delete audit records older than this (default 2160h = 90 days; negative keeps all)")
	fs.DurationVar(&c.TombstoneRetention, "tombstone-retention", 0, "how long a removed upstream org, project or app keeps denying (default 2172h: ZITADEL's default refresh token lifetime of 90 days plus its 12h access token lifetime; negative keeps them)")
	fs.StringVar(&presets, "presets", "zitadel,commvault", "authz route presets to enable (zitadel, commvault; empty for none)")
	fs.StringVar(&c.RulesFile, "rules", "", "YAML or JSON file of custom authz route rules")
	fs.StringVar(&c.Staleness, "staleness", "", "per-op staleness policy, e.g. backup=deny-after:5m,login=serve-last-known (default: serve last known state)")
	fs.DurationVar(&c.NodeTTL, "node-ttl", 0, "lease TTL of this gateway's registry record, whole seconds (default 10s): a gateway that cannot renew it stops deciding a tenth (at least 1s) before it expires")
	fs.DurationVar(&c.ResyncInterval, "resync-interval", 0, "anti-entropy full relist period (default 10m)")
	seeds := fs.Bool("seeds", true, "gateway nodes take their first snapshot from an admin node's replica, then catch up with etcd, instead of listing etcd; admin nodes keep a replica to serve it")
	fs.DurationVar(&c.DrainDelay, "drain-delay", 0, "on SIGTERM, report NOT_SERVING this long before draining")
	fs.DurationVar(&c.DrainTimeout, "drain-timeout", 0, "bound on draining in-flight requests (default 10s)")
	var zitadelOrgs string
	fs.StringVar(&c.Zitadel.URL, "zitadel-url", "", "follow this ZITADEL (admin nodes): reconcile its orgs, projects and apps into deact")
	fs.StringVar(&c.Zitadel.TokenFile, "zitadel-token-file", "", "file with the personal access token of a ZITADEL service account (IAM_OWNER_VIEWER)")
	fs.StringVar(&c.Zitadel.KeyFile, "zitadel-key-file", "", "instead of --zitadel-token-file: the ZITADEL service account's key file (JSON), used with the JWT-profile grant")
	fs.StringVar(&c.Zitadel.SigningKeyFile, "zitadel-signing-key-file", "", "file with the signing key(s) of the ZITADEL Actions target, one a line; serves POST /sources/zitadel/events")
	fs.StringVar(&zitadelOrgs, "zitadel-orgs", "", "comma-separated ZITADEL org IDs to follow (default: all)")
	fs.DurationVar(&c.Zitadel.SyncInterval, "zitadel-sync-interval", 0, "time between ZITADEL reconciles (default 5m)")
	fs.StringVar(&c.Commvault.URL, "commvault-url", "", "follow this Commvault (admin nodes): poll its organizations' deactivation and domains; the web service root, e.g. https://cv.example.com/webconsole/api")
	fs.StringVar(&c.Commvault.User, "commvault-user", "", "Commvault user that logs in with POST /Login (needs to view every organization)")
	fs.StringVar(&c.Commvault.PasswordFile, "commvault-password-file", "", "file with that user's password (first line; 0600 recommended)")
	fs.StringVar(&c.Commvault.TokenFile, "commvault-token-file", "", "file with a fixed Commvault Authtoken (QSDK ...) instead of a login; read again after a 401")
	fs.DurationVar(&c.Commvault.SyncInterval, "commvault-sync-interval", 0, "time between Commvault polls, with jitter (default 1m)")
	fs.DurationVar(&c.Commvault.Timeout, "commvault-timeout", 0, "bound on each request to Commvault, its answer included (default 30s)")
	fs.IntVar(&c.Commvault.Concurrency, "commvault-concurrency", 0, "organization detail requests to Commvault in flight at once (default 8)")
	fs.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&logFormat, "log-format", "text", "text or json")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	var envErr error
	fs.VisitAll(func(f *flag.Flag) {
		env := "DEACT_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v, ok := os.LookupEnv(env); ok && !given[f.Name] && envErr == nil {
			if err := fs.Set(f.Name, v); err != nil {
				envErr = fmt.Errorf("%s: %w", env, err)
			}
		}
	})
	if envErr != nil {
		return c, envErr
	}
	if tokenFile != "" {
		if c.AdminToken != "" {
			return c, errors.New("--admin-token and --admin-token-file exclude each other")
		}
		b, err := os.ReadFile(tokenFile)
		if err != nil {
			return c, fmt.Errorf("--admin-token-file: %w", err)
		}
		c.AdminToken = strings.TrimSpace(string(b))
		if c.AdminToken == "" {
			return c, fmt.Errorf("--admin-token-file %s is empty", tokenFile)
		}
	}
	c.Role = daemon.NodeRole(role)
	c.EtcdEndpoints = splitList(etcd)
	c.Presets = splitList(presets)
	c.Zitadel.Orgs = splitList(zitadelOrgs)
	if c.Presets == nil {
		c.Presets = []string{}
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(logLevel)); err != nil {
		return c, fmt.Errorf("--log-level: %w", err)
	}
	opts := &slog.HandlerOptions{Level: level}
	switch logFormat {
	case "text":
		c.Logger = slog.New(slog.NewTextHandler(os.Stderr, opts))
	case "json":
		c.Logger = slog.New(slog.NewJSONHandler(os.Stderr, opts))
	default:
		return c, fmt.Errorf("--log-format %q: want text or json", logFormat)
	}
	c.NoSeeds = !*seeds
	return c, nil
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
