package daemon_test

import (
	"context"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/deact/deact/daemon"
	"google.golang.org/grpc/connectivity"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// TestSilentAndIdleConnectionsAreClosed: on every listener a TCP connection that never sends a byte is closed
// after the handshake timeout (gRPC's own default is 120 s), and a gRPC connection that carries no call is
// closed after the idle timeout; the client reconnects for its next call.
func TestSilentAndIdleConnectionsAreClosed(t *testing.T) {
	t.Parallel()
	const handshake, idle = 300 * time.Millisecond, 600 * time.Millisecond
	d := start(t, func(c *daemon.Config) { c.HandshakeTimeout, c.IdleTimeout = handshake, idle })
	for name, addr := range map[string]string{"authz": d.AuthzAddr, "check": d.HTTPCheckAddr, "admin": d.AdminAddr} {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		began := time.Now()
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, err = io.Copy(io.Discard, c) // gRPC's server speaks first (SETTINGS); read until the close
		c.Close()
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Errorf("%s: a silent connection was kept 10 s (%v)", name, err)
		} else if took := time.Since(began); took < handshake/2 || took > 8*time.Second {
			// The kernel may hold it up to a second before deactd sees it (TCP_DEFER_ACCEPT).
			t.Errorf("%s: a silent connection was closed after %v, handshake timeout %v", name, took, handshake)
		}
	}

	conn := d.authz(t)
	health := healthpb.NewHealthClient(conn)
	if _, err := health.Check(context.Background(), &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for s := conn.GetState(); s != connectivity.Idle; s = conn.GetState() {
		if !conn.WaitForStateChange(ctx, s) {
			t.Fatalf("the idle gRPC connection was not closed by the server (state %v)", s)
		}
	}
	if _, err := health.Check(context.Background(), &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatalf("call after the idle close: %v", err)
	}
}
