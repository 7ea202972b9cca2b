package daemon

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/deact/deact/authz"
	"github.com/deact/deact/source"
	"github.com/deact/deact/state"
)

// Version is deactd's version, reported in node records and /readyz.
const Version = "0.1.0-dev"

// NodeRole is what a deactd process serves (--role). It is not a token's role (state.Role).
type NodeRole string

// The roles a daemon can take; their values are those of --role.
const (
	AllInOne    NodeRole = "all"     // gateway and admin
	GatewayNode NodeRole = "gateway" // replica, node registration, ext_authz and HTTP check
	AdminNode   NodeRole = "admin"   // admin API only
)

// Listener defaults: the one place they are written (Config, the deactd flags and the README refer to them).
const (
	DefaultAuthzAddr     = "127.0.0.1:9191" // ext_authz gRPC
	DefaultHTTPCheckAddr = "127.0.0.1:9192" // HTTP check
	DefaultAdminAddr     = "127.0.0.1:8080" // admin API, health and metrics
)

// Config is everything a daemon needs. Zero values take the defaults in brackets; Validate says what is wrong.
type Config struct {
	DataDir string   // embedded etcd data and the generated admin token ["./deact-data"]
	NodeID  string   // this gateway node's ID in the registry [hostname]
	Role    NodeRole // AllInOne, GatewayNode or AdminNode [AllInOne]

	EtcdEndpoints []string // external etcd; empty starts an embedded single-node etcd under DataDir
	EtcdCACert    string   // CA bundle for etcd's server certificates (https endpoints)
	EtcdCert      string   // client certificate for etcd mTLS
	EtcdKey       string   // its key
	EtcdLogLevel  string   // embedded etcd's log level ["error"]

	AuthzAddr     string // ext_authz gRPC listener [DefaultAuthzAddr]; port 0 picks one
	HTTPCheckAddr string // HTTP check listener [DefaultHTTPCheckAddr]
	AdminAddr     string // admin API, health and metrics [DefaultAdminAddr]
	// ReportAddr is where admin nodes take gateways' direct reports [AdminAddr's host, any free port: gateways
	// find it in etcd]; ReportAdvertise the address gateways dial for it [the bound address, an unspecified
	// host replaced by this host's first global unicast address].
	ReportAddr, ReportAdvertise string

	// ReadyFile, when set, is where the daemon writes its ready file (launch.Ready: addresses, etcd, pid) once
	// it is first ready, atomically; it is removed when the daemon stops.
	ReadyFile string

	// TLS for the three listeners: both files set turns TLS on. ClientCA additionally requires client
	// certificates signed by it (mTLS).
	TLSCert, TLSKey, TLSClientCA string

	AdminToken     string        // bootstrap admin token; empty uses the one stored in DataDir or makes one
	ConfirmTimeout time.Duration // admin's wait for gateway nodes after a write [2s]
	WriteTimeout   time.Duration // admin's bound on the etcd calls of one request; past it, 503 [5s]
	AuditRetention time.Duration // admin nodes delete audit records older than this, hourly [90 days]; <0 keeps all

	// Sources are the upstreams (ZITADEL, Commvault) admin nodes follow into the mirrored layer: each one's
	// handler is served on every admin node under /v1/sources/{name}/, its sync runs on one admin node at a time.
	Sources []source.Source
	// TombstoneRetention is how long a removed upstream org, project or app keeps denying
	// [source.DefaultTombstoneRetention: ZITADEL's 90-day refresh token lifetime + 12h]; <0 keeps tombstones.
	TombstoneRetention time.Duration
	SourceLeaderTTL    time.Duration // lease of a source's election [5s]: failover time when a leader dies

	Presets   []string // authz route presets [zitadel, commvault]
	RulesFile string   // custom authz rules (YAML or JSON)
	Staleness string   // per-op staleness policy, e.g. "backup=deny-after:5m" [serve last known state]

	// Connection limits of the three listeners. MaxConns bounds each listener's open connections [derived from
	// the open-file limit: what is left after a reserve for etcd and the data dir, shared equally]; when full,
	// the connection quiet the longest is closed for a new one. A connection must send its first request (TLS
	// and HTTP/2 handshakes included) within HandshakeTimeout [5s]; one without requests is closed after
	// IdleTimeout [2m] (HTTP keep-alive, gRPC MaxConnectionIdle).
	MaxConns         int
	HandshakeTimeout time.Duration
	IdleTimeout      time.Duration

	ProgressInterval time.Duration // how often the replica asks etcd to confirm it is current [500ms]
	NodeTTL          time.Duration // lease TTL of the gateway's registry record, whole seconds ≥ 5s [10s]
	ResyncInterval   time.Duration // anti-entropy relist period [10m]
	// NoSeeds turns seeding off (state/seed.go): a gateway node then lists etcd for its first snapshot rather
	// than taking it from an admin node's replica, and an admin node keeps no replica to serve seeds from.
	NoSeeds      bool
	DrainDelay   time.Duration // after health turns NOT_SERVING, wait this long before draining [0]
	DrainTimeout time.Duration // bound on draining in-flight requests [10s]

	Zitadel ZitadelConfig // the ZITADEL source (admin nodes); off unless its URL or signing key file is set
	// Commvault is the Commvault source (admin nodes); off unless its URL is set.
	Commvault CommvaultConfig

	Logger *slog.Logger // [text to stderr at info]
	Out    io.Writer    // where the start banner with addresses (and a new admin token) goes [stdout]
}

