package state_test

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/deact/deact/state"
	"github.com/deact/deact/state/etcdtest"
	"go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
)

// etcdCalls counts the KV requests one client sends: reads by kind, and transactions.
type etcdCalls struct {
	mu                               sync.Mutex
	serializable, linearizable, txns int
}

func (c *etcdCalls) take() (serializable, linearizable, txns int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	serializable, linearizable, txns = c.serializable, c.linearizable, c.txns
	c.serializable, c.linearizable, c.txns = 0, 0, 0
	return
}

// countingStore is a Store whose client counts what it sends to etcd.
func countingStore(t *testing.T, endpoints []string) (*state.Store, *etcdCalls) {
	t.Helper()
	calls := &etcdCalls{}
	count := func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoke grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		calls.mu.Lock()
		switch r := req.(type) {
		case *etcdserverpb.RangeRequest:
			if r.Serializable {
				calls.serializable++
			} else {
				calls.linearizable++
			}
		case *etcdserverpb.TxnRequest:
			calls.txns++
		}
		calls.mu.Unlock()
		return invoke(ctx, method, req, reply, cc, opts...)
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: endpoints, DialTimeout: 5 * time.Second, Logger: zap.NewNop(),
		DialOptions: []grpc.DialOption{grpc.WithChainUnaryInterceptor(count)}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return state.NewStore(cli), calls
}

// TestStoreWritesWithoutReadingFirst: a store writes a key it wrote before with one transaction and no read,
// and one it does not know after a serializable read; whatever another writer did meanwhile (another admin
// node's store, a raw write or delete such as an import's), the answer is the one a linearizable read before the
// write would give, and the write builds on the value etcd really held.
func TestStoreWritesWithoutReadingFirst(t *testing.T) {
	t.Parallel()
	srv := etcdtest.Start(t)
	a, calls := countingStore(t, srv.Endpoints())
	b := state.NewStore(etcdtest.Client(t, srv.Endpoints()))
	raw := etcdtest.Client(t, srv.Endpoints())
	ctx := context.Background()
	login := state.OpLogin | state.OpToken

	cases := []struct {
		name string
		// before runs before the measured write: a's own writes, and what others write behind its back.
		before func(t *testing.T, org string)
		write  func(org string) (state.Result, error)
		want   error
		// disabled is what the org has disabled afterwards; gone: it has no record.
		disabled state.Ops
		gone     bool
		// The measured write's etcd requests.
		serializable, linearizable, txns int
	}{
		{
			name:     "unknown key: a serializable read, then the transaction",
			before:   func(*testing.T, string) {},
			write:    func(org string) (state.Result, error) { return a.DeactivateOrg(ctx, org, login, false, who) },
			disabled: login, serializable: 1, txns: 1,
		},
		{
			name: "its own last write: the transaction alone",
			before: func(t *testing.T, org string) {
				ok(t)(a.DeactivateOrg(ctx, org, login, false, who))
			},
			write:    func(org string) (state.Result, error) { return a.ReactivateOrg(ctx, org, who) },
			disabled: 0, txns: 1,
		},
		{
			name: "changed by another store: the failed compare returns the value to build on",
			before: func(t *testing.T, org string) {
				ok(t)(a.DeactivateOrg(ctx, org, state.OpLogin, false, who))
				ok(t)(b.DeactivateOrg(ctx, org, state.OpBackup, false, who))
			},
			write:    func(org string) (state.Result, error) { return a.DeactivateOrg(ctx, org, state.OpRestore, false, who) },
			disabled: state.OpLogin | state.OpBackup | state.OpRestore, txns: 2,
		},
		{
			name: "refused on a stale guess: checked by a linearizable read, then written",
			before: func(t *testing.T, org string) {
				ok(t)(a.DeactivateOrg(ctx, org, login, false, who))
				ok(t)(b.ReactivateOrg(ctx, org, who))
			},
			write:    func(org string) (state.Result, error) { return a.DeactivateOrg(ctx, org, login, false, who) },
			disabled: login, linearizable: 1, txns: 1,
		},
		{
			name: "allowed on a stale guess, refused on etcd's value",
			before: func(t *testing.T, org string) {
				ok(t)(a.DeactivateOrg(ctx, org, login, false, who))
				ok(t)(a.ReactivateOrg(ctx, org, who))
				ok(t)(b.DeactivateOrg(ctx, org, login, false, who))
			},
			write:    func(org string) (state.Result, error) { return a.DeactivateOrg(ctx, org, login, false, who) },
			want:     state.ErrAlreadyDeactivated,
			disabled: login, txns: 1,
		},
		{
			name: "deleted behind its back",
			before: func(t *testing.T, org string) {
				ok(t)(a.DeactivateOrg(ctx, org, login, false, who))
				if _, err := raw.Delete(ctx, state.OrgKey(org)); err != nil {
					t.Fatal(err)
				}
			},
			write: func(org string) (state.Result, error) { return a.ReactivateOrg(ctx, org, who) },
			want:  state.ErrNotDeactivated,
			gone:  true, txns: 1,
		},
		{
			name: "written behind its back by a raw put, refused on the serializable read: checked linearizably",
			before: func(t *testing.T, org string) {
				b, _ := json.Marshal(state.Org{ID: org, Disabled: login})
				if _, err := raw.Put(ctx, state.OrgKey(org), string(b)); err != nil {
					t.Fatal(err)
				}
			},
			write:    func(org string) (state.Result, error) { return a.DeactivateOrg(ctx, org, state.OpLogin, false, who) },
			want:     state.ErrAlreadyDeactivated,
			disabled: login, serializable: 1, linearizable: 1,
		},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			org := "wc-" + itoa(i)
			c.before(t, org)
			prev, err := raw.Get(ctx, state.OrgKey(org))
			if err != nil {
				t.Fatal(err)
			}
			calls.take()
			res, err := c.write(org)
			ser, lin, txns := calls.take()
			if !errors.Is(err, c.want) || (c.want != nil) != (err != nil) {
				t.Fatalf("write: %v, want %v", err, c.want)
			}
			got, gerr := a.GetOrg(ctx, org)
			switch {
			case c.gone && !errors.Is(gerr, state.ErrNotFound):
				t.Fatalf("org record: %+v, %v; want none", got, gerr)
			case !c.gone && (gerr != nil || got.Record.Disabled != c.disabled):
				t.Fatalf("org disables %v (%v), want %v", got.Record.Disabled, gerr, c.disabled)
			}
			if err == nil {
				// The audit entry's "before" is what etcd held, not the store's guess.
				entries, err := a.Audit(ctx, "", 1)
				if err != nil || len(entries) != 1 || entries[0].Revision != res.Revision {
					t.Fatalf("audit: %+v, %v", entries, err)
				}
				want := ""
				if len(prev.Kvs) == 1 {
					want = string(prev.Kvs[0].Value)
				}
				if string(entries[0].Before) != want {
					t.Errorf("audit before = %s, etcd held %s", entries[0].Before, want)
				}
			}
			if ser != c.serializable || lin != c.linearizable || txns != c.txns {
				t.Errorf("etcd requests: %d serializable reads, %d linearizable reads, %d transactions; want %d, %d, %d",
					ser, lin, txns, c.serializable, c.linearizable, c.txns)
			}
		})
	}
}

// ok fails t if a write it is given failed: ok(t)(store.DeactivateOrg(...)).
func ok(t *testing.T) func(state.Result, error) {
	return func(_ state.Result, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
}
