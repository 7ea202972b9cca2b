package admin_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// etcdRequests sums, over the embedded etcd servers of this process, the unary gRPC requests they handled, by
// method (Range, Txn, Put, LeaseKeepAlive, ...). etcd registers these counters in the default registry.
func etcdRequests(t *testing.T) map[string]float64 {
	t.Helper()
	mfs, err := prometheus.DefaultGatherer.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != "grpc_server_handled_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "grpc_method" {
					out[l.GetValue()] += m.GetCounter().GetValue()
				}
			}
		}
	}
	return out
}

// TestWriteEtcdRequests is the etcd cost budget of one confirmed org write, counted on the etcd server: one
// transaction (the compare-and-swap: the ownership and source checks, the record and the audit entry are all
// inside it), a read before it only for a key the admin node has not written or read before (a reactivation
// after its deactivation needs none), and at most one node-record write per gateway when gateways report
// through their records, none when they report on streams to the admin node. An extra round trip per write (a
// read before every transaction, a second transaction, a gateway rewriting its record on every keep-alive or
// probe) fails it. Counts, not timings: it holds on any machine.
//
// Not parallel: the counters are the process's, so no other test's etcd may run meanwhile.
func TestWriteEtcdRequests(t *testing.T) {
	const nodes, writes = 3, 60
	auth := "Authorization: Bearer " + bootstrapToken
	cases := []struct {
		name   string
		ranges float64 // reads per write: one for each key the admin node writes for the first time
		send   func(e *env, i int) response
	}{
		{"native deactivate and reactivate", 0.5, func(e *env, i int) response {
			action, body := "reactivate", `{}`
			if i%2 == 0 {
				action, body = "deactivate", `{"ops":"all","reason":"cost"}`
			}
			return e.do("POST", fmt.Sprintf("/v1/orgs/cost-%d/%s", i/2, action), body, auth, "Content-Type: application/json")
		}},
		{"zitadel REST deactivate", 1, func(e *env, i int) response {
			return e.do("POST", "/management/v1/orgs/me/_deactivate", "{}", auth, "Content-Type: application/json",
				fmt.Sprintf("x-zitadel-orgid: cost-z-%d", i))
		}},
	}
	for _, direct := range []bool{false, true} {
		for _, c := range cases {
			name := "records/" + c.name
			// A gateway that streams to the admin node writes its record only at registration.
			budget := map[string]float64{"Range": c.ranges, "Txn": 1 + nodes}
			if direct {
				name, budget["Txn"] = "streams/"+c.name, 1
			}
			t.Run(name, func(t *testing.T) {
				// Probes are the replica's own cost, once per interval whatever the write rate: out of this budget.
				e := newEnv(t, envOpts{nodes: nodes, progressInterval: time.Hour, directReports: direct})
				if r := c.send(e, 1_000_000); r.status != 200 { // warm: token cache, connections
					t.Fatalf("warm-up: %d %s", r.status, r.body)
				}
				before, start := etcdRequests(t), time.Now()
				for i := range writes {
					r := c.send(e, i)
					if r.status != 200 || r.header.Get("X-Deact-Confirmed") != fmt.Sprintf("%d/%d", nodes, nodes) {
						t.Fatalf("write %d: %d %s %q", i, r.status, r.header.Get("X-Deact-Confirmed"), r.body)
					}
				}
				after := etcdRequests(t)
				// Per-interval work in the window (keep-alives every few seconds, heartbeats, the token cache's
				// re-read every 2 s) is allowed for, per node and second; it is far below one request per write.
				slack := float64(nodes) * (2 + time.Since(start).Seconds())
				if d := after["Txn"] - before["Txn"]; d < writes {
					t.Fatalf("etcd counted %v transactions for %d writes: its request counters are not being read", d, writes)
				}
				for method, n := range after {
					d := n - before[method]
					limit := budget[method]*writes + slack
					t.Logf("%s: %.2f per write", method, d/writes)
					if d > limit {
						t.Errorf("%s: %v requests for %d writes (%.2f per write), budget %v per write (+%.0f for per-interval work)",
							method, d, writes, d/writes, budget[method], slack)
					}
				}
			})
		}
	}
}