func (c *Config) setDefaults() {
	def := func(p *string, v string) {
		if *p == "" {
			*p = v
		}
	}
	def(&c.DataDir, "./deact-data")
	if c.Role == "" {
		c.Role = AllInOne
	}
	def(&c.AuthzAddr, DefaultAuthzAddr)
	def(&c.HTTPCheckAddr, DefaultHTTPCheckAddr)
	def(&c.AdminAddr, DefaultAdminAddr)
	def(&c.EtcdLogLevel, "error")
	if c.NodeID == "" {
		h, _ := os.Hostname()
		c.NodeID = sanitizeNodeID(h)
	}
	if c.ConfirmTimeout == 0 {
		c.ConfirmTimeout = 2 * time.Second
	}
	if c.DrainTimeout == 0 {
		c.DrainTimeout = 10 * time.Second
	}
	if c.HandshakeTimeout == 0 {
		c.HandshakeTimeout = 5 * time.Second
	}
	if c.IdleTimeout == 0 {
		c.IdleTimeout = 2 * time.Minute
	}
	if c.AuditRetention == 0 {
		c.AuditRetention = 90 * 24 * time.Hour
	}
	if c.TombstoneRetention == 0 {
		c.TombstoneRetention = source.DefaultTombstoneRetention
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	if c.Out == nil {
		c.Out = os.Stdout
	}
}

// sanitizeNodeID turns a host name into a valid ID.
func sanitizeNodeID(h string) string {
	b := []byte(h)
	for i, c := range b {
		if state.ValidateID("node", string(c)) != nil {
			b[i] = '-'
		}
	}
	if len(b) == 0 {
		return "node"
	}
	return string(b)
}

// Validate checks the configuration and says what is wrong in terms of flags.
func (c *Config) Validate() error {
	var errs []error
	switch c.Role {
	case AllInOne, GatewayNode, AdminNode:
	default:
		errs = append(errs, fmt.Errorf("--role %q: want all, gateway or admin", c.Role))
	}
	if c.gateway() && c.NodeID != "" { // empty takes the host name
		if err := state.ValidateID("node", c.NodeID); err != nil {
			errs = append(errs, fmt.Errorf("--node-id: %w", err))
		}
	}
	if (c.EtcdCert == "") != (c.EtcdKey == "") {
		errs = append(errs, errors.New("--etcd-cert and --etcd-key go together"))
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		errs = append(errs, errors.New("--tls-cert and --tls-key go together"))
	}
	if c.TLSClientCA != "" && c.TLSCert == "" {
		errs = append(errs, errors.New("--tls-client-ca needs --tls-cert and --tls-key"))
	}
	if len(c.EtcdEndpoints) > 0 && (c.EtcdCACert != "" || c.EtcdCert != "") {
		for _, ep := range c.EtcdEndpoints {
			if !strings.HasPrefix(ep, "https://") {
				errs = append(errs, fmt.Errorf("--etcd-endpoints %q: TLS flags need https:// endpoints", ep))
			}
		}
	}
	if c.NodeTTL != 0 && (c.NodeTTL < 5*time.Second || c.NodeTTL%time.Second != 0) {
		errs = append(errs, fmt.Errorf("--node-ttl %v: want whole seconds, at least 5s", c.NodeTTL))
	}
	if c.MaxConns < 0 || c.HandshakeTimeout < 0 || c.IdleTimeout < 0 {
		errs = append(errs, errors.New("--max-conns, --handshake-timeout and --idle-timeout cannot be negative"))
	}
	if _, err := authz.ParseStalenessPolicy(c.Staleness); err != nil {
		errs = append(errs, fmt.Errorf("--staleness: %w", err))
	}
	errs = append(errs, c.Zitadel.validate(c)...)
	errs = append(errs, c.Commvault.validate(c)...)
	return errors.Join(errs...)
}

func (c *Config) gateway() bool { return c.Role == AllInOne || c.Role == GatewayNode }

func (c *Config) admin() bool { return c.Role == AllInOne || c.Role == AdminNode }
