package daemon

import (
	"container/list"
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/peer"
)

// limitListener bounds the connections open through one listener, so that a flood of connections cannot take
// the process's file descriptors (the embedded etcd dies of "too many open files", and with it deactd).
//
// When the listener is full, a new connection evicts the one that has been quiet the longest, found by a
// second-chance sweep over the connections in accept order. A connection goes to the back instead when it read
// something since the sweep last passed, has bytes waiting unread (its server has not got to it yet), or has a
// request in progress; one that carried a request before may stay quiet through requestCredit sweeps. The
// first connection that did none of that is closed. A flood of idle sockets therefore evicts itself, oldest
// first, while the connections that carry requests (Envoy's, nginx's) stay. Only when every connection swept is
// in use is the new one closed, at once: it is never left waiting in the kernel's backlog behind a flood. (On
// Linux the kernel keeps silent connections away for the handshake timeout already: see deferAccept.)
type limitListener struct {
	net.Listener
	max   int
	epoch time.Time // clock origin of limitConn.read and placed

	mu    sync.Mutex
	conns list.List // of *limitConn, in the order they were (re)placed
	// byPeer finds a connection by its RemoteAddr (the same net.Addr value gRPC reports as the peer), for
	// unaryBusy. Read without l.mu: the hot path takes no lock.
	byPeer sync.Map

	evicted, rejected atomic.Uint64
}

// sweepLimit bounds the connections one accept on a full listener passes over without finding them quiet
// (busy, or with bytes waiting).
const sweepLimit = 64

func newLimitListener(l net.Listener, max int) *limitListener {
	return &limitListener{Listener: l, max: max, epoch: time.Now()}
}

func (l *limitListener) now() int64 { return int64(time.Since(l.epoch)) }

// Accept returns the next connection admitted; connections refused while the listener is full are closed here.
func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		lc := &limitConn{Conn: c, l: l}
		victim, ok := l.admit(lc)
		if victim != nil {
			l.evicted.Add(1)
			_ = victim.Conn.Close() // its server sees the error and lets go of it
			// Under a flood the next accept is always ready: let the goroutines of connections admitted before
			// (a real client's, about to read its request) run first, or the sweep may reach them unread.
			runtime.Gosched()
		}
		if !ok {
			l.rejected.Add(1)
			_ = c.Close()
			continue
		}
		return lc, nil
	}
}

// admit registers c, making room by evicting a quiet connection when the listener is full.
func (l *limitListener) admit(c *limitConn) (victim *limitConn, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.conns.Len() >= l.max {
		// A second chance earned by a read is paid for by that read; passing over busy connections and ones with
		// bytes waiting is not, so only those count against sweepLimit. Two passes find any victim there is.
		budget := sweepLimit
	sweep:
		for steps := 2 * l.conns.Len(); steps > 0 && budget > 0; steps-- {
			e := l.conns.Front()
			cand := e.Value.(*limitConn)
			switch {
			case cand.busy.Load() != 0:
				budget--
			case cand.read.Load() > cand.placed: // read since the sweep last passed
			case cand.waiting():
				budget--
			case cand.credit.Load() > 0: // it carried requests: quiet for longer before it goes
				cand.credit.Add(-1)
			default:
				l.conns.Remove(e)
				cand.elem = nil
				victim = cand
				break sweep
			}
			cand.placed = l.now()
			l.conns.MoveToBack(e)
		}
		if victim == nil {
			return nil, false
		}
	}
	c.placed = l.now()
	c.elem = l.conns.PushBack(c)
	l.byPeer.Store(c.RemoteAddr(), c)
	if victim != nil {
		l.byPeer.CompareAndDelete(victim.RemoteAddr(), victim)
	}
	return victim, true
}

// Len is the number of connections open through the listener.
func (l *limitListener) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.conns.Len()
}

func (l *limitListener) forget(c *limitConn) {
	l.mu.Lock()
	if c.elem != nil {
		l.conns.Remove(c.elem)
		c.elem = nil
	}
	l.mu.Unlock()
	l.byPeer.CompareAndDelete(c.RemoteAddr(), c)
}

// limitConn is a connection admitted by a limitListener.
type limitConn struct {
	net.Conn
	l      *limitListener
	read   atomic.Int64  // l.now() of the last read that returned data
	busy   atomic.Int32  // HTTP requests or unary gRPC calls in flight (markBusy, unaryBusy)
	credit atomic.Int32  // extra sweeps it may stay quiet through, earned by a request it carried
	elem   *list.Element // guarded by l.mu; nil once closed or evicted
	placed int64         // guarded by l.mu: when the sweep last passed over it (or it was admitted)
	once   sync.Once
}

// requestCredit is how many sweeps a connection that carried a request may stay quiet through before it can be
// evicted; one that never did (a flood's) goes on the first sweep that finds it quiet. A client like Envoy,
// pausing between requests, or slow to be scheduled on a loaded machine, keeps its connection a while longer.
const requestCredit = 3

