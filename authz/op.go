package authz

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/deact/deact/state"
)

// Action is what a request does, as far as deactivation is concerned; configuration, metrics and logs call it
// the request's op (the route fact "op", X-Deact-Op, a rule's op:, --staleness op=...). It is not state.Ops:
// those are the flags a record disables, and stateOps maps an action to them. The zero value is ActionOther,
// which is never denied.
type Action uint8

const (
	ActionOther   Action = iota // anything else: never denied
	ActionLogin                 // interactive login, authorize, session creation
	ActionToken                 // token endpoint grants, introspection
	ActionBackup                // Commvault backup jobs
	ActionRestore               // Commvault restore jobs
	ActionAPI                   // a resource request carrying an already issued token; checked against token deactivation
	numActions
)

var actionNames = [numActions]string{"other", "login", "token", "backup", "restore", "api"}

// String returns the op's name as used in configuration, metrics and logs.
func (o Action) String() string {
	if o < numActions {
		return actionNames[o]
	}
	return fmt.Sprintf("op(%d)", o)
}

// ParseAction parses an op name (case-insensitive): login, token, backup, restore, api or other.
func ParseAction(s string) (Action, error) {
	for i, n := range actionNames {
		if strings.EqualFold(s, n) {
			return Action(i), nil
		}
	}
	return 0, fmt.Errorf("unknown op %q (want login, token, backup, restore, api or other)", s)
}

// parseActionFast is ParseAction without the error value, for the hot path.
func parseActionFast(s string) (Action, bool) {
	for i, n := range actionNames {
		if strings.EqualFold(s, n) {
			return Action(i), true
		}
	}
	return 0, false
}

// stateOps is the set of state flags an org must have disabled for a request of this op to be denied. An API
// request presents an issued token, so it is denied where token issuance is.
func (o Action) stateOps() state.Ops {
	switch o {
	case ActionLogin:
		return state.OpLogin
	case ActionToken, ActionAPI:
		return state.OpToken
	case ActionBackup:
		return state.OpBackup
	case ActionRestore:
		return state.OpRestore
	}
	return 0
}

// appsApply reports whether app and project deactivation applies to the op: apps are OIDC/API clients, so they
// matter for login, token and API requests, not for backup jobs.
func (o Action) appsApply() bool { return o == ActionLogin || o == ActionToken || o == ActionAPI }

// StalenessPolicy says, per op, how long the replica may have been out of contact with etcd before requests of
// that op are denied (fail-closed). An op without an entry serves the last known state however stale it is
// (the default). It implements flag.Value with the syntax of ParseStalenessPolicy.
type StalenessPolicy map[Action]time.Duration

// ParseStalenessPolicy parses a comma-separated list of op=policy, where policy is serve-last-known or
// deny-after:DURATION, and op may be "all", e.g. "login=deny-after:30s,token=serve-last-known". Later entries
// override earlier ones. The empty string is the default policy (serve last known for every op).
func ParseStalenessPolicy(s string) (StalenessPolicy, error) {
	p := StalenessPolicy{}
	return p, p.Set(s)
}

// Set adds the entries of s to the policy (flag.Value).
func (p *StalenessPolicy) Set(s string) error {
	if *p == nil {
		*p = StalenessPolicy{}
	}
	for item := range strings.SplitSeq(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		name, pol, ok := strings.Cut(item, "=")
		if !ok {
			return fmt.Errorf("staleness policy %q: want op=serve-last-known or op=deny-after:DURATION", item)
		}
		var ops []Action
		if strings.EqualFold(strings.TrimSpace(name), "all") {
			ops = []Action{ActionLogin, ActionToken, ActionBackup, ActionRestore, ActionAPI}
		} else {
			op, err := ParseAction(strings.TrimSpace(name))
			if err != nil {
				return fmt.Errorf("staleness policy %q: %w", item, err)
			}
			if op == ActionOther {
				return fmt.Errorf("staleness policy %q: op other is never denied", item)
			}
			ops = []Action{op}
		}
		pol = strings.TrimSpace(pol)
		var bound time.Duration
		switch {
		case strings.EqualFold(pol, "serve-last-known"):
		case len(pol) > len("deny-after:") && strings.EqualFold(pol[:len("deny-after:")], "deny-after:"):
			d, err := time.ParseDuration(pol[len("deny-after:"):])
			if err != nil {
				return fmt.Errorf("staleness policy %q: %w", item, err)
			}
			if d <= 0 {
				return fmt.Errorf("staleness policy %q: deny-after needs a positive duration", item)
			}
			bound = d
		default:
			return fmt.Errorf("staleness policy %q: unknown policy %q (want serve-last-known or deny-after:DURATION)", item, pol)
		}
		for _, op := range ops {
			if bound == 0 {
				delete(*p, op)
			} else {
				(*p)[op] = bound
			}
		}
	}
	return nil
}

// String formats the policy in the syntax ParseStalenessPolicy reads, ops in a fixed order.
func (p StalenessPolicy) String() string {
	var parts []string
	for op := ActionLogin; op < numActions; op++ {
		if d, ok := p[op]; ok {
			parts = append(parts, op.String()+"=deny-after:"+d.String())
		}
	}
	return strings.Join(parts, ",")
}

// validate rejects entries a hand-built map may hold that the parser would not produce.
func (p StalenessPolicy) validate() error {
	ops := make([]Action, 0, len(p))
	for op := range p {
		ops = append(ops, op)
	}
	slices.Sort(ops)
	for _, op := range ops {
		switch d := p[op]; {
		case op == ActionOther || op >= numActions:
			return fmt.Errorf("staleness policy: op %s cannot have a deny-after bound", op)
		case d <= 0:
			return fmt.Errorf("staleness policy: op %s: deny-after needs a positive duration, got %s", op, d)
		}
	}
	return nil
}
