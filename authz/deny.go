package authz

import (
	"encoding/json"
	"encoding/xml"
	"strings"
)

// Deny shapes. Every deny carries the header x-deact-reason with the Reason code and Cache-Control: no-store.
// Bodies say what is deactivated in words, never an ID, a token or anything else from the request.
//
//   - OAuth authorization endpoint: 403 {"error":"access_denied",...}. RFC 6749 §4.1.2.1 delivers errors by
//     redirect, but only after the authorization server validated redirect_uri, which deact cannot do; a direct
//     response avoids an open redirect.
//   - OAuth token, introspection and device endpoints: 400 {"error":"unauthorized_client",...}, the status and
//     code RFC 6749 §5.2 requires for a client that may not use the grant.
//   - ZITADEL APIs and login: 403 {"code":7,"message":...,"details":[{"@type":"type.googleapis.com/zitadel.v1.ErrorDetail",...}]},
//     ZITADEL's PermissionDenied.
//   - Commvault REST: 403 {"errorCode":1,"errorMessage":...}, or <EVGui_GenericResp errorCode="1" errorMessage="..."/>
//     when the client accepts XML (Accept, else Content-Type). Commvault clients treat a non-zero errorCode as failure.
//   - Generic (custom rules, route facts without a preset): 403 {"error":"access_denied",...}.
//   - Op api, and tokens too large to inspect: 401 with WWW-Authenticate: Bearer error="invalid_token" (RFC 6750
//     §3.1) and the surface's body (ZITADEL code 16, Unauthenticated).
//   - state_stale (fail-closed staleness policy): 503 with the surface's body.
//   - body_incomplete (a body the decision depends on, seen only in part): 413; body_unreadable (compressed or
//     malformed): 400; both with the surface's body (OAuth "invalid_request", ZITADEL code 3, Commvault
//     errorCode). They are refusals, not verdicts on the subject: the same request sent whole is decided.
//   - gRPC clients (Content-Type application/grpc*): the body is the bare message; Envoy turns a local reply to a
//     gRPC request into grpc-status from the HTTP status (403: PERMISSION_DENIED, 401: UNAUTHENTICATED, 503:
//     UNAVAILABLE) and grpc-message from the body.
type denial struct {
	status  int
	headers [][2]string
	body    string
}

// Header names deact sets.
const (
	HeaderReason   = "x-deact-reason"
	HeaderRevision = "x-deact-revision"
)

// CommvaultErrorCode is the errorCode of Commvault-shaped denies.
const CommvaultErrorCode = 1

func message(d *Decision) string {
	switch d.Reason {
	case ReasonOrgDeactivated:
		switch d.Action {
		case ActionLogin:
			return "The organization is deactivated: login is disabled."
		case ActionToken:
			return "The organization is deactivated: tokens are not issued."
		case ActionAPI:
			return "The organization is deactivated: its tokens are no longer accepted."
		case ActionBackup:
			return "The organization is deactivated: backup is disabled."
		case ActionRestore:
			return "The organization is deactivated: restore is disabled."
		}
		return "The organization is deactivated."
	case ReasonProjectDeactivated:
		if d.Action == ActionAPI {
			return "The project is deactivated: its tokens are no longer accepted."
		}
		return "The project is deactivated."
	case ReasonAppDeactivated:
		if d.Action == ActionAPI {
			return "The application is deactivated: its tokens are no longer accepted."
		}
		return "The application is deactivated."
	case ReasonStale:
		return "Authorization state is temporarily unavailable, try again later."
	case ReasonTokenTooLarge:
		return "The access token is too large."
	case ReasonBodyIncomplete:
		return "The request body is too large to be checked."
	case ReasonBodyUnreadable:
		return "The request body cannot be read: it is compressed or malformed."
	}
	return "The request cannot be authorized."
}

