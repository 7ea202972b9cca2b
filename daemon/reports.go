package daemon

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"os"

	"github.com/deact/deact/state"
	"github.com/prometheus/client_golang/prometheus"
	"go.etcd.io/etcd/client/pkg/v3/transport"
)

// startReportServer serves gateways' direct reports on admin nodes, into fanout: a gRPC listener on
// --report-addr (default: the admin listener's host, any free port), advertised in the registry of admin
// nodes, so gateways find it without configuration.
func (d *Daemon) startReportServer(ctx context.Context, fanout *state.Fanout, reg prometheus.Registerer) error {
	addr := d.cfg.ReportAddr
	if addr == "" {
		host, _, err := net.SplitHostPort(d.cfg.AdminAddr)
		if err != nil {
			return fmt.Errorf("--admin-addr %q: %w", d.cfg.AdminAddr, err)
		}
		addr = net.JoinHostPort(host, "0")
	}
	lis, err := d.listen("report", addr)
	if err != nil {
		return fmt.Errorf("--report-addr: %w", err)
	}
	d.ReportAddr = lis.Addr().String()
	advertise := d.cfg.ReportAdvertise
	if advertise == "" {
		advertise = advertised(d.ReportAddr)
	}
	tlsCfg, err := d.serverTLS()
	if err != nil {
		lis.Close()
		return err
	}
	var seedFrom *state.Replica // the replica gateways' first snapshots are taken from (state/seed.go)
	if !d.cfg.NoSeeds {
		seedFrom = d.replica // an all-in-one node's own
		if seedFrom == nil {
			// An admin node keeps a replica of its own to seed gateways from (it is no gateway: it registers none).
			seedFrom = state.NewReplica(state.ReplicaConfig{Client: d.cli, Logger: d.log, ProgressInterval: d.cfg.ProgressInterval,
				ResyncInterval: d.cfg.ResyncInterval})
			d.run(ctx, "seed replica", seedFrom.Run)
		}
	}
	srv, err := state.NewReportServer(state.ReportServerConfig{
		Client: d.cli, Fanout: fanout, Advertise: advertise, TLS: tlsCfg, Version: Version, Logger: d.log, Replica: seedFrom,
	})
	if err != nil {
		lis.Close()
		return err
	}
	registerReportServerMetrics(reg, srv)
	d.run(ctx, "report server", func(ctx context.Context) error { return srv.Serve(ctx, lis) })
	return nil
}

// advertised is the address gateways dial for a listener bound to bound: the bound address itself, unless its
// host is unspecified (0.0.0.0, ::), which is replaced by this host's first global unicast address (a pod's
// IP), or else its host name.
func advertised(bound string) string {
	host, port, err := net.SplitHostPort(bound)
	if err != nil {
		return bound
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsUnspecified() {
		return bound
	}
	if addrs, err := net.InterfaceAddrs(); err == nil {
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok && n.IP.IsGlobalUnicast() {
				return net.JoinHostPort(n.IP.String(), port)
			}
		}
	}
	if h, err := os.Hostname(); err == nil && h != "" {
		return net.JoinHostPort(h, port)
	}
	return bound
}

// reportTLS is the gateway's client TLS for its report streams when the listeners serve TLS: the admin
// nodes' certificates are checked against --tls-client-ca (else the system roots), and the gateway shows its
// own certificate, for admin nodes that require client certificates. A stream that cannot be set up leaves the
// gateway writing its record, so a mismatch costs etcd writes, never a confirmation.
func (d *Daemon) reportTLS() (*tls.Config, error) {
	if d.cfg.TLSCert == "" {
		return nil, nil
	}
	info := transport.TLSInfo{CertFile: d.cfg.TLSCert, KeyFile: d.cfg.TLSKey, TrustedCAFile: d.cfg.TLSClientCA}
	c, err := info.ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("report stream TLS: %w", err)
	}
	return c, nil
}

// registerReportServerMetrics exports the admin node's direct-report counters.
func registerReportServerMetrics(reg prometheus.Registerer, s *state.ReportServer) {
	opts := func(name, help string) prometheus.Opts {
		return prometheus.Opts{Namespace: "deact", Subsystem: "report_server", Name: name, Help: help}
	}
	reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts(opts("streams", "Verified report streams from gateways open now.")),
			func() float64 { return float64(s.Stats().Streams) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts(opts("reports_total", "Applied-revision reports taken from gateways.")),
			func() float64 { return float64(s.Stats().Reports) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts(opts("rejected_total", "Report streams and seeds refused: malformed hello, unknown node session or ticket, wrong secret.")),
			func() float64 { return float64(s.Stats().Rejected) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts(opts("seeds_total", "Gateways' first snapshots sent from this node's replica.")),
			func() float64 { return float64(s.Stats().Seeds) }),
	)
}

// registerReporterMetrics exports the gateway's node-reporting counters.
func registerReporterMetrics(reg prometheus.Registerer, r *state.NodeReporter) {
	opts := func(name, help string) prometheus.Opts {
		return prometheus.Opts{Namespace: "deact", Subsystem: "node_reporter", Name: name, Help: help}
	}
	reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts(opts("streams", "Report streams to admin nodes up now.")),
			func() float64 { return float64(r.Stats().Streams) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts(opts("reports_total", "Reports acknowledged by admin nodes.")),
			func() float64 { return float64(r.Stats().Reports) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts(opts("record_writes_total", "Rewrites of the node's registry record (no stream to every admin node, or none registered).")),
			func() float64 { return float64(r.Stats().RecordWrites) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts(opts("fallbacks_total", "Times the node went from direct reports back to writing its record.")),
			func() float64 { return float64(r.Stats().Fallbacks) }),
	)
}
