package state_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/deact/deact/internal/wait"
	"github.com/deact/deact/state"
	"github.com/deact/deact/state/etcdtest"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

// startReportServer serves direct reports into f on lis (a new loopback port if nil), advertised as advertise
// (the listener's address if empty), until the returned stop is called or the test ends.
func startReportServer(t *testing.T, cli *clientv3.Client, f *state.Fanout, lis net.Listener, advertise string) (*state.ReportServer, string, func()) {
	t.Helper()
	if lis == nil {
		var err error
		if lis, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
	}
	s, err := state.NewReportServer(state.ReportServerConfig{Client: cli, Fanout: f, Advertise: advertise, Logger: quietLogger(), TTL: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = s.Serve(ctx, lis) }()
	var once atomic.Bool
	stop := func() {
		if once.CompareAndSwap(false, true) {
			cancel()
			<-done
		}
	}
	t.Cleanup(stop)
	return s, lis.Addr().String(), stop
}

// startReporters runs n replicas and reporters (short heartbeat, 5 s lease) and returns the reporters.
func startReporters(t *testing.T, endpoints []string, n int, heartbeat time.Duration) []*state.NodeReporter {
	t.Helper()
	reps := make([]*state.NodeReporter, n)
	for i := range reps {
		cli := etcdtest.Client(t, endpoints)
		r := startReplica(t, cli, state.ReplicaConfig{})
		rep, err := state.NewNodeReporter(state.NodeReporterConfig{Client: cli, Replica: r, NodeID: fmt.Sprintf("gw-%d", i),
			Version: "test", Logger: quietLogger(), TTL: 5 * time.Second, Heartbeat: heartbeat})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); _ = rep.Run(ctx) }()
		t.Cleanup(func() { cancel(); <-done })
		reps[i] = rep
	}
	return reps
}

// streaming reports whether every reporter has an up stream to each of admins admin nodes.
func streaming(reps []*state.NodeReporter, admins int64) func() bool {
	return func() bool {
		for _, r := range reps {
			if r.Stats().Streams != admins {
				return false
			}
		}
		return true
	}
}

