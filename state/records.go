package state

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Ops is a set of operations that a deactivation disables.
type Ops uint8

const (
	OpLogin Ops = 1 << iota
	OpToken
	OpBackup
	OpRestore

	// OpsAll is what a full deactivation disables. ZITADEL's org deactivation means login and token;
	// Commvault's deactivateOptions choose among login, backup and restore.
	OpsAll = OpLogin | OpToken | OpBackup | OpRestore
)

// String lists the ops, e.g. "login,token".
func (o Ops) String() string {
	if o == 0 {
		return "none"
	}
	var parts []string
	for _, p := range []struct {
		op   Ops
		name string
	}{{OpLogin, "login"}, {OpToken, "token"}, {OpBackup, "backup"}, {OpRestore, "restore"}} {
		if o&p.op != 0 {
			parts = append(parts, p.name)
		}
	}
	return strings.Join(parts, ",")
}

// ParseOps parses a comma-separated list such as "login,token" or "all".
func ParseOps(s string) (Ops, error) {
	var o Ops
	for _, p := range strings.Split(s, ",") {
		switch strings.TrimSpace(strings.ToLower(p)) {
		case "login":
			o |= OpLogin
		case "token":
			o |= OpToken
		case "backup":
			o |= OpBackup
		case "restore":
			o |= OpRestore
		case "all":
			o |= OpsAll
		case "":
		default:
			return 0, fmt.Errorf("unknown op %q (want login, token, backup, restore or all)", p)
		}
	}
	return o, nil
}

// Meta says who changed a record last, when and why.
type Meta struct {
	Reason    string    `json:"reason,omitempty"`
	ChangedBy string    `json:"changedBy,omitempty"`
	ChangedAt time.Time `json:"changedAt,omitzero"`
}

// Source is the API a deactivation came through. Each keeps its own set of disabled ops on an org, so that one
// API's deactivate or reactivate never undoes another's.
type Source string

const (
	SourceZitadel   Source = "zitadel"
	SourceCommvault Source = "commvault"
	SourceNative    Source = "native"
)

// Sources are the sources deact knows, in the order records list them.
var sources = [...]Source{SourceZitadel, SourceCommvault, SourceNative}

func knownSource(s Source) bool {
	for _, k := range sources {
		if s == k {
			return true
		}
	}
	return false
}

// Org is an organization. It is deactivated for the ops in Disabled; zero means active. Disabled is the union of
// DisabledBy (which API disabled what) and of ops no API is named for (records written before deact kept
// sources, or imported without them): Unattributed.
type Org struct {
	ID         string         `json:"id"`
	Name       string         `json:"name,omitempty"`
	Disabled   Ops            `json:"-"`
	DisabledBy map[Source]Ops `json:"-"`
	Domains    []string       `json:"domains,omitempty"`
	Meta
}

// orgJSON is the stored form: the state and one flag per op, readable with etcdctl, and which source disabled
// which ops ("disabledBy":{"zitadel":"login,token"}). Replicas read only the flags.
type orgJSON struct {
	ID             string            `json:"id"`
	Name           string            `json:"name,omitempty"`
	State          string            `json:"state"`
	DisableLogin   bool              `json:"disableLogin"`
	DisableToken   bool              `json:"disableToken"`
	DisableBackup  bool              `json:"disableBackup"`
	DisableRestore bool              `json:"disableRestore"`
	DisabledBy     map[string]string `json:"disabledBy,omitempty"`
	Domains        []string          `json:"domains,omitempty"`
	Meta
}

// Active and Deactivated are the values of the "state" field of stored records.
const (
	Active      = "active"
	Deactivated = "deactivated"
)

func stateName(deactivated bool) string {
	if deactivated {
		return Deactivated
	}
	return Active
}

// ErrUnknownState is wrapped by every failure to read a "state" field: any value but "active" and
// "deactivated" (and an absent one, which means active).
var ErrUnknownState = errors.New("unknown state")

