package state

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/deact/deact/internal/wait"
	"github.com/deact/deact/state/etcdtest"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// startSeeding runs an admin node's replica (ready) and report server on a loopback port, calling before (if not
// nil) on the server before it serves.
func startSeeding(t *testing.T, cli *clientv3.Client, before func(*ReportServer)) (*Replica, *ReportServer, net.Listener) {
	t.Helper()
	ctx := context.Background()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	admin := NewReplica(ReplicaConfig{Client: cli, Logger: quiet})
	actx, acancel := context.WithCancel(ctx)
	adone := make(chan struct{})
	go func() { defer close(adone); _ = admin.Run(actx) }()
	t.Cleanup(func() { acancel(); <-adone })
	if err := admin.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	s, err := NewReportServer(ReportServerConfig{Client: cli, Fanout: NewFanout(cli, quiet), Replica: admin, Logger: quiet, TTL: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if before != nil {
		before(s)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sctx, scancel := context.WithCancel(ctx)
	sdone := make(chan struct{})
	go func() { defer close(sdone); _ = s.Serve(sctx, lis) }()
	t.Cleanup(func() { scancel(); <-sdone })
	return admin, s, lis
}

// Only the holder of a live ticket's secret gets a seed: every other request is refused before a record is sent.
func TestSeedRefusesWithoutTheTicketsSecret(t *testing.T) {
	t.Parallel()
	srv := etcdtest.Start(t)
	cli := etcdtest.Client(t, srv.Endpoints())
	ctx := context.Background()
	put, err := cli.Put(ctx, OrgKey("o1"), `{"disableLogin":true}`)
	if err != nil {
		t.Fatal(err)
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	_, s, lis := startSeeding(t, cli, nil)

	gw := NewReplica(ReplicaConfig{Client: cli, Logger: quiet, Seed: &SeedConfig{NodeID: "gw-1"}})
	good, revoke, err := gw.seedTicket(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer revoke()
	unleased, _ := json.Marshal(seedTicket{Node: "gw-1", Hash: reportKeyHash("s3cret")})
	if _, err := cli.Put(ctx, SeedTicketsPrefix+"unleased", string(unleased)); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		req  seedRequest
	}{
		{"wrong secret", seedRequest{Node: good.Node, Ticket: good.Ticket, Secret: good.Secret + "x"}},
		{"the hash as the secret", seedRequest{Node: good.Node, Ticket: good.Ticket, Secret: reportKeyHash(good.Secret)}},
		{"another node's ticket", seedRequest{Node: "gw-2", Ticket: good.Ticket, Secret: good.Secret}},
		{"no such ticket", seedRequest{Node: good.Node, Ticket: "0123", Secret: good.Secret}},
		{"no secret", seedRequest{Node: good.Node, Ticket: good.Ticket}},
		{"a ticket on no lease", seedRequest{Node: "gw-1", Ticket: "unleased", Secret: "s3cret"}},
		{"a ticket with a path", seedRequest{Node: good.Node, Ticket: "../" + good.Ticket, Secret: good.Secret}},
		{"a node ID with a path", seedRequest{Node: "gw/../gw-1", Ticket: good.Ticket, Secret: good.Secret}},
	} {
		t.Run(c.name, func(t *testing.T) {
			records := 0
			_, _, err := gw.seedFrom(ctx, lis.Addr().String(), c.req, nil, func([]byte, []byte, int64) { records++ })
			if status.Code(err) != codes.Unauthenticated || records != 0 {
				t.Fatalf("seed: %v with %d records, want Unauthenticated and none", err, records)
			}
		})
	}
	records := 0
	var hint [nKinds]int
	rev, _, err := gw.seedFrom(ctx, lis.Addr().String(), good, func(n [nKinds]int) {
		if records != 0 {
			t.Error("the counts came after a record")
		}
		hint = n
	}, func([]byte, []byte, int64) { records++ })
	if err != nil || records != 1 || rev < put.Header.Revision {
		t.Fatalf("seed with the ticket's secret: revision %d, %d records, %v", rev, records, err)
	}
	if want := ([nKinds]int{kindOrg: 1}); hint != want {
		t.Fatalf("the seed's counts are %v, want %v (the admin node's snapshot)", hint, want)
	}
	if s.Stats().Seeds != 1 || s.Stats().Rejected != 8 {
		t.Fatalf("stats %+v, want 1 seed and 8 refused", s.Stats())
	}
	wait.Until(t, "the admin node's registry entry says it seeds", 5*time.Second, func() bool {
		resp, err := cli.Get(ctx, AdminsPrefix, clientv3.WithPrefix())
		var entry AdminNode
		return err == nil && len(resp.Kvs) == 1 && json.Unmarshal(resp.Kvs[0].Value, &entry) == nil && entry.Seeds
	})
}

// stallingSeeds is an admin node that sends one empty chunk and then nothing (frozen mid-stream).
type stallingSeeds struct{}

func (stallingSeeds) seed(ss grpc.ServerStream) error {
	if err := ss.SendMsg(&seedFrame{}); err != nil {
		return err
	}
	<-ss.Context().Done()
	return ss.Context().Err()
}

// A seed that stalls is given up after SeedConfig.Stall, and one that waits its turn is not: the admin node
// tells it, with empty chunks, that it is coming.
func TestSeedStallsAndWaits(t *testing.T) {
	t.Parallel()
	srv := etcdtest.Start(t)
	cli := etcdtest.Client(t, srv.Endpoints())
	ctx := context.Background()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))

	t.Run("stalled", func(t *testing.T) {
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		gs := grpc.NewServer(grpc.ForceServerCodecV2(serverCodec{}))
		gs.RegisterService(seedServiceDesc(), stallingSeeds{})
		go func() { _ = gs.Serve(lis) }()
		t.Cleanup(gs.Stop)
		gw := NewReplica(ReplicaConfig{Client: cli, Logger: quiet, Seed: &SeedConfig{NodeID: "gw-1", Stall: 300 * time.Millisecond}})
		start := time.Now()
		_, _, err = gw.seedFrom(ctx, lis.Addr().String(), seedRequest{Node: "gw-1", Ticket: "t", Secret: "s"}, nil, func([]byte, []byte, int64) {})
		if err == nil || !strings.Contains(err.Error(), "no chunk for") {
			t.Fatalf("a stalled seed: %v", err)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Fatalf("a stalled seed was given up after %v", d)
		}
	})
	t.Run("queued", func(t *testing.T) {
		if _, err := cli.Put(ctx, OrgKey("o1"), `{"disableLogin":true}`); err != nil {
			t.Fatal(err)
		}
		_, s, lis := startSeeding(t, cli, func(s *ReportServer) {
			for range seedConcurrency { // every turn taken
				s.seeding <- struct{}{}
			}
		})
		gw := NewReplica(ReplicaConfig{Client: cli, Logger: quiet, Seed: &SeedConfig{NodeID: "gw-1", Stall: seedKeepWaiting + time.Second}})
		req, revoke, err := gw.seedTicket(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer revoke()
		time.AfterFunc(2*seedKeepWaiting+time.Second, func() { <-s.seeding }) // a turn frees, after the gateway's stall bound
		records := 0
		if _, _, err := gw.seedFrom(ctx, lis.Addr().String(), req, nil, func([]byte, []byte, int64) { records++ }); err != nil || records != 1 {
			t.Fatalf("a seed that waited its turn: %d records, %v", records, err)
		}
	})
}

// The counts header is read only as nKinds-1 counts in range: anything else is no hint (and etcd is counted).
func TestParseSeedCounts(t *testing.T) {
	n := [nKinds]int{kindOrg: 3, kindProject: 0, kindApp: 5, kindClient: 7, kindDomain: 1, kindAccount: 2}
	if got, ok := parseSeedCounts([]string{formatSeedCounts(n)}); !ok || got != n {
		t.Fatalf("round trip: %v %v, want %v", got, ok, n)
	}
	for _, v := range [][]string{nil, {}, {"1,2,3,4,5"}, {"1,2,3,4,5,6,7"}, {"1,2,3,4,5,-6"}, {"1,2,3,4,5,x"},
		{"1,2,3,4,5,134217729"}, {"1,2,3,4,5,6", "1,2,3,4,5,6"}, {" 1,2,3,4,5,6"}, {"1,2,3,4,5,99999999999999999999"}} {
		if got, ok := parseSeedCounts(v); ok || got != ([nKinds]int{}) {
			t.Errorf("parseSeedCounts(%q) = %v, %v: want no hint", v, got, ok)
		}
	}
}
