package state

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/status"
)

// ReportServerConfig configures a ReportServer. Zero values take the defaults in brackets.
type ReportServerConfig struct {
	Client *clientv3.Client
	Fanout *Fanout // the reports feed it; its Run must be going
	// Advertise is the address gateways dial, as written in this admin node's registry entry [the listener's].
	Advertise string
	TLS       *tls.Config // server TLS for the stream; nil serves plaintext
	Version   string
	Logger    *slog.Logger
	TTL       time.Duration // lease of the admin node's registry entry [10s]
	// Replica is this admin node's replica, from which it seeds gateways' first snapshots (seed.go); nil
	// serves no seeds.
	Replica *Replica
	// SeedMaxStaleness is how stale Replica may be and still seed [30s].
	SeedMaxStaleness time.Duration
}

// ReportServer is the admin side of direct reports: it takes gateways' report streams, verifies each against
// the gateway's registry record (the SHA-256 of the session secret), and feeds the reported revisions to the
// Fanout. While it serves, it keeps this admin node in the registry under AdminsPrefix, so gateways find it;
// the entry is written once per lease, then only kept alive. A gateway without a working stream to every
// registered admin node reports through its record as before, so confirmation never depends on this path.
type ReportServer struct {
	cfg ReportServerConfig
	log *slog.Logger
	id  string

	streams  atomic.Int64
	reports  atomic.Int64
	rejected atomic.Int64
	seeds    atomic.Int64
	seeding  chan struct{} // a token per seed being sent
}

// ReportServerStats are counters for metrics.
type ReportServerStats struct {
	Streams  int64 // open, verified report streams
	Reports  int64 // reports taken
	Rejected int64 // streams refused: malformed hello, unknown session or wrong secret
	Seeds    int64 // gateways' first snapshots sent
}

// drainStreams bounds how long a stopping report server waits for gateways to close their streams.
const drainStreams = time.Second

// helloTimeout bounds how long a stream's hello is waited for and verified.
const helloTimeout = 5 * time.Second

// NewReportServer checks cfg and returns a server; Serve starts it.
func NewReportServer(cfg ReportServerConfig) (*ReportServer, error) {
	if cfg.Client == nil || cfg.Fanout == nil {
		return nil, errors.New("report server: Client and Fanout are required")
	}
	if cfg.TTL == 0 {
		cfg.TTL = 10 * time.Second
	}
	if cfg.SeedMaxStaleness <= 0 {
		cfg.SeedMaxStaleness = defaultSeedMaxStaleness
	}
	if cfg.TTL < 5*time.Second || cfg.TTL%time.Second != 0 {
		return nil, fmt.Errorf("admin node lease TTL %v: want whole seconds, at least 5s", cfg.TTL)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	var id [8]byte
	if _, err := rand.Read(id[:]); err != nil {
		return nil, err
	}
	return &ReportServer{cfg: cfg, log: cfg.Logger.With("component", "report-server"), id: hex.EncodeToString(id[:]),
		seeding: make(chan struct{}, seedConcurrency)}, nil
}

// Stats returns the counters.
func (s *ReportServer) Stats() ReportServerStats {
	return ReportServerStats{Streams: s.streams.Load(), Reports: s.reports.Load(), Rejected: s.rejected.Load(), Seeds: s.seeds.Load()}
}

// Serve serves report streams on lis and keeps this admin node registered until ctx ends; then it leaves the
// registry first (gateways stop counting on it), gives the gateways up to a second to close their streams,
// and closes the rest. It closes lis.
func (s *ReportServer) Serve(ctx context.Context, lis net.Listener) error {
	opts := []grpc.ServerOption{
		grpc.ForceServerCodecV2(serverCodec{}),
		grpc.MaxRecvMsgSize(4 << 10),
		grpc.MaxConcurrentStreams(16), // a gateway needs one
		grpc.ConnectionTimeout(helloTimeout),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 30 * time.Second, Timeout: 10 * time.Second}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 5 * time.Second, PermitWithoutStream: true}),
	}
	if s.cfg.TLS != nil {
		opts = append(opts, grpc.Creds(credentials.NewTLS(s.cfg.TLS)))
	}
	srv := grpc.NewServer(opts...)
	srv.RegisterService(reportServiceDesc(), s)
	srv.RegisterService(seedServiceDesc(), s)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(lis) }()
	addr := s.cfg.Advertise
	if addr == "" {
		addr = lis.Addr().String()
	}
	rctx, cancel := context.WithCancel(ctx)
	registered := make(chan struct{})
	go func() {
		defer close(registered)
		untilDone(rctx, s.log, "admin node registration lost, registering again", time.Second, func(ctx context.Context) error { return s.register(ctx, addr) })
	}()
	var err error
	select {
	case <-ctx.Done():
	case err = <-served:
		err = fmt.Errorf("report server: %w", err)
	}
	cancel()
	<-registered // the entry is revoked: gateways no longer wait on this node
	// Gateways close their streams once they see the entry gone; a stream this side broke first would make them
	// fall back to record writes for nothing. Bounded: a gateway that does not see it is cut at the deadline.
	for deadline := time.Now().Add(drainStreams); s.streams.Load() > 0 && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	srv.Stop()
	return err
}

