package adminapi

import (
	"time"

	"github.com/deact/deact/state"
)

// The native API, JSON under /v1/. Reads need any token, writes an admin token; every route checks the org it
// touches against the token's scope. Writes answer with the revision and the confirmation:
//
//	{"revision":42,"changedAt":"…","orgId":"1","confirmation":{"revision":42,"confirmed":3,"total":3,"waitedMs":1.2}}
//
// Errors: {"error":{"status":409,"code":"already_deactivated","message":"…"}}. Lists (orgs, projects, apps,
// tokens) answer one state.Page at a time: ?after=Next asks for the following page, ?limit= sizes it (1-1000).

// Headers of the confirmed fan-out, on every write of every API (native, ZITADEL, Commvault).
const (
	// HeaderConfirmTimeout asks for a bound on the confirmation wait ("500ms"; "0" = do not wait); the query
	// parameter confirmTimeout does the same.
	HeaderConfirmTimeout = "X-Deact-Confirm-Timeout"
	HeaderConfirmed      = "X-Deact-Confirmed"       // "confirmed/total", e.g. "3/3"; ConfirmNotNeeded for token writes
	HeaderConfirmWaitMs  = "X-Deact-Confirm-Wait-Ms" // milliseconds waited, e.g. "1.25"
)

// ConfirmNotNeeded is X-Deact-Confirmed on a write no gateway reads (admin tokens, /v1/tokens): gateways
// replicate only state.StatePrefix and hold no tokens, so there is nothing for them to apply and the write is
// answered at once. Admin nodes read tokens from etcd through a cache of Config.TokenCacheTTL: a revoked token
// stops working at once on the admin node that revoked it and within TokenCacheTTL (2 s) on every other.
const ConfirmNotNeeded = "not-needed"

// DefaultImportTimeout is the server's default bound on one /v1/import, from its authentication to its last
// batch (admin.Config.ImportTimeout).
const DefaultImportTimeout = 30 * time.Minute

// WriteResult is the answer to a native write.
type WriteResult struct {
	Revision     int64              `json:"revision"`
	ChangedAt    time.Time          `json:"changedAt"`
	OrgID        string             `json:"orgId,omitempty"`
	Confirmation state.Confirmation `json:"confirmation"`
}

// ImportResponse is the answer to /v1/import, and the "import" member of its error answer: exactly what was
// committed (lines 1..Lines, in Batches transactions, the last at Revision). Complete is false when the import
// stopped part way; it resumes with ?skip=Lines.
type ImportResponse struct {
	state.ImportResult
	Complete     bool               `json:"complete"`
	Confirmation state.Confirmation `json:"confirmation,omitzero"`
}

// NodeStatus is one gateway node in /v1/nodes.
type NodeStatus struct {
	state.Node
	// AgeMs is how long ago the node last wrote its record; StaleMs adds it to the staleness the node reported.
	AgeMs   int64 `json:"ageMs"`
	StaleMs int64 `json:"staleMs"`
}

// NodesResponse is the answer to /v1/nodes.
type NodesResponse struct {
	Nodes []NodeStatus `json:"nodes"`
}

// TokenRequest creates a token.
type TokenRequest struct {
	Name    string   `json:"name"`
	HomeOrg string   `json:"homeOrg"`
	AllOrgs bool     `json:"allOrgs"`
	Orgs    []string `json:"orgs"`
	Role    string   `json:"role"`
}

// TokenCreated is the answer to a token creation: Token is the secret, shown this once.
type TokenCreated struct {
	Token  string      `json:"token"`
	Record state.Token `json:"record"`
	WriteResult
}

// DeactivateRequest is the body of the native deactivate and reactivate calls (every field optional). For orgs,
// deactivate adds Ops (default "login,token") to what the native API disabled, and never touches what the
// ZITADEL or Commvault API disabled; reactivate enables Ops (default "all") whichever API disabled them.
type DeactivateRequest struct {
	Ops    string `json:"ops,omitempty"`   // orgs: "login,token", "all", ...
	Exact  bool   `json:"exact,omitempty"` // orgs, deactivate: what the native API disabled becomes exactly Ops
	OrgID  string `json:"orgId,omitempty"` // projects and apps: the owning org
	Reason string `json:"reason,omitempty"`
}

// OrgRequest registers an org.
type OrgRequest struct {
	Name    string   `json:"name"`
	Domains []string `json:"domains"`
	Reason  string   `json:"reason,omitempty"`
}

// AppRequest registers an app.
type AppRequest struct {
	OrgID     string   `json:"orgId"`
	ClientIDs []string `json:"clientIds"`
	Reason    string   `json:"reason,omitempty"`
}

// AccountRequest registers an account.
type AccountRequest struct {
	OrgID  string `json:"orgId"`
	Reason string `json:"reason,omitempty"`
}

// ErrorBody is the native API's error answer.
type ErrorBody struct {
	Error ErrorDetail `json:"error"`
	// Import says what an import committed before it stopped (only on /v1/import).
	Import *ImportResponse `json:"import,omitempty"`
}

// ErrorDetail is the "error" member of ErrorBody.
type ErrorDetail struct {
	Status  int    `json:"status"`         // the HTTP status
	Code    string `json:"code"`           // machine-readable, e.g. "already_deactivated", "not_found", "unavailable"
	ID      string `json:"id"`             // stable id of the failure, e.g. "DEACT-AlreadyDeactivated"
	Message string `json:"message"`        // safe to show the caller
	Line    int    `json:"line,omitempty"` // the input line at fault (import)
}

// AuditResponse is the answer to GET /v1/audit: the latest changes, newest first.
type AuditResponse struct {
	Entries []state.AuditEntry `json:"entries"`
	// Next is the cursor of the older entries (?before=Next, AuditOptions.Cursor); empty when there are none. A
	// page for a token of some orgs may hold fewer entries than asked (the others' are not shown) and still
	// have a Next.
	Next string `json:"next,omitempty"`
}

// SourceView is one source's status as /v1/sources answers it.
type SourceView struct {
	state.SourceStatus
	// AgeMs is how long ago the leader last wrote the status: a large one means no node leads the source now.
	AgeMs int64 `json:"ageMs"`
}

// SourcesResponse is the answer to GET /v1/sources.
type SourcesResponse struct {
	Sources []SourceView `json:"sources"`
}

// MirrorResponse is the answer to GET /v1/mirror/...: what each source mirrors of one subject.
type MirrorResponse struct {
	Records []state.Versioned[state.MirrorRecord] `json:"records"`
}
