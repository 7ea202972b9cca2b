package source_test

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/deact/deact/source"
)

// TestErrorClass: every failure a source reports lands in one of UpstreamErrorClasses, and wrapping keeps it.
func TestErrorClass(t *testing.T) {
	down := source.Unreachable("acme")
	api := func(status int) error { return &source.APIError{Upstream: "acme", Status: status} }
	cases := []struct {
		name string
		err  error
		want string
	}{
		{"suspicious listing", fmt.Errorf("refused: %w", source.ErrSuspiciousListing), "suspicious"},
		{"suspicious wins over an API error", fmt.Errorf("%w: %w", source.ErrSuspiciousListing, api(401)), "suspicious"},
		{"401", api(http.StatusUnauthorized), "unauthorized"},
		{"403, wrapped", fmt.Errorf("list orgs: %w", api(http.StatusForbidden)), "forbidden"},
		{"500", api(http.StatusInternalServerError), "bad_response"},
		{"an API error wins over unreachable", fmt.Errorf("%w: %w", down, api(http.StatusBadGateway)), "bad_response"},
		{"unreachable", fmt.Errorf("%w: GET /x: connection refused", down), "unreachable"},
		{"anything else", errors.New("unreadable answer"), "bad_response"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := source.ErrorClass(tc.err)
			if got != tc.want {
				t.Errorf("ErrorClass(%v) = %q, want %q", tc.err, got, tc.want)
			}
			if !slices.Contains(source.UpstreamErrorClasses, got) {
				t.Errorf("%q is not in UpstreamErrorClasses", got)
			}
		})
	}
}

// TestUnreachable: the sentinel keeps its upstream's name, matches itself and ErrUnreachable, and not another
// upstream's.
func TestUnreachable(t *testing.T) {
	a, b := source.Unreachable("zitadel"), source.Unreachable("commvault")
	err := fmt.Errorf("%w: GET /x: refused", a)
	if err.Error() != "zitadel unreachable: GET /x: refused" {
		t.Errorf("message %q", err)
	}
	if !errors.Is(err, a) || !errors.Is(err, source.ErrUnreachable) || errors.Is(err, b) {
		t.Errorf("Is: own %v, any %v, other %v", errors.Is(err, a), errors.Is(err, source.ErrUnreachable), errors.Is(err, b))
	}
}

// TestAPIErrorMessage: the product's name, its word for the code and its hint for the status are in the message.
func TestAPIErrorMessage(t *testing.T) {
	hint := func(status int) string {
		if status == http.StatusForbidden {
			return "grant the viewer role"
		}
		return ""
	}
	cases := []struct {
		name string
		err  *source.APIError
		want string
	}{
		{"with a hint", &source.APIError{Upstream: "acme", CodeName: "errorCode", Hint: hint, Method: "GET", Path: "/o", Status: 403, Code: 7, Message: "denied"},
			"acme GET /o: HTTP 403 errorCode 7: denied (grant the viewer role)"},
		{"no hint for the status", &source.APIError{Upstream: "acme", CodeName: "code", Hint: hint, Method: "GET", Path: "/o", Status: 500, Message: "boom"},
			"acme GET /o: HTTP 500 code 0: boom"},
		{"no hint function", &source.APIError{Upstream: "acme", CodeName: "code", Method: "POST", Path: "/t", Status: 401, Message: "x"},
			"acme POST /t: HTTP 401 code 0: x"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.err.Error(); got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

// TestReadAnswer: an answer of the bound is read whole, one byte more is an AnswerTooLargeError.
func TestReadAnswer(t *testing.T) {
	cases := []struct {
		name    string
		body    string
		max     int64
		tooLong bool
	}{
		{"empty", "", 4, false},
		{"at the bound", "abcd", 4, false},
		{"one byte over", "abcde", 4, true},
		{"far over", strings.Repeat("x", 1<<16), 4, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b, err := source.ReadAnswer(strings.NewReader(tc.body), tc.max)
			var large *source.AnswerTooLargeError
			switch {
			case tc.tooLong && (!errors.As(err, &large) || large.Max != tc.max || b != nil):
				t.Errorf("got %q, %v; want an AnswerTooLargeError", b, err)
			case !tc.tooLong && (err != nil || string(b) != tc.body):
				t.Errorf("got %q, %v; want the body", b, err)
			}
		})
	}
}

// TestClipName: names longer than MaxName are cut on a rune boundary, never inside a character.
func TestClipName(t *testing.T) {
	cases := []struct {
		name, in string
		wantLen  int
	}{
		{"short", "acme", 4},
		{"exactly the bound", strings.Repeat("a", source.MaxName), source.MaxName},
		{"ascii over", strings.Repeat("a", source.MaxName+1), source.MaxName},
		{"a 3-byte rune across the bound", strings.Repeat("a", source.MaxName-1) + "€", source.MaxName - 1},
		{"4-byte runes", strings.Repeat("😀", source.MaxName), source.MaxName},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := source.ClipName(tc.in)
			if len(got) != tc.wantLen || !utf8.ValidString(got) || !strings.HasPrefix(tc.in, got) {
				t.Errorf("ClipName: %d bytes (valid %v), want %d", len(got), utf8.ValidString(got), tc.wantLen)
			}
		})
	}
}

// TestAPIErrorPrintable: an upstream's error text reaches logs and `deactctl sources` without control characters
// and cut to MaxMessage bytes on a rune boundary, whatever the upstream put in it (JSON message or raw body).
func TestAPIErrorPrintable(t *testing.T) {
	cases := []struct {
		name, msg string
	}{
		{"newline forging a log line", "denied\nlevel=INFO msg=\"all good\""},
		{"terminal escape", "\x1b[2J\x1b[31mowned"},
		{"C1 control", "a\u0085b\u009bc"},
		{"NUL and DEL", "a\x00b\x7fc"},
		{"invalid UTF-8", "a\xffb"},
		{"long, multi-byte at the cut", strings.Repeat("é", source.MaxMessage)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			text := (&source.APIError{Upstream: "acme", Status: 500, Message: tc.msg}).Error()
			for _, r := range text {
				if r < 0x20 || r == 0x7f || (r >= 0x80 && r <= 0x9f) || r == utf8.RuneError {
					t.Fatalf("error text %q has control character %U", text, r)
				}
			}
			if !utf8.ValidString(text) {
				t.Fatalf("error text %q is not valid UTF-8", text)
			}
			if got := source.Printable(tc.msg, source.MaxMessage); len(got) > source.MaxMessage {
				t.Fatalf("Printable kept %d bytes, want ≤ %d", len(got), source.MaxMessage)
			}
		})
	}
}
