package state

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"
)

// links is the gateway side of direct reports for one reporter session: it follows the registry of admin
// nodes (AdminsPrefix) and keeps one report stream to each. A stream is up from the admin node's verified
// hello until a report is not acknowledged within the ack timeout or the stream breaks. allUp says whether
// every registered admin node has an up stream: only then may the reporter leave its record unwritten.
type links struct {
	cli        *clientv3.Client
	replica    *Replica
	log        *slog.Logger
	creds      credentials.TransportCredentials
	hello      reportMsg
	ackTimeout time.Duration
	heartbeat  time.Duration
	stats      *reporterCounters

	mu      sync.Mutex
	synced  bool                  // the admin registry is listed and watched
	admins  map[string]*adminLink // by admin key
	changed chan struct{}         // closed and replaced when allUp may have changed
	wg      sync.WaitGroup
}

// adminLink is the stream to one admin node.
type adminLink struct {
	addr   string
	cancel context.CancelFunc
	up     bool
}

// reporterCounters are the reporter's counters, shared with its links.
type reporterCounters struct {
	recordWrites atomic.Int64
	reports      atomic.Int64
	fallbacks    atomic.Int64
	linksUp      atomic.Int64
}

// minRedial and maxRedial bound the pause before a report stream is opened again.
const (
	minRedial = 500 * time.Millisecond
	maxRedial = 10 * time.Second
)

// lazyReport is how often a stream carries an applied revision that moved without a snapshot change (a
// write outside the state, learned through progress notifications): such revisions are rarely waited for.
const lazyReport = time.Second

func newLinks(cli *clientv3.Client, r *Replica, log *slog.Logger, tlsCfg *tls.Config, hello reportMsg, ackTimeout, heartbeat time.Duration, stats *reporterCounters) *links {
	creds := insecure.NewCredentials()
	if tlsCfg != nil {
		creds = credentials.NewTLS(tlsCfg)
	}
	return &links{cli: cli, replica: r, log: log, creds: creds, hello: hello, ackTimeout: ackTimeout, heartbeat: heartbeat,
		stats: stats, admins: map[string]*adminLink{}, changed: make(chan struct{})}
}

// Changed returns a channel closed at the next change of allUp's inputs.
func (l *links) Changed() <-chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.changed
}

// allUp reports whether at least one admin node is registered and every registered one has an up stream.
func (l *links) allUp() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.synced || len(l.admins) == 0 {
		return false
	}
	for _, a := range l.admins {
		if !a.up {
			return false
		}
	}
	return true
}

// notify wakes whoever waits on Changed. Called with mu held.
func (l *links) notify() {
	close(l.changed)
	l.changed = make(chan struct{})
}

// run follows the admin registry until ctx ends, then waits for every stream to end.
func (l *links) run(ctx context.Context) {
	untilDone(ctx, l.log, "admin node registry watch broken, relisting", 500*time.Millisecond, l.follow)
	l.mu.Lock()
	for key, a := range l.admins {
		a.cancel()
		delete(l.admins, key)
	}
	l.mu.Unlock()
	l.wg.Wait()
}

func (l *links) follow(ctx context.Context) error {
	defer func() {
		l.mu.Lock()
		l.synced = false
		l.notify()
		l.mu.Unlock()
	}()
	resp, err := l.cli.Get(ctx, AdminsPrefix, clientv3.WithPrefix())
	if err != nil {
		return err
	}
	want := map[string]string{}
	for _, kv := range resp.Kvs {
		var a AdminNode
		if json.Unmarshal(kv.Value, &a) == nil && a.ReportAddr != "" {
			want[string(kv.Key)] = a.ReportAddr
		}
	}
	l.mu.Lock()
	for key, a := range l.admins {
		if want[key] != a.addr {
			a.cancel()
			delete(l.admins, key)
		}
	}
	for key, addr := range want {
		l.add(ctx, key, addr)
	}
	l.synced = true
	l.notify()
	l.mu.Unlock()

	// Not WithRequireLeader: a watch with the same metadata would share the replica's watch stream, and after a
	// reconnect the replica's progress requests on a shared stream went unanswered (TestFenceBeforeLeaseExpiry).
	wch := l.cli.Watch(ctx, AdminsPrefix, clientv3.WithPrefix(), clientv3.WithRev(resp.Header.Revision+1))
	for wr := range wch {
		if err := wr.Err(); err != nil {
			return err
		}
		l.mu.Lock()
		for _, ev := range wr.Events {
			key := string(ev.Kv.Key)
			var a AdminNode
			if ev.Type == clientv3.EventTypePut && json.Unmarshal(ev.Kv.Value, &a) == nil && a.ReportAddr != "" {
				if old, ok := l.admins[key]; ok && old.addr == a.ReportAddr {
					continue
				}
				if old, ok := l.admins[key]; ok { // a new address
					old.cancel()
					delete(l.admins, key)
				}
				l.add(ctx, key, a.ReportAddr)
			} else if old, ok := l.admins[key]; ok {
				old.cancel()
				delete(l.admins, key)
			}
		}
		l.notify()
		l.mu.Unlock()
	}
	return errors.New("admin registry watch closed")
}

