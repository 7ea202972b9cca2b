package daemon

import (
	"context"
	"fmt"
	"time"

	"github.com/deact/deact/authz"
	"github.com/deact/deact/state"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/reflection"
)

func (d *Daemon) startGateway(ctx context.Context, reg *prometheus.Registry) error {
	cfg := d.cfg
	reportTLS, err := d.reportTLS()
	if err != nil {
		return err
	}
	var seed *state.SeedConfig
	if !cfg.NoSeeds && !cfg.admin() { // an all-in-one node's replica is the one its admin side would seed from
		seed = &state.SeedConfig{NodeID: cfg.NodeID, TLS: reportTLS}
	}
	d.replica = state.NewReplica(state.ReplicaConfig{
		Client: d.cli, Logger: d.log, ProgressInterval: cfg.ProgressInterval, ResyncInterval: cfg.ResyncInterval, Seed: seed,
	})
	registerReplicaMetrics(reg, d.replica)
	d.run(ctx, "replica", d.replica.Run)
	reporter, err := state.NewNodeReporter(state.NodeReporterConfig{
		Client: d.cli, Replica: d.replica, NodeID: cfg.NodeID, Version: Version, Logger: d.log, TTL: cfg.NodeTTL,
		ReportTLS: reportTLS,
	})
	if err != nil {
		return err
	}
	registerReporterMetrics(reg, reporter)
	d.run(ctx, "node reporter", reporter.Run) // ErrNodeIDInUse stops the daemon
	d.reporter = reporter

	policy, _ := authz.ParseStalenessPolicy(cfg.Staleness) // validated
	presets := cfg.Presets
	a, err := authz.New(authz.Config{
		Replica: d.replica, Presets: presets, RulesFile: cfg.RulesFile, Logger: d.log, Registry: reg,
		RevisionHeader: true, Staleness: policy, Fenced: reporter.FencedAt,
	})
	if err != nil {
		return err
	}
	d.authz = a

	opts := []grpc.ServerOption{
		grpc.MaxConcurrentStreams(1024),
		grpc.MaxRecvMsgSize(4 << 20),
		// A connection that has not finished its HTTP/2 handshake in time is closed (gRPC waits 120 s by default).
		grpc.ConnectionTimeout(cfg.HandshakeTimeout),
		// Idle connections are closed; quiet ones are pinged, and closed when the peer is gone.
		grpc.KeepaliveParams(keepalive.ServerParameters{MaxConnectionIdle: cfg.IdleTimeout, Time: 30 * time.Second, Timeout: 10 * time.Second}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 5 * time.Second, PermitWithoutStream: true}),
	}
	if tlsCfg, err := d.serverTLS(); err != nil {
		return err
	} else if tlsCfg != nil {
		opts = append(opts, grpc.Creds(credentials.NewTLS(tlsCfg)))
	}
	lis, err := d.listen("authz", cfg.AuthzAddr)
	if err != nil {
		return fmt.Errorf("--authz-addr: %w", err)
	}
	d.AuthzAddr = lis.Addr().String()
	d.grpc = grpc.NewServer(append(opts, grpc.UnaryInterceptor(lis.unaryBusy))...)
	authv3.RegisterAuthorizationServer(d.grpc, a)
	d.health = health.NewServer()
	d.health.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
	d.health.SetServingStatus(authv3.Authorization_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_NOT_SERVING)
	healthpb.RegisterHealthServer(d.grpc, d.health)
	reflection.Register(d.grpc)
	go func() {
		if err := d.grpc.Serve(lis); err != nil {
			d.fail(fmt.Errorf("authz gRPC: %w", err))
		}
	}()
	if d.HTTPCheckAddr, err = d.serveHTTP("check", cfg.HTTPCheckAddr, a.HTTPHandler(), false); err != nil {
		return fmt.Errorf("--http-check-addr: %w", err)
	}
	return nil
}