// nodeWrites counts the puts of node records from now on.
func nodeWrites(t *testing.T, cli *clientv3.Client) *atomic.Int64 {
	t.Helper()
	var n atomic.Int64
	ctx, cancel := context.WithCancel(context.Background())
	wch := cli.Watch(ctx, state.NodesPrefix, clientv3.WithPrefix(), clientv3.WithCreatedNotify())
	<-wch // created: every later put is seen
	done := make(chan struct{})
	go func() {
		defer close(done)
		for wr := range wch {
			for _, ev := range wr.Events {
				if ev.Type == clientv3.EventTypePut {
					n.Add(1)
				}
			}
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
	return &n
}

// confirmChange writes a change and waits until every node confirmed it.
func confirmChange(t *testing.T, store *state.Store, f *state.Fanout, i int) state.Confirmation {
	t.Helper()
	ctx := context.Background()
	res, err := store.DeactivateOrg(ctx, fmt.Sprintf("o-%d", i), state.OpsAll, false, who)
	if err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	c, err := f.WaitApplied(wctx, res.Revision)
	if err != nil {
		t.Fatalf("change %d: %d/%d confirmed (pending %v): %v", i, c.Confirmed, c.Total, c.Pending, err)
	}
	return c
}

// TestDirectReportsConfirmWithoutRecordWrites (issue 17): gateways that stream to the admin node confirm every
// change exactly (all of them, every time) and write their records not once for it.
func TestDirectReportsConfirmWithoutRecordWrites(t *testing.T) {
	t.Parallel()
	const nodes, changes = 5, 20
	srv := etcdtest.Start(t)
	cli := etcdtest.Client(t, srv.Endpoints())
	f := startFanout(t, cli)
	s, _, _ := startReportServer(t, cli, f, nil, "")
	reps := startReporters(t, srv.Endpoints(), nodes, 10*time.Second)
	wait.Eventually(t, "every node streaming", streaming(reps, 1))
	wait.Eventually(t, "every node registered", func() bool { return len(f.Nodes()) == nodes })

	writes := nodeWrites(t, cli)
	store := state.NewStore(cli)
	for i := range changes {
		if c := confirmChange(t, store, f, i); c.Confirmed != nodes || c.Total != nodes {
			t.Fatalf("change %d confirmed %d/%d", i, c.Confirmed, c.Total)
		}
	}
	if n := writes.Load(); n != 0 {
		t.Fatalf("%d node-record writes for %d changes on %d streaming nodes, want 0", n, changes, nodes)
	}
	if st := s.Stats(); st.Reports < changes || st.Streams != nodes || st.Rejected != 0 {
		t.Fatalf("report server stats %+v", st)
	}
	for _, n := range f.Nodes() {
		if n.AppliedRevision == 0 || n.ReportKeyHash == "" {
			t.Fatalf("node as the admin sees it: %+v", n)
		}
	}
}

// TestIdleDirectFleetWritesNothing (issue 17): a fleet that streams writes nothing to etcd while nothing
// changes, heartbeats included (they travel on the streams: the admin acknowledged some in the window).
func TestIdleDirectFleetWritesNothing(t *testing.T) {
	t.Parallel()
	const nodes, heartbeat = 5, 500 * time.Millisecond
	srv := etcdtest.Start(t)
	cli := etcdtest.Client(t, srv.Endpoints())
	f := startFanout(t, cli)
	startReportServer(t, cli, f, nil, "")
	reps := startReporters(t, srv.Endpoints(), nodes, heartbeat)
	wait.Eventually(t, "every node streaming", streaming(reps, 1))
	confirmChange(t, state.NewStore(cli), f, 0)

	rev := func() int64 {
		resp, err := cli.Get(context.Background(), "/probe")
		if err != nil {
			t.Fatal(err)
		}
		return resp.Header.Revision
	}
	reports := func() (n int64) {
		for _, r := range reps {
			n += r.Stats().Reports
		}
		return n
	}
	before, sent := rev(), reports()
	// The window spans several heartbeats and lease keep-alives (every ~1.3 s with a 5 s lease).
	deadline := time.Now().Add(4 * time.Second)
	for time.Now().Before(deadline) {
		if now := rev(); now != before {
			t.Fatalf("etcd's revision moved from %d to %d while nothing changed", before, now)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if got := reports() - sent; got < nodes*3 {
		t.Fatalf("%d heartbeat reports acknowledged in the window, want at least %d: the window proves nothing", got, nodes*3)
	}
}

// TestPausedDirectReporterCountsUntilLeaseExpires (issue 17): a streaming gateway that stops applying and
// renewing (cut from etcd; its stream to the admin stays open) counts as unconfirmed for every write until its
// lease expires, then leaves the count; it is never confirmed on the strength of its open stream.
func TestPausedDirectReporterCountsUntilLeaseExpires(t *testing.T) {
	t.Parallel()
	srv := etcdtest.Start(t)
	cli := etcdtest.Client(t, srv.Endpoints())
	f := startFanout(t, cli)
	startReportServer(t, cli, f, nil, "")
	live := startReporters(t, srv.Endpoints(), 2, 10*time.Second)

	link := newCutProxy(t, srv.Endpoints()[0])
	pcli := proxiedClient(t, link.endpoint())
	r := startReplica(t, pcli, state.ReplicaConfig{})
	paused, _, _ := runReporter(t, pcli, r, "paused")
	all := append(live, paused)
	wait.Eventually(t, "every node streaming", streaming(all, 1))
	store := state.NewStore(cli)
	if c := confirmChange(t, store, f, 0); c.Total != 3 {
		t.Fatalf("confirmation %+v", c)
	}

	link.cut()
	res, err := store.DeactivateOrg(context.Background(), "o-1", state.OpsAll, false, who)
	if err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(context.Background(), time.Second)
	c, err := f.WaitApplied(wctx, res.Revision)
	cancel()
	if err == nil || c.Confirmed != 2 || c.Total != 3 || len(c.Pending) != 1 || c.Pending[0] != "paused" {
		t.Fatalf("while the paused node's lease lives: %+v, %v", c, err)
	}
	if paused.Stats().Streams != 1 {
		t.Fatal("the paused node's stream to the admin broke: the test does not show what it means to")
	}
	// Once the lease expires (5 s) the node leaves the count and the write is confirmed by the live ones.
	wctx, cancel = context.WithTimeout(context.Background(), 15*time.Second)
	c, err = f.WaitApplied(wctx, res.Revision)
	cancel()
	if err != nil || c.Confirmed != 2 || c.Total != 2 {
		t.Fatalf("after the lease expired: %+v, %v", c, err)
	}
	if !paused.Fenced() {
		t.Fatal("the paused node left the count without being fenced")
	}
}

// TestAdminUnreachableFallsBackAndRecovers (issue 17): when the admin node's report endpoint is cut (its entry
// still registered) or the admin node restarts, gateways write their records again, so every change is still
// confirmed; once a stream is up again, they stop.
func TestAdminUnreachableFallsBackAndRecovers(t *testing.T) {
	t.Parallel()
	const nodes = 3
	srv := etcdtest.Start(t)
	cli := etcdtest.Client(t, srv.Endpoints())
	f := startFanout(t, cli)
	store := state.NewStore(cli)
	// The first admin node is reached through a proxy the test cuts.
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	proxy := newCutProxy(t, "http://"+lis.Addr().String())
	_, _, stop1 := startReportServer(t, cli, f, lis, proxy.p.Listen)
	reps := startReporters(t, srv.Endpoints(), nodes, 10*time.Second)
	wait.Eventually(t, "every node streaming", streaming(reps, 1))

	next := 0
	phase := func(name string, wantWrites bool) {
		t.Helper()
		writes := nodeWrites(t, cli)
		for i := range 5 {
			next++
			if c := confirmChange(t, store, f, next); c.Confirmed != nodes || c.Total != nodes {
				t.Fatalf("%s: change %d confirmed %d/%d", name, i, c.Confirmed, c.Total)
			}
		}
		if n := writes.Load(); (n > 0) != wantWrites {
			t.Fatalf("%s: %d node-record writes for 5 changes", name, n)
		}
	}
	phase("streaming", false)

	proxy.cut()
	wait.Eventually(t, "every node to fall back", streaming(reps, 0))
	phase("admin node unreachable, still registered", true)

	proxy.restore(t)
	wait.Eventually(t, "every node streaming again", streaming(reps, 1))
	phase("reachable again", false)

	stop1() // leaves the registry, then closes the streams
	startReportServer(t, cli, f, nil, "")
	wait.Eventually(t, "every node streaming to the restarted admin node", streaming(reps, 1))
	phase("after the admin node's restart", false)
	for _, r := range reps {
		if r.Stats().Fallbacks == 0 {
			t.Fatalf("reporter stats %+v: no fall back counted", r.Stats())
		}
	}
}

// forgedMsg is the report stream's message as an attacker would write it from the protocol.
type forgedMsg struct {
	Node       string `json:"node,omitempty"`
	Instance   string `json:"instance,omitempty"`
	Registered int64  `json:"registered,omitempty"`
	Secret     string `json:"secret,omitempty"`
	Applied    int64  `json:"applied,omitempty"`
}

type testJSONCodec struct{}

func (testJSONCodec) Marshal(v any) ([]byte, error)   { return json.Marshal(v) }
func (testJSONCodec) Unmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }
func (testJSONCodec) Name() string                    { return "json" }

// TestForgedReportRejected (issue 17): a report stream whose hello does not prove the node's current session
// (the secret whose hash its record holds) is refused, and what it claims is never counted.
func TestForgedReportRejected(t *testing.T) {
	t.Parallel()
	srv := etcdtest.Start(t)
	cli := etcdtest.Client(t, srv.Endpoints())
	f := startFanout(t, cli)
	s, addr, _ := startReportServer(t, cli, f, nil, "")
	// A gateway that reports only through its record (its applied revision moves only with its record) and
	// one that never applies anything but has a registry entry with a known hash: both are forged for.
	reps := startReporters(t, srv.Endpoints(), 1, 10*time.Second)
	wait.Eventually(t, "the honest node streaming", streaming(reps, 1))
	real := f.Nodes()[0]
	ctx := context.Background()
	lease, err := cli.Grant(ctx, 30)
	if err != nil {
		t.Fatal(err)
	}
	// A hash whose secret nobody here knows.
	const rightHash = "b2b1cfb1fa4a8b1e3c0a1cd34c4b0e6dbd9a8d6f9b1b7a3b0b4a1c8e8c4b3f10"
	put, err := cli.Put(ctx, state.NodeKey("victim"), `{"id":"victim","instance":"i1","appliedRevision":1,"reportKeyHash":"`+rightHash+`"}`, clientv3.WithLease(lease.ID))
	if err != nil {
		t.Fatal(err)
	}
	created := put.Header.Revision
	wait.Eventually(t, "the victim registered", func() bool { return len(f.Nodes()) == 2 })

	cases := []struct {
		name  string
		hello forgedMsg
	}{
		{"wrong secret", forgedMsg{Node: "victim", Instance: "i1", Registered: created, Secret: "guess"}},
		{"empty secret", forgedMsg{Node: "victim", Instance: "i1", Registered: created}},
		{"the hash as the secret", forgedMsg{Node: "victim", Instance: "i1", Registered: created, Secret: rightHash}},
		{"another instance", forgedMsg{Node: real.ID, Instance: "not-" + real.Instance, Registered: created, Secret: "guess"}},
		{"honest node, wrong secret", forgedMsg{Node: real.ID, Instance: real.Instance, Registered: created, Secret: "guess"}},
		{"unknown node", forgedMsg{Node: "nobody", Instance: "i1", Registered: created, Secret: "guess"}},
		{"bad node id", forgedMsg{Node: "../tokens/x", Instance: "i1", Registered: created, Secret: "guess"}},
		{"no registration revision", forgedMsg{Node: "victim", Instance: "i1", Secret: "guess"}},
		{"report without hello", forgedMsg{Applied: 1 << 40}},
	}
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			st, err := cc.NewStream(sctx, &grpc.StreamDesc{ServerStreams: true, ClientStreams: true}, "/deact.v1.NodeReports/Report", grpc.ForceCodec(testJSONCodec{}))
			if err != nil {
				t.Fatal(err)
			}
			_ = st.SendMsg(&c.hello)
			_ = st.SendMsg(&forgedMsg{Applied: 1 << 40}) // what it would claim
			var ack struct{ Applied int64 }
			err = st.RecvMsg(&ack)
			if status.Code(err) != codes.Unauthenticated {
				t.Fatalf("stream answered %+v, %v; want Unauthenticated", ack, err)
			}
			if got := s.Stats().Rejected; got != int64(i+1) {
				t.Fatalf("%d streams rejected, want %d", got, i+1)
			}
		})
	}
	wctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	c, err := f.WaitApplied(wctx, 1<<40)
	if err == nil || c.Confirmed != 0 {
		t.Fatalf("a forged claim counted: %+v, %v", c, err)
	}
}

