// Package wait is for tests that watch a system they do not drive step by step: it polls a condition until it
// holds or a deadline passes (never sleep-and-hope), and waits for whole HTTP answers.
package wait

import (
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"
)

// Timeout is how long Eventually polls before the test fails.
const Timeout = 10 * time.Second

// Eventually polls cond until it holds; after Timeout the test fails with "timed out waiting for what".
func Eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	Until(t, what, Timeout, cond)
}

// Until is Eventually with its own bound. It polls often at first (the condition usually holds within
// milliseconds), then every 10 ms, so that a condition checked through etcd or a child process is not flooded.
func Until(t testing.TB, what string, within time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	pause := time.Millisecond
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", within, what)
		}
		time.Sleep(pause)
		pause = min(2*pause, 10*time.Millisecond)
	}
}

// Answer is a whole HTTP answer.
type Answer struct {
	Status int
	Header http.Header
	Body   string
}

// Send sends req through c and reads the whole answer. It may be called from any goroutine.
func Send(c *http.Client, req *http.Request) (Answer, error) {
	resp, err := c.Do(req)
	if err != nil {
		return Answer{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	a := Answer{Status: resp.StatusCode, Header: resp.Header, Body: string(b)}
	if err != nil {
		return a, fmt.Errorf("%s %s: reading the answer: %w", req.Method, req.URL, err)
	}
	return a, nil
}

// Response is Send for the test's own goroutine: a request that gets no whole answer fails the test.
func Response(t testing.TB, c *http.Client, req *http.Request) Answer {
	t.Helper()
	a, err := Send(c, req)
	if err != nil {
		t.Fatal(err)
	}
	return a
}
