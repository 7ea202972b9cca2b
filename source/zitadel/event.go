package zitadel

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/deact/deact/state"
)

// SignatureHeader is the header ZITADEL signs event deliveries with (zitadel-go pkg/actions: "ZITADEL-Signature";
// the proto comments say X-ZITADEL-Signature, the code sends this one).
const SignatureHeader = "ZITADEL-Signature"

// SignatureTolerance is how far a delivery's timestamp may be from now, as ZITADEL's own verifier allows.
const SignatureTolerance = 300 * time.Second

// Signature errors: every one is a 401 that changes nothing.
var (
	ErrNotSigned    = errors.New("no " + SignatureHeader + " header")
	ErrBadSignature = errors.New("no signature matches a signing key")
	ErrStale        = errors.New("signature timestamp outside the 300 s tolerance")
	ErrBadHeader    = errors.New("malformed " + SignatureHeader + " header")
)

// maxSignatureHeader bounds the work one header can cause (each v1 value is checked against each key).
const (
	maxSignatureHeader = 4096
	maxSignatures      = 16
)

// Verifier checks ZITADEL-Signature headers: "t=<unix seconds>,v1=<hex>[,v1=<hex>...]", where each v1 is
// HMAC-SHA256(key, "<t>.<raw body>") for one of the target's signing keys (several during a key rotation). A
// delivery verifies when any v1 matches any configured key and t is within SignatureTolerance of now; other
// schemes' values (v0=...) are ignored as ZITADEL's verifier does.
type Verifier struct {
	keys [][]byte
	now  func() time.Time
}

// NewVerifier returns a Verifier for the keys (none is an error).
func NewVerifier(keys []string, now func() time.Time) (*Verifier, error) {
	v := &Verifier{now: now}
	if v.now == nil {
		v.now = time.Now
	}
	for _, k := range keys {
		if k = strings.TrimSpace(k); k != "" {
			v.keys = append(v.keys, []byte(k))
		}
	}
	if len(v.keys) == 0 {
		return nil, errors.New("no zitadel signing key")
	}
	return v, nil
}

// ParseKeys reads signing keys, one a line; blank lines and lines starting with # are skipped.
func ParseKeys(b []byte) []string {
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			out = append(out, l)
		}
	}
	return out
}

// Verify checks header against body. The comparison of each MAC is constant-time.
func (v *Verifier) Verify(header string, body []byte) error {
	if header == "" {
		return ErrNotSigned
	}
	if len(header) > maxSignatureHeader {
		return ErrBadHeader
	}
	var ts string
	var sigs [][]byte
	for _, part := range strings.Split(header, ",") {
		k, val, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			return ErrBadHeader
		}
		switch k {
		case "t":
			if ts != "" {
				return ErrBadHeader // two timestamps: which one was signed is ambiguous
			}
			ts = val
		case "v1":
			sig, err := hex.DecodeString(val)
			if err != nil || len(sig) != sha256.Size {
				continue
			}
			if len(sigs) == maxSignatures {
				return ErrBadHeader
			}
			sigs = append(sigs, sig)
		}
	}
	unix, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || ts == "" || ts[0] == '+' || ts[0] == '-' {
		return ErrBadHeader
	}
	if len(sigs) == 0 {
		return ErrBadSignature
	}
	if d := v.now().Sub(time.Unix(unix, 0)); d > SignatureTolerance || d < -SignatureTolerance {
		return ErrStale
	}
	ok := false
	for _, key := range v.keys {
		m := hmac.New(sha256.New, key)
		m.Write([]byte(ts))
		m.Write([]byte("."))
		m.Write(body)
		want := m.Sum(nil)
		for _, sig := range sigs {
			if hmac.Equal(want, sig) {
				ok = true // keep going: the time taken does not say which key matched
			}
		}
	}
	if !ok {
		return ErrBadSignature
	}
	return nil
}

// Delivery is the body of an Actions v2 event execution (ZITADEL internal/repository/execution ContextInfoEvent).
type Delivery struct {
	AggregateID   string          `json:"aggregateID"`
	AggregateType string          `json:"aggregateType"`
	ResourceOwner string          `json:"resourceOwner"`
	InstanceID    string          `json:"instanceID"`
	Version       string          `json:"version"`
	Sequence      uint64          `json:"sequence"`
	EventType     string          `json:"event_type"`
	CreatedAt     string          `json:"created_at"`
	UserID        string          `json:"userID"`
	EventPayload  json.RawMessage `json:"event_payload"`
}

// action is what an event does to a mirrored record.
type action uint8

const (
	actIgnore action = iota
	actDeactivate
	actReactivate
	actRemove
	actClient // an app's OIDC/API config was added: its client ID is known
	actAppAdded
)

// Intent is a verified, parsed delivery deact acts on.
type Intent struct {
	Kind      state.MirrorKind
	act       action
	ID        string // org, project or app ID
	ProjectID string // apps
	OrgID     string
	ClientID  string
	Sequence  uint64 // of the event's aggregate: the org's for orgs, the project's for projects and apps
	CreatedAt time.Time
	Type      string
}

