package admin

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"connectrpc.com/connect"
	"github.com/deact/deact/admin/adminapi"
	"github.com/deact/deact/state"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// kind classifies a failure once; each API renders it in its own shape (ZITADEL status, Commvault errorCode,
// native JSON) from the same classification.
type kind int

const (
	kindInternal kind = iota
	kindInvalid
	kindUnauthenticated
	kindForbidden
	kindNotFound
	kindAlreadyDeactivated
	kindNotDeactivated
	kindConflict
	kindTooLarge
	kindRateLimited
	kindUnavailable
	kindUnsupportedMedia
	numKinds // not a kind: the number of kinds, for kindAnswers
)

// apiError is a classified failure: its message is safe to show the caller.
type apiError struct {
	kind kind
	id   string // stable id, e.g. "DEACT-AlreadyDeactivated" (ZITADEL's ErrorDetail.id)
	msg  string
	err  error // the cause, for logs
	// line is the input line at fault, and imported what an import committed before it stopped (native API).
	line     int
	imported *adminapi.ImportResponse
}

func (e *apiError) Error() string { return e.msg }
func (e *apiError) Unwrap() error { return e.err }

func newError(k kind, id, format string, args ...any) *apiError {
	return &apiError{kind: k, id: id, msg: fmt.Sprintf(format, args...)}
}

var (
	errNoToken     = newError(kindUnauthenticated, "DEACT-NoToken", "authentication required: send a token")
	errBadToken    = newError(kindUnauthenticated, "DEACT-BadToken", "the token is not valid")
	errRateLimited = newError(kindRateLimited, "DEACT-TooManyFailures", "too many failed authentications from this address, try again later")
	errReadOnly    = newError(kindForbidden, "DEACT-ReadOnly", "the token is read-only")
)

// classify turns any error into an apiError. Errors of the state package keep their message; unknown errors
// become internal ones with a generic message (the cause is logged, not shown).
func classify(err error) *apiError {
	var ae *apiError
	if errors.As(err, &ae) {
		return ae
	}
	msg := err.Error()
	switch {
	case errors.Is(err, state.ErrInvalidID):
		return &apiError{kind: kindInvalid, id: "DEACT-InvalidID", msg: msg, err: err}
	case errors.Is(err, state.ErrAlreadyDeactivated):
		return &apiError{kind: kindAlreadyDeactivated, id: "DEACT-AlreadyDeactivated", msg: msg, err: err}
	case errors.Is(err, state.ErrNotDeactivated):
		return &apiError{kind: kindNotDeactivated, id: "DEACT-NotDeactivated", msg: msg, err: err}
	case errors.Is(err, state.ErrNotFound):
		return &apiError{kind: kindNotFound, id: "DEACT-NotFound", msg: msg, err: err}
	case errors.Is(err, state.ErrForbidden):
		return &apiError{kind: kindForbidden, id: "DEACT-Forbidden", msg: msg, err: err}
	case errors.Is(err, state.ErrOtherOrg):
		// Checked inside the store's transaction: the caller may not take a record from an org it cannot act on.
		return &apiError{kind: kindForbidden, id: "DEACT-OrgNotAllowed", msg: msg, err: err}
	case errors.Is(err, state.ErrConflict):
		return &apiError{kind: kindConflict, id: "DEACT-Conflict", msg: msg, err: err}
	case errors.Is(err, state.ErrContention):
		return &apiError{kind: kindUnavailable, id: "DEACT-Contention", msg: msg, err: err}
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled), storeUnavailable(err):
		return &apiError{kind: kindUnavailable, id: "DEACT-Unavailable", msg: msgUnavailable, err: err}
	}
	return &apiError{kind: kindInternal, id: "DEACT-Internal", msg: "internal error", err: err}
}

// msgUnavailable is the answer when etcd did not answer within the write timeout (no quorum, no leader, not
// reachable). A write that timed out may still commit once etcd recovers; every write is a compare-and-swap, so
// repeating it is safe: it succeeds, or answers "already deactivated" when the first attempt did commit.
const msgUnavailable = "the store did not answer in time (etcd has no quorum or is unreachable); the change may or may not be applied: retry it"

// storeUnavailable reports whether err is etcd saying it cannot serve now: no leader, a timeout of its own, or
// an unreachable endpoint. Such failures are 503s (retry later), not 500s.
func storeUnavailable(err error) bool {
	var ee rpctypes.EtcdError
	if errors.As(err, &ee) {
		switch ee.Code() {
		case codes.Unavailable, codes.DeadlineExceeded, codes.Canceled:
			return true
		}
		return false
	}
	if s, ok := status.FromError(err); ok {
		switch s.Code() {
		case codes.Unavailable, codes.DeadlineExceeded, codes.Canceled:
			return true
		}
	}
	return false
}

// clientFault reports whether the caller caused the failure (logged below error level).
func (e *apiError) clientFault() bool {
	return e.kind != kindInternal && e.kind != kindUnavailable
}

// kindAnswer is how the APIs render one kind of failure.
type kindAnswer struct {
	http      int          // the native and Commvault APIs' status (the ZITADEL API's follows from its code)
	connect   connect.Code // the ZITADEL API's gRPC code
	name      string       // the native API's machine-readable code
	commvault int          // the Commvault API's errorCode
}

// kindAnswers is every kind's answer in every API, one row a kind.
var kindAnswers = [numKinds]kindAnswer{
	kindInternal:           {http.StatusInternalServerError, connect.CodeInternal, "internal", cvErrInternal},
	kindInvalid:            {http.StatusBadRequest, connect.CodeInvalidArgument, "invalid_argument", cvErrInvalid},
	kindUnauthenticated:    {http.StatusUnauthorized, connect.CodeUnauthenticated, "unauthenticated", cvErrAuth},
	kindForbidden:          {http.StatusForbidden, connect.CodePermissionDenied, "permission_denied", cvErrForbidden},
	kindNotFound:           {http.StatusNotFound, connect.CodeNotFound, "not_found", cvErrNotFound},
	kindAlreadyDeactivated: {http.StatusConflict, connect.CodeFailedPrecondition, "already_deactivated", cvErrState},
	kindNotDeactivated:     {http.StatusConflict, connect.CodeFailedPrecondition, "not_deactivated", cvErrState},
	kindConflict:           {http.StatusConflict, connect.CodeAlreadyExists, "conflict", cvErrConflict},
	kindTooLarge:           {http.StatusRequestEntityTooLarge, connect.CodeResourceExhausted, "body_too_large", cvErrTooLarge},
	kindRateLimited:        {http.StatusTooManyRequests, connect.CodeResourceExhausted, "rate_limited", cvErrRateLimited},
	kindUnavailable:        {http.StatusServiceUnavailable, connect.CodeUnavailable, "unavailable", cvErrUnavailable},
	kindUnsupportedMedia:   {http.StatusUnsupportedMediaType, connect.CodeInvalidArgument, "unsupported_media_type", cvErrUnsupported},
}

// answer is the row of e's kind; a value that is no kind answers as internal.
func (e *apiError) answer() kindAnswer {
	if e.kind < 0 || e.kind >= numKinds {
		return kindAnswers[kindInternal]
	}
	return kindAnswers[e.kind]
}

// httpStatus is the status of the native and Commvault APIs. (The ZITADEL API uses connect codes; vanguard maps
// them to ZITADEL's statuses.)
func (e *apiError) httpStatus() int { return e.answer().http }

// connectCode is the gRPC code ZITADEL uses for the failure.
func (e *apiError) connectCode() connect.Code { return e.answer().connect }

// name is the machine-readable code of the native API.
func (e *apiError) name() string { return e.answer().name }