// register writes this admin node's entry on a new lease and keeps the lease alive until ctx ends (then it
// revokes it) or the lease is lost. The entry says the node serves seeds once its replica is ready: it is
// written again then, on the same lease.
func (s *ReportServer) register(ctx context.Context, addr string) error {
	cli := s.cfg.Client
	lease, revoke, err := grantLease(ctx, cli, s.cfg.TTL)
	if err != nil {
		return err
	}
	defer revoke()
	put := func(seeds bool) error {
		b, err := json.Marshal(AdminNode{ID: s.id, ReportAddr: addr, Version: s.cfg.Version, Seeds: seeds})
		if err != nil {
			return err
		}
		if _, err := cli.Put(ctx, AdminKey(s.id), string(b), clientv3.WithLease(lease.ID)); err != nil {
			return fmt.Errorf("register admin node: %w", err)
		}
		return nil
	}
	r := s.cfg.Replica
	seeds := r != nil && r.Ready() // once: a replica ready between two looks would never be written
	if err := put(seeds); err != nil {
		return err
	}
	kctx, kcancel := context.WithCancel(ctx)
	defer kcancel()
	ka, err := cli.KeepAlive(kctx, lease.ID)
	if err != nil {
		return fmt.Errorf("keep lease alive: %w", err)
	}
	var ready <-chan struct{}
	if r != nil && !seeds {
		ready = r.readyChan()
	}
	for {
		select {
		case <-ready:
			ready = nil
			if err := put(true); err != nil {
				return err
			}
			continue
		case _, ok := <-ka:
			if ok {
				continue
			}
		}
		break
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return errors.New("lease lost")
}

// report serves one gateway's stream: a verified hello, then reports until the gateway or its session ends.
func (s *ReportServer) report(ss grpc.ServerStream) error {
	hctx, cancel := context.WithTimeout(ss.Context(), helloTimeout)
	hello, key, hash, err := s.hello(hctx, ss)
	cancel()
	if err != nil {
		return s.refuse("report stream", hello.Node, err)
	}
	s.streams.Add(1)
	defer s.streams.Add(-1)
	if err := ss.SendMsg(&reportAck{}); err != nil {
		return err
	}
	for {
		var m reportMsg
		if err := ss.RecvMsg(&m); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		if m.Applied < 0 || m.StalenessMs < 0 {
			return status.Error(codes.InvalidArgument, "negative revision or staleness")
		}
		if err := s.cfg.Fanout.accept(key, hash, m.Applied, m.StalenessMs); err != nil {
			return status.Error(codes.FailedPrecondition, err.Error())
		}
		s.reports.Add(1)
		if err := ss.SendMsg(&reportAck{Applied: m.Applied}); err != nil {
			return err
		}
	}
}

// refuse counts and logs a refused stream (what: "report stream", "seed") and returns its status.
func (s *ReportServer) refuse(what, node string, err error) error {
	s.rejected.Add(1)
	if len(node) > MaxIDLen {
		node = node[:MaxIDLen]
	}
	s.log.Warn(what+" refused", "node", node, "err", err) // never the secret
	return status.Error(codes.Unauthenticated, what+" refused: "+err.Error())
}

// hello receives and verifies the first message within ctx.
func (s *ReportServer) hello(ctx context.Context, ss grpc.ServerStream) (hello reportMsg, key, hash string, err error) {
	if hello, err = recvWithin[reportMsg](ctx, ss); err != nil {
		return hello, "", "", fmt.Errorf("hello: %w", err)
	}
	key, hash, err = s.cfg.Fanout.verify(ctx, hello)
	return hello, key, hash, err
}
