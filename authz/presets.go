package authz

import "fmt"

// PresetRoute describes one route of a preset, so that proxy configurations (package envoy, deploy/nginx) are
// generated from the very table the classifier uses and cannot drift from it.
type PresetRoute struct {
	Name            string
	Methods         []string // upper case; empty = any
	Pattern         string   // path pattern, see the rules file documentation
	CaseInsensitive bool
	Action          Action
	// BodyDecides marks routes whose op deact reads from the body (Commvault CreateTask): a proxy should not
	// fix an op for them, and should forward the body.
	BodyDecides bool
	// ReadsBody marks routes where deact reads the body (OAuth parameters, login names, tasks).
	ReadsBody bool
}

// PresetRoutes returns the routes of a preset (PresetZITADEL or PresetCommvault), in matching order.
func PresetRoutes(preset string) ([]PresetRoute, error) {
	var routes []*route
	switch preset {
	case PresetZITADEL:
		routes = zitadelRoutes()
	case PresetCommvault:
		routes = commvaultRoutes()
	default:
		return nil, fmt.Errorf("unknown preset %q (want %s or %s)", preset, PresetZITADEL, PresetCommvault)
	}
	out := make([]PresetRoute, len(routes))
	for i, r := range routes {
		out[i] = PresetRoute{
			Name: r.name, Methods: r.methods, Pattern: r.pat.raw, CaseInsensitive: r.pat.fold, Action: r.op,
			BodyDecides: r.body == bodyCommvaultTask, ReadsBody: r.oauth || r.body != bodyNone,
		}
	}
	return out, nil
}