// add starts the stream to an admin node. Called with mu held.
func (l *links) add(ctx context.Context, key, addr string) {
	if _, ok := l.admins[key]; ok {
		return
	}
	lctx, cancel := context.WithCancel(ctx)
	a := &adminLink{addr: addr, cancel: cancel}
	l.admins[key] = a
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		log := l.log.With("admin", addr)
		// A stream that was up reconnects after a short pause; an admin node that stays unreachable (a firewall,
		// a wrong advertised address) is retried ever less often, up to every maxRedial.
		// The pauses are jittered: an admin node that restarts is not redialed by the whole fleet at once.
		redial := Backoff{Min: minRedial, Max: maxRedial}
		failures := 0
		for lctx.Err() == nil {
			wasUp, err := l.stream(lctx, a)
			if lctx.Err() != nil {
				return
			}
			if wasUp {
				failures = 0
			}
			failures++
			log.Warn("report stream to admin node broken; reporting through the node record meanwhile", "err", err, "failures", failures)
			if !redial.Sleep(lctx, failures) {
				return
			}
		}
	}()
}

func (l *links) setUp(a *adminLink, up bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if a.up == up {
		return
	}
	a.up = up
	if up {
		l.stats.linksUp.Add(1)
	} else {
		l.stats.linksUp.Add(-1)
	}
	l.notify()
}

// stream runs one report stream to a until it breaks or ctx ends: the hello, then the applied revision at
// every snapshot change, at most every lazyReport when it moved otherwise, and every heartbeat. It says
// whether the stream was up (its hello verified).
func (l *links) stream(ctx context.Context, a *adminLink) (wasUp bool, err error) {
	cc, err := grpc.NewClient(a.addr, grpc.WithTransportCredentials(l.creds),
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: 10 * time.Second, Timeout: l.ackTimeout + time.Second}))
	if err != nil {
		return false, err
	}
	defer cc.Close()
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	st, err := openReportStream(sctx, cc)
	if err != nil {
		return false, err
	}
	// One receiver: each ack takes a token in acks (at most one message is in flight), the end of the stream
	// its error in ended.
	acks, ended := make(chan struct{}, 1), make(chan error, 1)
	var acked atomic.Int64
	go func() {
		for {
			var ack reportAck
			if err := st.RecvMsg(&ack); err != nil {
				ended <- err
				return
			}
			acked.Store(ack.Applied)
			select {
			case acks <- struct{}{}:
			default:
			}
		}
	}()
	defer func() { cancel(); <-ended }()
	wait := func(want int64, d time.Duration) error {
		t := time.NewTimer(d)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case err := <-ended:
				ended <- err // for the deferred receive
				return err
			case <-acks:
				if acked.Load() >= want {
					return nil
				}
			case <-t.C:
				return fmt.Errorf("no acknowledgement within %v", d)
			}
		}
	}
	hello := l.hello
	if err := st.SendMsg(&hello); err != nil {
		return false, fmt.Errorf("send hello: %w", err)
	}
	if err := wait(0, helloTimeout+l.ackTimeout); err != nil {
		return false, fmt.Errorf("hello: %w", err)
	}
	l.setUp(a, true)
	defer l.setUp(a, false)

	lazy := time.NewTicker(lazyReport)
	defer lazy.Stop()
	heartbeat := time.NewTicker(l.heartbeat)
	defer heartbeat.Stop()
	var sent int64
	for {
		changed := l.replica.Changed()
		if rev := l.replica.AppliedRevision(); rev != sent {
			m := reportMsg{Applied: rev, StalenessMs: l.replica.Staleness().Milliseconds()}
			if err := st.SendMsg(&m); err != nil {
				return true, fmt.Errorf("send report: %w", err)
			}
			if err := wait(rev, l.ackTimeout); err != nil {
				return true, fmt.Errorf("report of revision %d: %w", rev, err)
			}
			l.stats.reports.Add(1)
			sent = rev
		}
		select {
		case <-ctx.Done():
			return true, ctx.Err()
		case <-changed:
			continue
		case <-heartbeat.C:
			sent = -1 // the same revision again: the admin node refreshes the node's report time
		case <-lazy.C:
		}
	}
}
