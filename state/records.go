package state

import (
	"encoding/json"
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

// Org is an organization. It is deactivated for the ops in Disabled; zero means active.
type Org struct {
	ID       string   `json:"id"`
	Name     string   `json:"name,omitempty"`
	Disabled Ops      `json:"-"`
	Domains  []string `json:"domains,omitempty"`
	Meta
}

// orgJSON is the stored form: the state and one flag per op, readable with etcdctl.
type orgJSON struct {
	ID             string   `json:"id"`
	Name           string   `json:"name,omitempty"`
	State          string   `json:"state"`
	DisableLogin   bool     `json:"disableLogin"`
	DisableToken   bool     `json:"disableToken"`
	DisableBackup  bool     `json:"disableBackup"`
	DisableRestore bool     `json:"disableRestore"`
	Domains        []string `json:"domains,omitempty"`
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

func (o Org) MarshalJSON() ([]byte, error) {
	return json.Marshal(orgJSON{
		ID: o.ID, Name: o.Name, State: stateName(o.Disabled != 0),
		DisableLogin: o.Disabled&OpLogin != 0, DisableToken: o.Disabled&OpToken != 0,
		DisableBackup: o.Disabled&OpBackup != 0, DisableRestore: o.Disabled&OpRestore != 0,
		Domains: o.Domains, Meta: o.Meta,
	})
}

func (o *Org) UnmarshalJSON(b []byte) error {
	var j orgJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	*o = Org{ID: j.ID, Name: j.Name, Disabled: j.disabled(), Domains: j.Domains, Meta: j.Meta}
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

func (j *orgJSON) disabled() Ops {
	return orgFlags{j.State, j.DisableLogin, j.DisableToken, j.DisableBackup, j.DisableRestore}.disabled()
}

func (j orgFlags) disabled() Ops {
	var d Ops
	for _, f := range []struct {
		on bool
		op Ops
	}{{j.DisableLogin, OpLogin}, {j.DisableToken, OpToken}, {j.DisableBackup, OpBackup}, {j.DisableRestore, OpRestore}} {
		if f.on {
			d |= f.op
		}
	}
	// A record written by hand with only "state":"deactivated" disables everything rather than nothing.
	if j.State == Deactivated && d == 0 {
		d = OpsAll
	}
	return d
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

// IsDeactivated reports whether the project is deactivated.
func (p *Project) IsDeactivated() bool { return p.State == Deactivated }

// IsDeactivated reports whether the app is deactivated.
func (a *App) IsDeactivated() bool { return a.State == Deactivated }

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
	AppliedRevision int64     `json:"appliedRevision"`
	SyncedAt        time.Time `json:"syncedAt"`
	StalenessMs     int64     `json:"stalenessMs"`
	Version         string    `json:"version"`
}
