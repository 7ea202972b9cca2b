package authz

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/golang-jwt/jwt/v5"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/deact/deact/state"
	"github.com/deact/deact/state/etcdtest"
	clientv3 "go.etcd.io/etcd/client/v3"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// Fixture IDs. Org 100 ("acme") has two projects: 300 with apps 400 and 401, 301 with app 402. Org 101 is a
// second ZITADEL org; org 900 is a Commvault tenant with domain "tenant9".
const (
	orgAcme   = "100"
	orgOther  = "101"
	orgTenant = "900"
	projMain  = "300"
	projRep   = "301"
	appPortal = "400"
	appCLI    = "401"
	appRep    = "402"

	clientPortal = "400@acme-portal"
	clientCLI    = "401@acme-cli"
	clientRep    = "402@reports"
	svcAccount   = "2001"
	user         = "2002"
)

const fixtures = `{"org":{"id":"100","name":"acme","domains":["acme.example","ACME"]}}
{"org":{"id":"101","name":"other","domains":["other.example"]}}
{"org":{"id":"900","name":"tenant9","domains":["tenant9","tenant9.example"]}}
{"project":{"id":"300","orgId":"100","state":"active"}}
{"project":{"id":"301","orgId":"100","state":"active"}}
{"app":{"id":"400","projectId":"300","orgId":"100","clientIds":["400@acme-portal"],"state":"active"}}
{"app":{"id":"401","projectId":"300","orgId":"100","clientIds":["401@acme-cli"],"state":"active"}}
{"app":{"id":"402","projectId":"301","orgId":"100","clientIds":["402@reports"],"state":"active"}}
{"account":{"id":"2001","orgId":"100"}}
{"account":{"id":"2002","orgId":"100"}}
`

// fixtureRecords are the same fixtures for state.BuildSnapshot (fuzzing and benchmarks).
func fixtureRecords(tb testing.TB) []state.Record {
	tb.Helper()
	var recs []state.Record
	for line := range strings.SplitSeq(strings.TrimSpace(fixtures), "\n") {
		var r state.Record
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			tb.Fatal(err)
		}
		recs = append(recs, r)
	}
	return recs
}

// env is a real etcd, a store writing to it, a replica following it, an Authorizer over the replica and a
// gRPC client connected to it over loopback.
type env struct {
	store   *state.Store
	cli     *clientv3.Client // the test's own, for records written behind the store's back
	replica *state.Replica
	az      *Authorizer
	client  authv3.AuthorizationClient
	key     ed25519.PrivateKey
}

func quietLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

func newEnv(t *testing.T, cfg Config) *env {
	t.Helper()
	srv := etcdtest.Start(t)
	cli := etcdtest.Client(t, srv.Endpoints())
	store := state.NewStore(cli)
	ctx := context.Background()
	if _, err := store.Import(ctx, strings.NewReader(fixtures), state.Change{Actor: "test"}); err != nil {
		t.Fatal(err)
	}
	replica := state.NewReplica(state.ReplicaConfig{Client: cli, Logger: quietLogger(),
		ProgressInterval: 50 * time.Millisecond, RetryInterval: 20 * time.Millisecond})
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); _ = replica.Run(rctx) }()
	t.Cleanup(func() { cancel(); <-done })
	wctx, wcancel := context.WithTimeout(ctx, 20*time.Second)
	defer wcancel()
	if err := replica.WaitReady(wctx); err != nil {
		t.Fatalf("replica not ready: %v", err)
	}
	cfg.Replica = replica
	if cfg.Logger == nil {
		cfg.Logger = quietLogger()
	}
	az, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(az.Close)
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return &env{store: store, cli: etcdtest.Client(t, srv.Endpoints()), replica: replica, az: az, client: serveGRPC(t, az), key: key}
}

// serveGRPC serves srv's ext_authz on a free loopback port and returns a client for it.
func serveGRPC(t testing.TB, az authv3.AuthorizationServer) authv3.AuthorizationClient {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	authv3.RegisterAuthorizationServer(gs, az)
	served := make(chan struct{})
	go func() { defer close(served); _ = gs.Serve(lis) }()
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		conn.Close()
		gs.Stop()
		<-served
	})
	return authv3.NewAuthorizationClient(conn)
}

// sign makes an EdDSA-signed JWT with the test's key.
func (e *env) sign(t testing.TB, claims jwt.MapClaims) string {
	t.Helper()
	return signJWT(t, e.key, claims)
}

func signJWT(t testing.TB, key ed25519.PrivateKey, claims jwt.MapClaims) string {
	t.Helper()
	tok, err := jwt.NewWithClaims(jwt.SigningMethodEdDSA, claims).SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// applied waits, polling with a deadline, until the replica holds revision rev.
func (e *env) applied(t testing.TB, rev int64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for e.replica.AppliedRevision() < rev {
		if time.Now().After(deadline) {
			t.Fatalf("replica did not apply revision %d (at %d)", rev, e.replica.AppliedRevision())
		}
		time.Sleep(time.Millisecond)
	}
}

// zitadelClaims are the claims of a ZITADEL access token for a user of org 100 through app 400.
func zitadelClaims(org, clientID string, aud ...string) jwt.MapClaims {
	now := time.Now()
	return jwt.MapClaims{
		"iss":                                   "https://id.example.com",
		"sub":                                   user,
		"aud":                                   aud,
		"azp":                                   clientID,
		"client_id":                             clientID,
		"exp":                                   now.Add(time.Hour).Unix(),
		"iat":                                   now.Unix(),
		"urn:zitadel:iam:user:resourceowner:id": org,
	}
}
