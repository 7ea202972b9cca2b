package envoy

import "github.com/deact/deact/authz"

// Route is one route of a preset: what Envoy matches and the op it tells deact through context_extensions.
type Route struct {
	Name            string
	Methods         []string // empty: any method
	Pattern         string   // deact path pattern
	CaseInsensitive bool
	Op              string // context_extensions "op"; empty when deact reads the op from the body
	Body            bool   // deact reads the body (OAuth parameters, login names, Commvault tasks)
}

// Presets lists the preset names.
var Presets = []string{authz.PresetZITADEL, authz.PresetCommvault}

// PresetRoutes returns the routes of a preset, taken from deact's classifier (authz.PresetRoutes) so the
// proxy and the classifier always agree.
func PresetRoutes(preset string) ([]Route, error) {
	prs, err := authz.PresetRoutes(preset)
	if err != nil {
		return nil, err
	}
	out := make([]Route, len(prs))
	for i, p := range prs {
		r := Route{Name: p.Name, Methods: p.Methods, Pattern: p.Pattern, CaseInsensitive: p.CaseInsensitive, Body: p.ReadsBody}
		if !p.BodyDecides {
			r.Op = p.Action.String()
		}
		out[i] = r
	}
	return out, nil
}
