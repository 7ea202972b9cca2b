package source

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"unicode/utf8"
)

// ErrUnreachable is matched (errors.Is) by every error from Unreachable: no answer came from the upstream.
var ErrUnreachable = errors.New("upstream unreachable")

// Unreachable returns the sentinel a source wraps around failures to get an answer from its upstream, named
// after it ("zitadel unreachable"). errors.Is matches it and ErrUnreachable.
func Unreachable(upstream string) error { return unreachableError(upstream) }

type unreachableError string

func (e unreachableError) Error() string        { return string(e) + " unreachable" }
func (e unreachableError) Is(target error) bool { return target == ErrUnreachable }

// APIError is an answer an upstream gave that is not a success. Upstream, CodeName and Hint say how Error
// words it for that product; the rest is the answer.
type APIError struct {
	Upstream string                  // starts the message: "zitadel"
	CodeName string                  // what the upstream calls Code: "code", "errorCode"
	Hint     func(status int) string // what an operator should check for a status, or ""; nil: nothing

	Method, Path string
	Status       int // HTTP status
	Code         int // the upstream's own error code, 0 if it gave none
	Message      string
}

func (e *APIError) Error() string {
	hint := ""
	if e.Hint != nil {
		if h := e.Hint(e.Status); h != "" {
			hint = " (" + h + ")"
		}
	}
	return fmt.Sprintf("%s %s %s: HTTP %d %s %d: %s%s", e.Upstream, e.Method, e.Path, e.Status, e.CodeName, e.Code,
		Printable(e.Message, MaxMessage), hint)
}

// MaxMessage is how many bytes of an upstream's error message an APIError's text keeps.
const MaxMessage = 200

// Printable is s cut to at most n bytes (on a rune boundary) and trimmed, with control characters (C0, DEL, C1)
// replaced by spaces: an upstream's answer goes into logs, metrics' error text and `deactctl sources`, where a
// newline or an escape sequence could forge a log line or rewrite a terminal.
func Printable(s string, n int) string {
	if len(s) > n {
		cut := n
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut]
	}
	return strings.TrimSpace(strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r <= 0x9f) || r == utf8.RuneError {
			return ' '
		}
		return r
	}, s))
}

// Unauthorized reports whether the upstream refused the credentials or their permissions (401, 403).
func (e *APIError) Unauthorized() bool {
	return e.Status == http.StatusUnauthorized || e.Status == http.StatusForbidden
}

// ErrorClass names a failure for deact_source_upstream_errors_total: one of UpstreamErrorClasses.
// ErrSuspiciousListing is "suspicious", an APIError "unauthorized" (401), "forbidden" (403) or "bad_response",
// an Unreachable "unreachable", anything else "bad_response".
func ErrorClass(err error) string {
	var ae *APIError
	switch {
	case errors.Is(err, ErrSuspiciousListing):
		return "suspicious"
	case errors.As(err, &ae) && ae.Status == http.StatusUnauthorized:
		return "unauthorized"
	case errors.As(err, &ae) && ae.Status == http.StatusForbidden:
		return "forbidden"
	case errors.As(err, &ae):
		return "bad_response"
	case errors.Is(err, ErrUnreachable):
		return "unreachable"
	}
	return "bad_response"
}