func zitadelDetailID(r Reason) string {
	switch r {
	case ReasonOrgDeactivated:
		return "DEACT-ORG01"
	case ReasonProjectDeactivated:
		return "DEACT-PRJ01"
	case ReasonAppDeactivated:
		return "DEACT-APP01"
	case ReasonStale:
		return "DEACT-STL01"
	case ReasonTokenTooLarge:
		return "DEACT-TOK01"
	case ReasonBodyIncomplete:
		return "DEACT-BDY01"
	case ReasonBodyUnreadable:
		return "DEACT-BDY02"
	}
	return "DEACT-CFG01"
}

// shape builds the deny response for d.
func shape(d *Decision, req *Request) denial {
	msg := message(d)
	bearer := d.Action == ActionAPI || d.Reason == ReasonTokenTooLarge
	stale := d.Reason == ReasonStale
	refused := d.Reason == ReasonBodyIncomplete || d.Reason == ReasonBodyUnreadable
	var dn denial
	switch {
	case stale:
		dn.status = 503
	case d.Reason == ReasonBodyIncomplete:
		dn.status = 413
	case d.Reason == ReasonBodyUnreadable:
		dn.status = 400
	case bearer:
		dn.status = 401
	case d.Surface == SurfaceOAuthToken:
		dn.status = 400
	default:
		dn.status = 403
	}
	if bearer && !stale && !refused {
		dn.headers = append(dn.headers, [2]string{"www-authenticate", `Bearer error="invalid_token", error_description="` + msg + `"`})
	}
	dn.headers = append(dn.headers, [2]string{HeaderReason, string(d.Reason)}, [2]string{"cache-control", "no-store"})

	ct := req.Headers["content-type"]
	if strings.HasPrefix(strings.ToLower(ct), "application/grpc") {
		dn.headers = append(dn.headers, [2]string{"content-type", "text/plain; charset=utf-8"})
		dn.body = msg
		return dn
	}
	contentType := "application/json"
	switch d.Surface {
	case SurfaceZITADEL:
		code := 7 // PermissionDenied
		switch {
		case refused:
			code = 3 // InvalidArgument
		case stale:
			code = 14 // Unavailable
		case bearer:
			code = 16 // Unauthenticated
		}
		dn.body = mustJSON(zitadelError{Code: code, Message: msg, Details: []zitadelDetail{{
			Type: "type.googleapis.com/zitadel.v1.ErrorDetail", ID: zitadelDetailID(d.Reason), Message: msg,
		}}})
	case SurfaceCommvault:
		accept := req.Headers["accept"]
		if containsFold(accept, "xml") || (accept == "" && containsFold(ct, "xml")) {
			contentType = "application/xml"
			b, _ := xml.Marshal(commvaultXML{Code: CommvaultErrorCode, Message: msg})
			dn.body = xml.Header + string(b)
		} else {
			dn.body = mustJSON(commvaultJSON{Code: CommvaultErrorCode, Message: msg})
		}
	default:
		code := "access_denied"
		switch {
		case refused:
			code = "invalid_request"
		case stale:
			code = "temporarily_unavailable"
		case bearer:
			code = "invalid_token"
		case d.Surface == SurfaceOAuthToken:
			code = "unauthorized_client"
		}
		dn.body = mustJSON(oauthError{Error: code, Description: msg})
	}
	dn.headers = append(dn.headers, [2]string{"content-type", contentType})
	return dn
}

type oauthError struct {
	Error       string `json:"error"`
	Description string `json:"error_description"`
}

type zitadelError struct {
	Code    int             `json:"code"`
	Message string          `json:"message"`
	Details []zitadelDetail `json:"details"`
}

type zitadelDetail struct {
	Type    string `json:"@type"`
	ID      string `json:"id"`
	Message string `json:"message"`
}

type commvaultJSON struct {
	Code    int    `json:"errorCode"`
	Message string `json:"errorMessage"`
}

type commvaultXML struct {
	XMLName xml.Name `xml:"EVGui_GenericResp"`
	Code    int      `xml:"errorCode,attr"`
	Message string   `xml:"errorMessage,attr"`
}

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return `{"error":"access_denied"}` // unreachable: the types above always marshal
	}
	return string(b)
}
