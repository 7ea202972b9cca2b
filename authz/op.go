package authz

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/deact/deact/state"
)

// Op is what a request does, as far as deactivation is concerned. The zero value is OpOther, which is never
// denied.
type Op uint8

const (
	OpOther   Op = iota // anything else: never denied
	OpLogin             // interactive login, authorize, session creation
	OpToken             // token endpoint grants, introspection
	OpBackup            // Commvault backup jobs
	OpRestore           // Commvault restore jobs
	OpAPI               // a resource request carrying an already issued token; checked against token deactivation
	numOps
)

var opNames = [numOps]string{"other", "login", "token", "backup", "restore", "api"}

// String returns the op's name as used in configuration, metrics and logs.
func (o Op) String() string {
	if o < numOps {
		return opNames[o]
	}
	return fmt.Sprintf("op(%d)", o)
}

// ParseOp parses an op name (case-insensitive): login, token, backup, restore, api or other.
func ParseOp(s string) (Op, error) {
	for i, n := range opNames {
		if strings.EqualFold(s, n) {
			return Op(i), nil
		}
	}
	return 0, fmt.Errorf("unknown op %q (want login, token, backup, restore, api or other)", s)
}

// parseOpFast is ParseOp without the error value, for the hot path.
func parseOpFast(s string) (Op, bool) {
	for i, n := range opNames {
		if strings.EqualFold(s, n) {
			return Op(i), true
		}
	}
	return 0, false
}

// stateOps is the set of state flags an org must have disabled for a request of this op to be denied. An API
// request presents an issued token, so it is denied where token issuance is.
func (o Op) stateOps() state.Ops {
	switch o {
	case OpLogin:
		return state.OpLogin
	case OpToken, OpAPI:
		return state.OpToken
	case OpBackup:
		return state.OpBackup
	case OpRestore:
		return state.OpRestore
	}
	return 0
}

// appsApply reports whether app and project deactivation applies to the op: apps are OIDC/API clients, so they
// matter for login, token and API requests, not for backup jobs.
func (o Op) appsApply() bool { return o == OpLogin || o == OpToken || o == OpAPI }

// StalenessPolicy says, per op, how long the replica may have been out of contact with etcd before requests of
// that op are denied (fail-closed). An op without an entry serves the last known state however stale it is
// (the default). It implements flag.Value with the syntax of ParseStalenessPolicy.
type StalenessPolicy map[Op]time.Duration

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
		var ops []Op
		if strings.EqualFold(strings.TrimSpace(name), "all") {
			ops = []Op{OpLogin, OpToken, OpBackup, OpRestore, OpAPI}
		} else {
			op, err := ParseOp(strings.TrimSpace(name))
			if err != nil {
				return fmt.Errorf("staleness policy %q: %w", item, err)
			}
			if op == OpOther {
				return fmt.Errorf("staleness policy %q: op other is never denied", item)
			}
			ops = []Op{op}
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
	for op := OpLogin; op < numOps; op++ {
		if d, ok := p[op]; ok {
			parts = append(parts, op.String()+"=deny-after:"+d.String())
		}
	}
	return strings.Join(parts, ",")
}

// validate rejects entries a hand-built map may hold that the parser would not produce.
func (p StalenessPolicy) validate() error {
	ops := make([]Op, 0, len(p))
	for op := range p {
		ops = append(ops, op)
	}
	slices.Sort(ops)
	for _, op := range ops {
		switch d := p[op]; {
		case op == OpOther || op >= numOps:
			return fmt.Errorf("staleness policy: op %s cannot have a deny-after bound", op)
		case d <= 0:
			return fmt.Errorf("staleness policy: op %s: deny-after needs a positive duration, got %s", op, d)
		}
	}
	return nil
}