var eventActions = map[string]struct {
	kind state.MirrorKind
	act  action
}{
	"org.deactivated":                                {state.MirrorOrg, actDeactivate},
	"org.reactivated":                                {state.MirrorOrg, actReactivate},
	"org.removed":                                    {state.MirrorOrg, actRemove},
	"project.deactivated":                            {state.MirrorProject, actDeactivate},
	"project.reactivated":                            {state.MirrorProject, actReactivate},
	"project.removed":                                {state.MirrorProject, actRemove},
	"project.application.deactivated":                {state.MirrorApp, actDeactivate},
	"project.application.reactivated":                {state.MirrorApp, actReactivate},
	"project.application.removed":                    {state.MirrorApp, actRemove},
	"project.application.added":                      {state.MirrorApp, actAppAdded},
	"project.application.config.oidc.added":          {state.MirrorApp, actClient},
	"project.application.config.api.added":           {state.MirrorApp, actClient},
	"project.application.config.saml.added":          {state.MirrorApp, actAppAdded},
	"project.application.config.oidc.changed":        {}, // client IDs never change after creation
	"project.application.config.api.changed":         {},
	"project.application.config.saml.changed":        {},
	"project.application.config.oidc.secret.changed": {},
}

// ErrMalformed wraps every reason a verified delivery cannot be applied (a 400: ZITADEL logs it).
var ErrMalformed = errors.New("malformed event")

// ParseDelivery reads a delivery body. An event type deact does not act on gives an Intent with Ignored() true
// and no error; a known type with missing or invalid fields is ErrMalformed.
func ParseDelivery(body []byte) (Intent, error) {
	// The type first, alone: an event deact ignores is acknowledged whatever else its body holds, so a change
	// of an ignored event's shape never makes ZITADEL see failures.
	var head struct {
		EventType string `json:"event_type"`
	}
	if err := json.Unmarshal(body, &head); err != nil {
		return Intent{}, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	in := Intent{Type: head.EventType}
	ea, ok := eventActions[head.EventType]
	if !ok || ea.act == actIgnore {
		return in, nil
	}
	var d Delivery
	if err := json.Unmarshal(body, &d); err != nil {
		return in, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	in.Kind, in.act, in.Sequence = ea.kind, ea.act, d.Sequence
	if d.Sequence == 0 {
		return in, fmt.Errorf("%w: %s without a sequence", ErrMalformed, d.EventType)
	}
	if d.CreatedAt != "" {
		t, err := time.Parse(time.RFC3339Nano, d.CreatedAt)
		if err != nil {
			return in, fmt.Errorf("%w: created_at: %v", ErrMalformed, err)
		}
		in.CreatedAt = t.UTC()
	}
	wantAgg := "project"
	if ea.kind == state.MirrorOrg {
		wantAgg = "org"
	}
	if d.AggregateType != wantAgg {
		return in, fmt.Errorf("%w: %s on aggregate type %q, want %q", ErrMalformed, d.EventType, d.AggregateType, wantAgg)
	}
	if err := state.ValidateID(wantAgg, d.AggregateID); err != nil {
		return in, fmt.Errorf("%w: aggregateID: %v", ErrMalformed, err)
	}
	in.OrgID = d.ResourceOwner
	if ea.kind == state.MirrorOrg {
		in.ID, in.OrgID = d.AggregateID, d.AggregateID
		if d.ResourceOwner != "" && d.ResourceOwner != d.AggregateID {
			return in, fmt.Errorf("%w: org event with resourceOwner %q", ErrMalformed, d.ResourceOwner)
		}
		return in, nil
	}
	if err := state.ValidateID("org", in.OrgID); err != nil {
		return in, fmt.Errorf("%w: resourceOwner: %v", ErrMalformed, err)
	}
	if ea.kind == state.MirrorProject {
		in.ID = d.AggregateID
		return in, nil
	}
	in.ProjectID = d.AggregateID
	payload, err := eventPayload(d.EventPayload)
	if err != nil {
		return in, err
	}
	var p struct {
		AppID    string `json:"appId"`
		ClientID string `json:"clientId"`
	}
	if err := json.Unmarshal(payload, &p); err != nil {
		return in, fmt.Errorf("%w: event_payload: %v", ErrMalformed, err)
	}
	if err := state.ValidateID("app", p.AppID); err != nil {
		return in, fmt.Errorf("%w: appId: %v", ErrMalformed, err)
	}
	in.ID = p.AppID
	if ea.act == actClient {
		if err := state.ValidateID("client", p.ClientID); err != nil {
			return in, fmt.Errorf("%w: clientId: %v", ErrMalformed, err)
		}
		in.ClientID = p.ClientID
	}
	return in, nil
}

// Ignored reports whether deact does nothing for this event type.
func (in Intent) Ignored() bool { return in.act == actIgnore }

// eventPayload decodes event_payload: ZITADEL marshals a Go []byte, so base64 of the event's JSON; a JSON object
// given inline (as a proxy might rewrite it) is accepted too.
func eventPayload(raw json.RawMessage) ([]byte, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, fmt.Errorf("%w: no event_payload", ErrMalformed)
	}
	if raw[0] == '{' {
		return raw, nil
	}
	var b []byte
	if err := json.Unmarshal(raw, &b); err != nil {
		return nil, fmt.Errorf("%w: event_payload is neither base64 nor an object: %v", ErrMalformed, err)
	}
	return b, nil
}
