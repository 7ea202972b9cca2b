package source

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"
)

// NewTransport is the pooled transport an upstream client uses when it is given no http.Client: many idle
// connections to the one host, HTTP/2 when offered. responseHeaderTimeout bounds the wait for an answer's
// headers; 0 leaves it to the request's context.
func NewTransport(responseHeaderTimeout time.Duration) *http.Transport {
	return &http.Transport{
		Proxy: http.ProxyFromEnvironment, MaxIdleConnsPerHost: 64, IdleConnTimeout: 90 * time.Second,
		ForceAttemptHTTP2: true, TLSHandshakeTimeout: 10 * time.Second, ResponseHeaderTimeout: responseHeaderTimeout,
	}
}

// NewRequest is a request for base with path appended to its path, asking for accept (the Accept header). A
// body that is not nil is sent as application/json.
func NewRequest(ctx context.Context, method string, base *url.URL, path string, body []byte, accept string) (*http.Request, error) {
	u := *base
	u.Path += path
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), rd)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", accept)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	return req, nil
}

// AnswerTooLargeError is ReadAnswer's error for an answer longer than its bound.
type AnswerTooLargeError struct{ Max int64 }

func (e *AnswerTooLargeError) Error() string {
	return fmt.Sprintf("answer larger than %d bytes", e.Max)
}

// ReadAnswer reads all of body when it is at most max bytes. A longer one is an *AnswerTooLargeError, read only
// to max+1 bytes, so an upstream cannot make a source hold more; other errors are the reader's.
func ReadAnswer(body io.Reader, max int64) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(body, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > max {
		return nil, &AnswerTooLargeError{Max: max}
	}
	return b, nil
}
