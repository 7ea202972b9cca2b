package local_test

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"runtime"
	"runtime/pprof"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/deact/deact/admin/adminapi"
	"github.com/deact/deact/deploy/local"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/genproto/googleapis/rpc/code"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

var soakDuration = flag.Duration("soak.duration", 3*time.Second, "how long TestChurnSoak churns (make soak SOAK=10m)")

// history is what the writer committed for each org, in revision order.
type history struct {
	mu      sync.Mutex
	entries map[string][]change // org → changes, ascending revision
	last    int64               // revision of the last recorded write
}

type change struct {
	rev         int64
	deactivated bool
}

func (h *history) record(org string, rev int64, deactivated bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.entries[org] = append(h.entries[org], change{rev, deactivated})
	h.last = rev
}

// at returns whether org was deactivated at revision rev, and false for known when rev is past what the
// writer has recorded (its write may still be in flight).
func (h *history) at(org string, rev int64) (deactivated, known bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if rev > h.last {
		return false, false
	}
	cs := h.entries[org]
	i := sort.Search(len(cs), func(i int) bool { return cs[i].rev > rev })
	if i == 0 {
		return false, true
	}
	return cs[i-1].deactivated, true
}

type observation struct {
	node, org string
	worker    int // one worker sends its Checks one after another, so its revisions must never go back
	rev       int64
	denied    bool
}

