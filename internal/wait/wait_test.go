package wait_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/deact/deact/internal/wait"
)

// fatal records a test's failure and stops the helper, as t.Fatal would.
type fatal struct {
	testing.TB
	msg string
}

type stopped struct{}

func (f *fatal) Helper() {}
func (f *fatal) Fatalf(format string, args ...any) {
	f.msg = fmt.Sprintf(format, args...)
	panic(stopped{})
}

func until(within time.Duration, cond func() bool) (msg string) {
	f := &fatal{}
	defer func() {
		if v := recover(); v != nil && v != (stopped{}) {
			panic(v)
		}
		msg = f.msg
	}()
	wait.Until(f, "the condition", within, cond)
	return ""
}

func TestUntil(t *testing.T) {
	t.Parallel()
	var calls atomic.Int32
	if msg := until(time.Second, func() bool { return calls.Add(1) == 5 }); msg != "" || calls.Load() != 5 {
		t.Errorf("a condition that comes to hold: %q after %d calls", msg, calls.Load())
	}
	start := time.Now()
	msg := until(50*time.Millisecond, func() bool { return false })
	if msg != "timed out after 50ms waiting for the condition" {
		t.Errorf("a condition that never holds: %q", msg)
	}
	if d := time.Since(start); d < 50*time.Millisecond {
		t.Errorf("gave up after %v, before its bound", d)
	}
}

func TestSend(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Method", r.Method)
		w.WriteHeader(http.StatusTeapot)
		_, _ = w.Write([]byte(strings.Repeat("x", 100<<10)))
	}))
	defer srv.Close()
	req, err := http.NewRequest("PUT", srv.URL, nil)
	if err != nil {
		t.Fatal(err)
	}
	a := wait.Response(t, srv.Client(), req)
	if a.Status != http.StatusTeapot || a.Header.Get("X-Method") != "PUT" || len(a.Body) != 100<<10 {
		t.Errorf("got %d %v and %d bytes", a.Status, a.Header, len(a.Body))
	}
	srv.Close()
	if _, err := wait.Send(srv.Client(), req); err == nil {
		t.Error("a closed server answered")
	}
}