// TestEveryAdminNodeConfirmsFromStreams (issue 17): with two admin nodes, each gateway streams to both, so a
// write confirmed on either admin node costs no record write; when one admin node stops (leaving the
// registry), the gateways keep streaming to the other without falling back.
func TestEveryAdminNodeConfirmsFromStreams(t *testing.T) {
	t.Parallel()
	const nodes = 3
	srv := etcdtest.Start(t)
	cli := etcdtest.Client(t, srv.Endpoints())
	f1, f2 := startFanout(t, cli), startFanout(t, etcdtest.Client(t, srv.Endpoints()))
	_, _, stop1 := startReportServer(t, cli, f1, nil, "")
	startReportServer(t, cli, f2, nil, "")
	reps := startReporters(t, srv.Endpoints(), nodes, 10*time.Second)
	wait.Eventually(t, "every node streaming to both admin nodes", streaming(reps, 2))
	wait.Eventually(t, "both admin nodes see every node", func() bool { return len(f1.Nodes()) == nodes && len(f2.Nodes()) == nodes })

	writes := nodeWrites(t, cli)
	store := state.NewStore(cli)
	for i := range 10 {
		f := f1
		if i%2 == 1 {
			f = f2
		}
		if c := confirmChange(t, store, f, i); c.Confirmed != nodes || c.Total != nodes {
			t.Fatalf("change %d confirmed %d/%d", i, c.Confirmed, c.Total)
		}
	}
	stop1()
	wait.Eventually(t, "every node streaming to the remaining admin node", streaming(reps, 1))
	for i := 10; i < 15; i++ {
		if c := confirmChange(t, store, f2, i); c.Confirmed != nodes || c.Total != nodes {
			t.Fatalf("change %d confirmed %d/%d", i, c.Confirmed, c.Total)
		}
	}
	if n := writes.Load(); n != 0 {
		t.Fatalf("%d node-record writes with every node streaming to every admin node, want 0", n)
	}
}