// done ends a request on c.
func (c *limitConn) done() {
	c.credit.Store(requestCredit)
	c.busy.Add(-1)
}

// waiting reports whether the peer sent something the server has not read yet; a peer that closed is not.
func (c *limitConn) waiting() bool {
	w, _ := peek(c.Conn)
	return w
}

func (c *limitConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if n > 0 {
		c.read.Store(c.l.now())
	}
	return n, err
}

func (c *limitConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.l.forget(c) })
	return err
}

type connKey struct{}

// connContext is an http.Server.ConnContext hook that gives markBusy the connection a request came on.
func connContext(ctx context.Context, c net.Conn) context.Context {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	if lc, ok := c.(*limitConn); ok {
		return context.WithValue(ctx, connKey{}, lc)
	}
	return ctx
}

// markBusy keeps a connection from being evicted while one of its requests is being handled (an admin write
// waiting for the gateways sends nothing meanwhile); HTTP/2 streams count one each. Only handlers count: a
// connection that sent part of a request is not busy, so a flood of such cannot hold the listener.
func markBusy(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if lc, ok := r.Context().Value(connKey{}).(*limitConn); ok {
			lc.busy.Add(1)
			defer lc.done()
		}
		h.ServeHTTP(w, r)
	})
}

// unaryBusy is a gRPC unary interceptor that keeps a connection from being evicted while one of its calls is
// being handled. Streams do not count: a stream can last for ever, and a flood of them must stay evictable
// (their keepalive pings are reads).
func (l *limitListener) unaryBusy(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	if p, ok := peer.FromContext(ctx); ok {
		if v, ok := l.byPeer.Load(p.Addr); ok {
			c := v.(*limitConn)
			c.busy.Add(1)
			defer c.done()
		}
	}
	return h(ctx, req)
}

// fdReserve is what the connection budget leaves to everything else: the embedded etcd's files (WAL segments,
// snapshots, the database), its socket and deactd's connections to it or to an external cluster, the data
// dir, the runtime's own descriptors. A quarter of the limit, at least 128.
func fdReserve(limit int) int { return max(128, limit/4) }

// connectionBudget raises the open-file limit and sets the per-listener connection bound from it.
func (d *Daemon) connectionBudget() error {
	soft, hard, err := raiseFileLimit()
	if err != nil {
		return fmt.Errorf("open-file limit: %w", err)
	}
	limit := int(min(soft, 1<<30))
	listeners := 1
	if d.cfg.gateway() {
		listeners = 3
	}
	if d.cfg.admin() {
		listeners++ // the report listener
	}
	budget := (limit - fdReserve(limit)) / listeners
	d.maxConns = d.cfg.MaxConns
	switch {
	case d.maxConns == 0 && budget < 16:
		return fmt.Errorf("the open-file limit %d is too low for deactd's listeners and its etcd: raise it (ulimit -n, LimitNOFILE) to at least %d", limit, 128+16*listeners+fdReserve(limit))
	case d.maxConns == 0:
		d.maxConns = budget
	case d.maxConns > budget:
		d.log.Warn("--max-conns leaves less than the reserve of file descriptors for etcd and the data dir", "max_conns", d.maxConns, "listeners", listeners, "open_file_limit", limit, "reserve", fdReserve(limit))
	}
	d.log.Info("connection limits", "open_file_limit", soft, "hard_limit", hard, "max_conns_per_listener", d.maxConns,
		"handshake_timeout", d.cfg.HandshakeTimeout, "idle_timeout", d.cfg.IdleTimeout)
	return nil
}

// listen opens a TCP listener bounded to d.maxConns connections and exports its counts.
func (d *Daemon) listen(name, addr string) (*limitListener, error) {
	lc := net.ListenConfig{Control: deferAccept(d.cfg.HandshakeTimeout)}
	lis, err := lc.Listen(context.Background(), "tcp", addr)
	if err != nil {
		return nil, err
	}
	l := newLimitListener(lis, d.maxConns)
	labels := prometheus.Labels{"listener": name}
	opts := func(n, help string) prometheus.Opts {
		return prometheus.Opts{Namespace: "deact", Subsystem: "listener", Name: n, Help: help, ConstLabels: labels}
	}
	d.reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts(opts("connections", "Connections open through the listener.")), func() float64 { return float64(l.Len()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts(opts("max_connections", "Bound on the listener's open connections.")), func() float64 { return float64(l.max) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts(opts("evicted_total", "Quiet connections closed to make room for a new one.")), func() float64 { return float64(l.evicted.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts(opts("rejected_total", "New connections closed because every connection was in use.")), func() float64 { return float64(l.rejected.Load()) }),
	)
	return l, nil
}
