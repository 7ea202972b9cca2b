package adminapi_test

import (
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/deact/deact/admin/adminapi"
	"github.com/deact/deact/admin/admintest"
	"github.com/deact/deact/state"
	"github.com/deact/deact/state/etcdtest"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, etcdtest.LeakOptions()...)
}

const rootToken = "adminapi-test-root-token-0123"

// env is the real admin API with one gateway node (admintest.Start), so that writes are confirmed "1/1".
type env struct {
	t     *testing.T
	url   string
	store *state.Store
}

func newEnv(t *testing.T) *env {
	t.Helper()
	url, store := admintest.Start(t, rootToken, nil)
	return &env{t: t, url: url, store: store}
}

// serve serves h on a loopback port until the test ends and returns its URL.
func serve(t *testing.T, h http.Handler) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	done := make(chan struct{})
	go func() { defer close(done); _ = hs.Serve(ln) }()
	t.Cleanup(func() { _ = hs.Close(); <-done })
	return "http://" + ln.Addr().String()
}

// client is a client of the env's API with token; it is closed when the test ends.
func (e *env) client(token string, cfg ...func(*adminapi.Config)) *adminapi.Client {
	e.t.Helper()
	c := adminapi.Config{URL: e.url, Token: token}
	for _, f := range cfg {
		f(&c)
	}
	api, err := adminapi.New(c)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(api.Close)
	return api
}

// raw GETs path with the root token and returns the body as the server sent it.
func (e *env) raw(method, path, body string) []byte {
	e.t.Helper()
	req, err := http.NewRequest(method, e.url+path, strings.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+rootToken)
	hc := &http.Client{Transport: &http.Transport{}}
	defer hc.CloseIdleConnections()
	resp, err := hc.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode/100 != 2 {
		e.t.Fatalf("%s %s: %d %s %v", method, path, resp.StatusCode, b, err)
	}
	return b
}
