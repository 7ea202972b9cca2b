package state

import (
	"context"
	"testing"
	"time"
)

// helloCases are report stream hellos against one registered node session (node "gw", instance "i1", the
// secret "s3cret"): only the exact session passes.
var helloCases = []struct {
	name  string
	hello reportMsg
	ok    bool
}{
	{"the session", reportMsg{Node: "gw", Instance: "i1", Registered: 5, Secret: "s3cret"}, true},
	{"wrong secret", reportMsg{Node: "gw", Instance: "i1", Registered: 5, Secret: "s3cret "}, false},
	{"the hash as the secret", reportMsg{Node: "gw", Instance: "i1", Registered: 5, Secret: reportKeyHash("s3cret")}, false},
	{"no secret", reportMsg{Node: "gw", Instance: "i1", Registered: 5}, false},
	{"other instance", reportMsg{Node: "gw", Instance: "i2", Registered: 5, Secret: "s3cret"}, false},
	{"other node", reportMsg{Node: "gw2", Instance: "i1", Registered: 5, Secret: "s3cret"}, false},
	{"node id with a path", reportMsg{Node: "gw/../gw", Instance: "i1", Registered: 5, Secret: "s3cret"}, false},
	{"no registration revision", reportMsg{Node: "gw", Instance: "i1", Secret: "s3cret"}, false},
}

// verifyingFanout is a Fanout whose registry view holds the session of helloCases, current up to revision 100.
func verifyingFanout() *Fanout {
	f := NewFanout(nil, nil)
	f.nodes[NodeKey("gw")] = Node{ID: "gw", Instance: "i1", ReportKeyHash: reportKeyHash("s3cret")}
	f.nodes[NodeKey("old")] = Node{ID: "old", Instance: "i1"} // reports through its record only
	f.synced, f.rev = true, 100
	return f
}

func TestVerifyHello(t *testing.T) {
	f := verifyingFanout()
	for _, c := range helloCases {
		t.Run(c.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			key, hash, err := f.verify(ctx, c.hello)
			if (err == nil) != c.ok {
				t.Fatalf("verify: %v, want ok=%v", err, c.ok)
			}
			if c.ok && (key != NodeKey("gw") || hash != reportKeyHash("s3cret")) {
				t.Fatalf("verified as %q %q", key, hash)
			}
		})
	}
}

// FuzzVerifyHello: no hello but the session's own is verified, and a node without a report hash (one that
// reports only through its record) can never be reported for.
func FuzzVerifyHello(f *testing.F) {
	for _, c := range helloCases {
		f.Add(c.hello.Node, c.hello.Instance, c.hello.Registered, c.hello.Secret)
	}
	f.Add("old", "i1", int64(5), "")
	fo := verifyingFanout()
	f.Fuzz(func(t *testing.T, node, instance string, registered int64, secret string) {
		if registered > 100 {
			registered = 100 // beyond the view, verify waits for it: not what this target is about
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		key, _, err := fo.verify(ctx, reportMsg{Node: node, Instance: instance, Registered: registered, Secret: secret})
		want := node == "gw" && instance == "i1" && secret == "s3cret" && registered > 0
		if (err == nil) != want {
			t.Fatalf("verify(%q, %q, %d, %q): %v", node, instance, registered, secret, err)
		}
		if err == nil && key != NodeKey("gw") {
			t.Fatalf("verified for %q", key)
		}
	})
}