func checkState(s string) error {
	switch s {
	case "", Active, Deactivated:
		return nil
	}
	return fmt.Errorf("%w %q: want %q or %q", ErrUnknownState, s, Active, Deactivated)
}

// union is every op some source disabled.
func union(by map[Source]Ops) Ops {
	var u Ops
	for _, o := range by {
		u |= o
	}
	return u
}

// Unattributed is the part of Disabled no source is named for.
func (o *Org) Unattributed() Ops { return o.Disabled &^ union(o.DisabledBy) }

func (o Org) MarshalJSON() ([]byte, error) {
	j := orgJSON{
		ID: o.ID, Name: o.Name, State: stateName(o.Disabled != 0),
		DisableLogin: o.Disabled&OpLogin != 0, DisableToken: o.Disabled&OpToken != 0,
		DisableBackup: o.Disabled&OpBackup != 0, DisableRestore: o.Disabled&OpRestore != 0,
		Domains: o.Domains, Meta: o.Meta,
	}
	for src, ops := range o.DisabledBy {
		if ops != 0 {
			if j.DisabledBy == nil {
				j.DisabledBy = map[string]string{}
			}
			j.DisabledBy[string(src)] = ops.String()
		}
	}
	return json.Marshal(j)
}

// UnmarshalJSON reads a stored org. A state deact does not know disables everything (fail closed, as the
// replica does); unreadable ops in disabledBy are an error.
func (o *Org) UnmarshalJSON(b []byte) error {
	var j orgJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	return o.fromJSON(&j, false)
}

// fromJSON fills o from its stored form. strict (import) refuses what a read of etcd tolerates: an unknown
// state or source, and a state that contradicts the flags.
func (o *Org) fromJSON(j *orgJSON, strict bool) error {
	by := map[Source]Ops{}
	for src, s := range j.DisabledBy {
		if strict && !knownSource(Source(src)) {
			return fmt.Errorf("disabledBy: unknown source %q (want zitadel, commvault or native)", src)
		}
		ops, err := ParseOps(s)
		if err != nil {
			return fmt.Errorf("disabledBy %s: %w", src, err)
		}
		if ops != 0 {
			by[Source(src)] = ops
		}
	}
	flags := orgFlags{j.State, j.DisableLogin, j.DisableToken, j.DisableBackup, j.DisableRestore}
	if strict {
		if err := checkState(j.State); err != nil {
			return err
		}
		if j.State == Active && flags.flags()|union(by) != 0 {
			return fmt.Errorf("state %q contradicts the disabled ops %s", Active, (flags.flags() | union(by)).String())
		}
	}
	d, err := flags.disabled()
	if err == nil && flags.flags() == 0 && len(by) > 0 {
		d = 0 // "state":"deactivated" without flags: disabledBy says what is disabled
	}
	if len(by) == 0 {
		by = nil
	}
	*o = Org{ID: j.ID, Name: j.Name, Disabled: d | union(by), DisabledBy: by, Domains: j.Domains, Meta: j.Meta}
	return nil
}

// orgFlags is the part of an org record a snapshot keeps: decoding only it leaves the other fields unallocated,
// which matters when a million records are listed.
type orgFlags struct {
	State          string `json:"state"`
	DisableLogin   bool   `json:"disableLogin"`
	DisableToken   bool   `json:"disableToken"`
	DisableBackup  bool   `json:"disableBackup"`
	DisableRestore bool   `json:"disableRestore"`
}

func (j orgFlags) flags() Ops {
	var d Ops
	for _, f := range []struct {
		on bool
		op Ops
	}{{j.DisableLogin, OpLogin}, {j.DisableToken, OpToken}, {j.DisableBackup, OpBackup}, {j.DisableRestore, OpRestore}} {
		if f.on {
			d |= f.op
		}
	}
	return d
}

