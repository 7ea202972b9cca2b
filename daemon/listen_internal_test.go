package daemon

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/peer"
)

// serveEcho accepts from l and echoes every connection, the way a server keeps reading its clients.
func serveEcho(t *testing.T, l net.Listener) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() { _, _ = io.Copy(c, c); c.Close() }()
		}
	}()
	t.Cleanup(func() { l.Close(); <-done })
}

func dial(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// closed reports whether the server closed c (reads EOF or a reset within the wait).
func closed(c net.Conn, wait time.Duration) bool {
	_ = c.SetReadDeadline(time.Now().Add(wait))
	_, err := c.Read(make([]byte, 1))
	var ne net.Error
	return err != nil && !(errors.As(err, &ne) && ne.Timeout())
}

func echo(t *testing.T, c net.Conn) {
	t.Helper()
	if _, err := c.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
		t.Fatalf("echo: %v", err)
	}
}

func waitLen(t *testing.T, l *limitListener, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for l.Len() != n {
		if time.Now().After(deadline) {
			t.Fatalf("listener holds %d connections, want %d", l.Len(), n)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestLimitListenerEvictsQuietConnectionsFirst: a full listener makes room for a new connection by closing the
// silent one accepted first; connections that sent something, or an HTTP server marks busy, keep their place;
// when every connection is in use the new one is closed at once. The count never exceeds the bound.
func TestLimitListenerEvictsQuietConnectionsFirst(t *testing.T) {
	t.Parallel()
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := newLimitListener(raw, 4)
	serveEcho(t, l)
	addr := raw.Addr().String()

	active := dial(t, addr)
	echo(t, active) // it has spoken
	silent := []net.Conn{dial(t, addr), dial(t, addr), dial(t, addr)}
	waitLen(t, l, 4)

	// Full: each newcomer evicts the oldest silent connection; the active one, oldest of all, stays.
	for i := range silent {
		n := dial(t, addr)
		if !closed(silent[i], 5*time.Second) {
			t.Fatalf("silent connection %d not evicted", i)
		}
		echo(t, n)
		silent[i] = n
		waitLen(t, l, 4)
	}
	echo(t, active)
	if l.evicted.Load() != 3 {
		t.Errorf("evicted %d, want 3", l.evicted.Load())
	}

	// Every connection busy: a newcomer is refused, nothing else is touched.
	l.mu.Lock()
	for e := l.conns.Front(); e != nil; e = e.Next() {
		e.Value.(*limitConn).busy.Store(1)
	}
	l.mu.Unlock()
	refused := dial(t, addr)
	if !closed(refused, 5*time.Second) {
		t.Fatal("a connection beyond the bound was kept while all were busy")
	}
	if l.rejected.Load() != 1 || l.Len() != 4 {
		t.Errorf("rejected %d, holding %d", l.rejected.Load(), l.Len())
	}
	for _, c := range append(silent, active) {
		echo(t, c)
	}
}

// TestRequestsInFlightAreNotEvicted: with an HTTP server on the listener, a connection whose request is being
// handled is not evicted by newcomers, even though it sends nothing while it waits.
func TestRequestsInFlightAreNotEvicted(t *testing.T) {
	t.Parallel()
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := newLimitListener(raw, 2)
	release := make(chan struct{})
	srv := &http.Server{ConnContext: connContext, ReadHeaderTimeout: 5 * time.Second,
		Handler: markBusy(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { <-release; _, _ = io.WriteString(w, "ok") }))}
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(l) }()
	t.Cleanup(func() { srv.Close(); <-done })

	got := make(chan error, 1)
	go func() {
		resp, err := http.Get("http://" + raw.Addr().String() + "/")
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if string(b) != "ok" {
				err = errors.New("body " + string(b))
			}
		}
		got <- err
	}()
	deadline := time.Now().Add(5 * time.Second)
	for {
		l.mu.Lock()
		busy := l.conns.Len() == 1 && l.conns.Front().Value.(*limitConn).busy.Load() == 1
		l.mu.Unlock()
		if busy {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the request never became busy")
		}
		time.Sleep(time.Millisecond)
	}
	for range 5 {
		dial(t, raw.Addr().String()) // silent newcomers evict each other, never the request
	}
	close(release)
	if err := <-got; err != nil {
		t.Fatalf("request in flight: %v", err)
	}
}

// TestUnreadBytesAreNotQuiet: a connection whose request waits unread in its socket (its server is slow to
// get to it) is not evicted; silent ones around it are.
func TestUnreadBytesAreNotQuiet(t *testing.T) {
	t.Parallel()
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := newLimitListener(raw, 2)
	accepted := make(chan net.Conn, 16)
	go func() {
		for {
			c, err := l.Accept() // held, never read
			if err != nil {
				close(accepted)
				return
			}
			accepted <- c
		}
	}()
	t.Cleanup(func() {
		l.Close()
		for c := range accepted {
			c.Close()
		}
	})
	addr := raw.Addr().String()
	talker := dial(t, addr)
	if _, err := talker.Write([]byte("GET / HTTP/1.1\r\n")); err != nil {
		t.Fatal(err)
	}
	silent := dial(t, addr)
	waitLen(t, l, 2)
	deadline := time.Now().Add(5 * time.Second)
	for !peekWaiting(l) {
		if time.Now().After(deadline) {
			t.Fatal("the talker's bytes never arrived")
		}
		time.Sleep(time.Millisecond)
	}
	dial(t, addr)
	if !closed(silent, 5*time.Second) {
		t.Fatal("the silent connection was not evicted")
	}
	if closed(talker, 200*time.Millisecond) {
		t.Fatal("the connection with an unread request was evicted")
	}
}

// peekWaiting reports whether the oldest connection has unread bytes.
func peekWaiting(l *limitListener) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.conns.Front().Value.(*limitConn).waiting()
}

// TestGRPCCallsMarkTheirConnectionBusy: while a unary call is handled, the connection it came on counts as busy
// (gRPC's peer address finds it), and not after.
func TestGRPCCallsMarkTheirConnectionBusy(t *testing.T) {
	t.Parallel()
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := newLimitListener(raw, 8)
	busyInCall := make(chan int32, 1)
	probe := func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		p, _ := peer.FromContext(ctx)
		v, ok := l.byPeer.Load(p.Addr)
		if !ok {
			busyInCall <- -1
		} else {
			busyInCall <- v.(*limitConn).busy.Load()
		}
		return h(ctx, req)
	}
	srv := grpc.NewServer(grpc.ChainUnaryInterceptor(l.unaryBusy, probe))
	hs := health.NewServer()
	healthpb.RegisterHealthServer(srv, hs)
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(l) }()
	t.Cleanup(func() { srv.Stop(); <-done })
	conn, err := grpc.NewClient(raw.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := healthpb.NewHealthClient(conn).Check(context.Background(), &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatal(err)
	}
	if got := <-busyInCall; got != 1 {
		t.Fatalf("busy during the call = %d, want 1", got)
	}
	l.mu.Lock()
	after := l.conns.Front().Value.(*limitConn).busy.Load()
	l.mu.Unlock()
	if after != 0 {
		t.Fatalf("busy after the call = %d", after)
	}
}
