package envoy

import "fmt"

// Route is one route of a preset: what Envoy matches and the op it tells deact through context_extensions.
// The tables mirror deact's classifier presets (authz); a test checks that both agree on every route.
type Route struct {
	Name            string
	Methods         []string // empty: any method
	Pattern         string   // deact path pattern
	CaseInsensitive bool
	Op              string // context_extensions "op"
	Body            bool   // deact reads the body (OAuth parameters, login names, Commvault tasks)
}

// Presets lists the preset names.
var Presets = []string{"zitadel", "commvault"}

// PresetRoutes returns the routes of a preset.
func PresetRoutes(preset string) ([]Route, error) {
	switch preset {
	case "zitadel":
		post, both := []string{"POST"}, []string{"GET", "POST"}
		return []Route{
			{Name: "zitadel-authorize", Methods: both, Pattern: "/oauth/v2/authorize", Op: "login", Body: true},
			{Name: "zitadel-token", Methods: post, Pattern: "/oauth/v2/token", Op: "token", Body: true},
			{Name: "zitadel-introspect", Methods: post, Pattern: "/oauth/v2/introspect", Op: "token", Body: true},
			{Name: "zitadel-device", Methods: post, Pattern: "/oauth/v2/device_authorization", Op: "login", Body: true},
			{Name: "zitadel-revoke", Pattern: "/oauth/v2/revoke", Op: "other"},
			{Name: "zitadel-end-session", Pattern: "/oidc/v1/end_session", Op: "other"},
			{Name: "zitadel-userinfo", Pattern: "/oidc/v1/userinfo", Op: "api"},
			{Name: "zitadel-login-ui", Pattern: "/ui/login/**", Op: "login", Body: true},
			{Name: "zitadel-login-v2", Pattern: "/ui/v2/login/**", Op: "login", Body: true},
			{Name: "zitadel-sessions", Pattern: "/v2/sessions/**", Op: "login", Body: true},
			{Name: "zitadel-sessions-beta", Pattern: "/v2beta/sessions/**", Op: "login", Body: true},
			{Name: "zitadel-oidc-auth-requests", Pattern: "/v2/oidc/auth_requests/**", Op: "login"},
			{Name: "zitadel-saml-sso", Pattern: "/saml/v2/SSO", Op: "login"},
			{Name: "zitadel-management-api", Pattern: "/management/v1/**", Op: "api"},
			{Name: "zitadel-auth-api", Pattern: "/auth/v1/**", Op: "api"},
			{Name: "zitadel-admin-api", Pattern: "/admin/v1/**", Op: "api"},
			{Name: "zitadel-v2-api", Pattern: "/v2/**", Op: "api"},
		}, nil
	case "commvault":
		post := []string{"POST"}
		return []Route{
			{Name: "commvault-login", Methods: post, Pattern: "/**/Login", CaseInsensitive: true, Op: "login", Body: true},
			{Name: "commvault-backup", Methods: post, Pattern: "/**/action/backup", CaseInsensitive: true, Op: "backup"},
			{Name: "commvault-restore", Methods: post, Pattern: "/**/action/restore", CaseInsensitive: true, Op: "restore"},
			{Name: "commvault-retrieve-to-client", Methods: post, Pattern: "/**/retrieveToClient", CaseInsensitive: true, Op: "restore"},
			// CreateTask is a backup or a restore by its body: deact reads it, so no op is fixed here.
			{Name: "commvault-create-task", Methods: post, Pattern: "/**/CreateTask", CaseInsensitive: true, Op: "", Body: true},
		}, nil
	}
	return nil, fmt.Errorf("unknown preset %q (want zitadel or commvault)", preset)
}