// disabled is what the record disables. A state deact does not know disables everything and is reported, so
// that no spelling of "deactivated" ("Deactivated", "DEACTIVATED", "disabled") reads as active.
func (j orgFlags) disabled() (Ops, error) {
	if err := checkState(j.State); err != nil {
		return OpsAll, err
	}
	d := j.flags()
	// A record written by hand with only "state":"deactivated" disables everything rather than nothing.
	if j.State == Deactivated && d == 0 {
		d = OpsAll
	}
	return d, nil
}

// Project groups apps; deactivating it deactivates all of them.
type Project struct {
	ID    string `json:"id"`
	OrgID string `json:"orgId"`
	State string `json:"state"` // Active or Deactivated
	Meta
}

// App is an application (OIDC/API client) of a project; ClientIDs are indexed so token requests that carry only
// a client_id find it.
type App struct {
	ID        string   `json:"id"`
	ProjectID string   `json:"projectId"`
	OrgID     string   `json:"orgId"`
	ClientIDs []string `json:"clientIds,omitempty"`
	State     string   `json:"state"` // Active or Deactivated
	Meta
}

// IsDeactivated reports whether the project is deactivated: any state but "active" (or none) is, so that a
// state deact does not know fails closed.
func (p *Project) IsDeactivated() bool { return p.State != Active && p.State != "" }

// IsDeactivated reports whether the app is deactivated, with the same rule as Project.IsDeactivated.
func (a *App) IsDeactivated() bool { return a.State != Active && a.State != "" }

// clientEntry is the client-ID index entry of clientID, one of the app's client IDs: PutApp and Import write
// it alike.
func (a *App) clientEntry(clientID string) Client {
	return Client{ClientID: clientID, AppID: a.ID, ProjectID: a.ProjectID, OrgID: a.OrgID}
}

// Client is the client-ID index entry pointing at an app.
type Client struct {
	ClientID  string `json:"clientId"`
	AppID     string `json:"appId"`
	ProjectID string `json:"projectId"`
	OrgID     string `json:"orgId"`
	// Next is another entry for the same client ID, when layers disagree about whose it is (a local entry and a
	// mirrored app, or two sources): a decision checks every entry of the chain. Only snapshots set it.
	Next *Client `json:"-"`
}

// AppID is the app-ID index entry: the one project (and org) an app ID is registered under.
type AppID struct {
	AppID     string `json:"appId"`
	ProjectID string `json:"projectId"`
	OrgID     string `json:"orgId,omitempty"`
}

// Domain maps an org domain name (Commvault login "domain\user" or "user@domain") to its org.
type Domain struct {
	Domain string  `json:"domain"`
	OrgID  string  `json:"orgId"`
	Next   *Domain `json:"-"` // as Client.Next
}

// Account maps a user or service account (the subject of a JWT profile grant) to its org.
type Account struct {
	ID    string `json:"id"`
	OrgID string `json:"orgId"`
}

// Node is a gateway node's report of what it has applied. It lives on a lease: a dead node disappears.
type Node struct {
	ID              string    `json:"id"`
	Instance        string    `json:"instance,omitempty"` // random per process: tells two holders of one ID apart
	AppliedRevision int64     `json:"appliedRevision"`
	SyncedAt        time.Time `json:"syncedAt"`
	StalenessMs     int64     `json:"stalenessMs"`
	Version         string    `json:"version"`
	// ReportKeyHash is the hex SHA-256 of the secret with which this session of the node authenticates its
	// direct reports to admin nodes (see ReportServer); empty for a node that reports only through this record.
	ReportKeyHash string `json:"reportKeyHash,omitempty"`
}

// AdminNode is an admin node's entry in the registry of report servers: gateways stream their applied
// revisions to ReportAddr. It lives on a lease: a dead admin node disappears, and gateways stop counting on it.
type AdminNode struct {
	ID         string `json:"id"`
	ReportAddr string `json:"reportAddr"`
	Version    string `json:"version,omitempty"`
	Seeds      bool   `json:"seeds,omitempty"` // it serves gateways' first snapshots (seed.go)
}