// TestChurnSoak keeps every gateway of a local cluster busy with Checks while the admin API churns
// deactivations and reactivations, and checks that every decision matches the state at the revision the node
// decided at (x-deact-revision), that no node goes back in revision, and that goroutines and heap do not grow.
func TestChurnSoak(t *testing.T) {
	c, err := local.Start(local.Config{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	orgs := make([]string, 16)
	for i := range orgs {
		orgs[i] = "soak" + strconv.Itoa(i)
	}
	h := &history{entries: map[string][]change{}}
	ctx, cancel := context.WithTimeout(context.Background(), *soakDuration)
	defer cancel()

	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	goroutinesBefore := runtime.NumGoroutine()

	obs := make(chan observation, 4096)
	var checks, writes, unconfirmed atomic.Int64
	var wg sync.WaitGroup
	var conns []*grpc.ClientConn
	// Checkers: two per gateway, each with its own connection.
	for gi, addr := range c.AuthzAddrs() {
		for w := range 2 {
			conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { conn.Close() })
			conns = append(conns, conn)
			cl := authv3.NewAuthorizationClient(conn)
			node := fmt.Sprintf("gw%d", gi+1)
			wg.Add(1)
			worker := gi*10 + w
			go func(seed uint64) {
				defer wg.Done()
				rng := rand.New(rand.NewPCG(seed, 1))
				for ctx.Err() == nil {
					org := orgs[rng.IntN(len(orgs))]
					resp, err := cl.Check(ctx, &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
						Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
							Method: "POST", Path: "/oauth/v2/token",
						}},
						ContextExtensions: map[string]string{"op": "token", "org_id": org},
					}})
					if err != nil {
						// The run's deadline may reach gRPC before ctx reports it.
						if c := status.Code(err); c != codes.DeadlineExceeded && c != codes.Canceled {
							t.Errorf("Check on %s: %v", node, err)
						}
						return
					}
					checks.Add(1)
					obs <- observation{node: node, worker: worker, org: org, rev: revisionOf(resp), denied: resp.Status.Code == int32(code.Code_PERMISSION_DENIED)}
				}
			}(uint64(gi*10 + w))
		}
	}
	// Writer: one at a time, so revisions are recorded in order.
	admin, err := adminapi.New(adminapi.Config{URL: c.AdminURL(), Token: c.AdminToken})
	if err != nil {
		t.Fatal(err)
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		state := map[string]bool{}
		rng := rand.New(rand.NewPCG(99, 2))
		for ctx.Err() == nil {
			org := orgs[rng.IntN(len(orgs))]
			action := "deactivate"
			if state[org] {
				action = "reactivate"
			}
			res, err := write(admin, org, action)
			if err != nil {
				if ctx.Err() == nil {
					t.Errorf("%s %s: %v", action, org, err)
				}
				return
			}
			state[org] = !state[org]
			h.record(org, res.Revision, state[org])
			writes.Add(1)
			if res.Confirmation.Confirmed != res.Confirmation.Total {
				unconfirmed.Add(1)
			}
		}
	}()
	go func() { wg.Wait(); close(obs) }()

	// Verifier: checks each observation once the writer has recorded every write up to its revision.
	var pending []observation
	lastRev := map[int]int64{}
	contradictions := 0
	verify := func(o observation) bool {
		deactivated, known := h.at(o.org, o.rev)
		if !known {
			return false
		}
		if deactivated != o.denied {
			contradictions++
			if contradictions <= 5 {
				t.Errorf("%s decided %s at revision %d: denied=%v, but the org was deactivated=%v", o.node, o.org, o.rev, o.denied, deactivated)
			}
		}
		return true
	}
	for o := range obs {
		if o.rev < lastRev[o.worker] {
			t.Errorf("%s went back from revision %d to %d between two Checks", o.node, lastRev[o.worker], o.rev)
		}
		lastRev[o.worker] = o.rev
		if !verify(o) {
			pending = append(pending, o)
		}
		if len(pending) > 1024 {
			pending = retry(pending, verify)
		}
	}
	if pending = retry(pending, verify); len(pending) > 0 {
		t.Errorf("%d decisions at revisions the writer never recorded", len(pending))
	}

	// The checkers' connections close now (their client and server goroutines with them), so what remains
	// above the count before the load is what the load left behind.
	for _, conn := range conns {
		conn.Close()
	}
	admin.Close()
	runtime.GC()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	// Goroutines of connections and etcd requests still winding down come and go for a while after the load
	// stops: a leak is growth that stays, so take the count once it settles (or at the deadline).
	goroutinesAfter := runtime.NumGoroutine()
	for settle := time.Now().Add(10 * time.Second); goroutinesAfter > goroutinesBefore+64 && time.Now().Before(settle); {
		time.Sleep(100 * time.Millisecond)
		goroutinesAfter = runtime.NumGoroutine()
	}
	t.Logf("%s: %d checks, %d writes (%d not confirmed by all nodes), %d contradictions; goroutines %d → %d, heap %d → %d MiB",
		*soakDuration, checks.Load(), writes.Load(), unconfirmed.Load(), contradictions, goroutinesBefore, goroutinesAfter,
		before.HeapInuse>>20, after.HeapInuse>>20)
	if checks.Load() == 0 || writes.Load() == 0 {
		t.Fatal("the soak did nothing")
	}
	if contradictions > 0 {
		t.Fatalf("%d decisions contradict the state the node had applied", contradictions)
	}
	// A margin for the connections etcd's clients and the admin node keep or reopen.
	if goroutinesAfter > goroutinesBefore+64 {
		var stacks strings.Builder
		_ = pprof.Lookup("goroutine").WriteTo(&stacks, 1)
		t.Errorf("goroutines grew from %d to %d; now running:\n%s", goroutinesBefore, goroutinesAfter, stacks.String())
	}
	if after.HeapInuse > before.HeapInuse+128<<20 {
		t.Errorf("heap grew from %d to %d MiB", before.HeapInuse>>20, after.HeapInuse>>20)
	}
}

func retry(pending []observation, verify func(observation) bool) []observation {
	kept := pending[:0]
	for _, o := range pending {
		if !verify(o) {
			kept = append(kept, o)
		}
	}
	return kept
}

func revisionOf(resp *authv3.CheckResponse) int64 {
	hs := resp.GetOkResponse().GetHeaders()
	if d := resp.GetDeniedResponse(); d != nil {
		hs = d.GetHeaders()
	}
	for _, hv := range hs {
		if hv.GetHeader().GetKey() == "x-deact-revision" {
			n, _ := strconv.ParseInt(hv.GetHeader().GetValue(), 10, 64)
			return n
		}
	}
	return -1
}

func write(admin *adminapi.Client, org, action string) (adminapi.WriteResult, error) {
	req := adminapi.DeactivateRequest{Ops: "login,token"}
	if action == "reactivate" {
		return admin.ReactivateOrg(context.Background(), org, req)
	}
	return admin.DeactivateOrg(context.Background(), org, req)
}
