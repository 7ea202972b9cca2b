package authz

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/deact/deact/state"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// TestFencedNodeRefusesToDecide (issue 14, B9): while Config.Fenced is true, every decision that reads state is
// refused (gRPC UNAVAILABLE, HTTP 503: a deny behind failure_mode_allow: false), allows and denies alike; op
// other, which reads no state, is still answered; once the fence opens, decisions come from the state again.
func TestFencedNodeRefusesToDecide(t *testing.T) {
	t.Parallel()
	var fenced atomic.Bool
	e := newEnv(t, Config{Fenced: func(time.Time) bool { return fenced.Load() }})
	e.applied(t, must(t)(e.store.DeactivateOrg(context.Background(), orgAcme, state.OpsAll, false, state.Change{Actor: "test"})))
	login := func(org string) string {
		return httpReq(`{"method":"GET","path":"/x"}`, `"context_extensions":{"op":"login","org_id":"`+org+`"}`)
	}
	cases := []struct {
		name string
		req  string
		want codes.Code // of the Check call while fenced
	}{
		{"allow from state", login("101"), codes.Unavailable},
		{"deny from state", login(orgAcme), codes.Unavailable},
		{"op other", httpReq(`{"method":"GET","path":"/static/logo.png"}`, ""), codes.OK},
	}
	fenced.Store(true)
	for _, tc := range cases {
		t.Run("fenced: "+tc.name, func(t *testing.T) {
			_, err := e.client.Check(context.Background(), checkRequest(t, tc.req))
			if status.Code(err) != tc.want {
				t.Fatalf("fenced Check: %v, want %v", err, tc.want)
			}
		})
	}
	t.Run("fenced: decision", func(t *testing.T) {
		if _, err := e.az.Decide(&Request{Method: "GET", Path: "/x", Route: map[string]string{FactOp: "login", FactOrgID: "101"}}); err != ErrFenced {
			t.Fatalf("fenced Decide: %v, want ErrFenced", err)
		}
	})
	t.Run("fenced: HTTP check", func(t *testing.T) {
		rec := httptest.NewRecorder()
		req := httptest.NewRequestWithContext(context.Background(), "GET", "/check", nil)
		req.Header.Set(HeaderOriginalURI, "/x")
		req.Header.Set(HeaderOp, "login")
		req.Header.Set(HeaderOrgID, "101")
		e.az.HTTPHandler().ServeHTTP(rec, req)
		if rec.Code != http.StatusServiceUnavailable {
			t.Fatalf("fenced HTTP check: %d, want 503", rec.Code)
		}
	})

	fenced.Store(false)
	t.Run("fence opened: allow from state", func(t *testing.T) {
		wantAllow(t, e.check(t, checkRequest(t, login("101"))), "after the fence opened")
	})
	t.Run("fence opened: deny from state", func(t *testing.T) {
		if resp := e.check(t, checkRequest(t, login(orgAcme))); resp.Status.Code != int32(codes.PermissionDenied) {
			t.Fatalf("deactivated org after the fence opened: %v", resp.Status)
		}
	})
}

// TestMonoNow: the clock reading the fence and the staleness policy share is current on the monotonic clock,
// which is what NodeReporter.FencedAt and Replica.StalenessAt compare.
func TestMonoNow(t *testing.T) {
	t.Parallel()
	a := testAuthorizer(t, Config{}, testSnapshot(t), 0)
	before := time.Now()
	now := a.monoNow()
	after := time.Now()
	if now.Sub(before) < 0 || after.Sub(now) < 0 {
		t.Fatalf("monoNow %v not between %v and %v", now, before, after)
	}
	if !strings.Contains(now.String(), " m=") {
		t.Fatalf("monoNow %v has no monotonic reading", now)
	}
}
