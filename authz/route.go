package authz

import (
	"fmt"
	"strings"

	"github.com/deact/deact/state"
)

// Surface is the API family a route belongs to; it decides how a deny is shaped for the client.
type Surface uint8

const (
	SurfaceGeneric        Surface = iota // JSON {"error":"access_denied",...}
	SurfaceOAuthAuthorize                // OAuth 2 authorization endpoint (RFC 6749 §4.1.2.1)
	SurfaceOAuthToken                    // OAuth 2 token, introspection and device endpoints (RFC 6749 §5.2)
	SurfaceZITADEL                       // ZITADEL APIs: {"code":7,"message":...,"details":[...]}
	SurfaceCommvault                     // Commvault REST: errorCode/errorMessage, JSON or XML by Accept
	numSurfaces
)

var surfaceNames = [numSurfaces]string{"generic", "oauth-authorize", "oauth-token", "zitadel", "commvault"}

// String returns the surface's name as used in rules files.
func (s Surface) String() string {
	if s < numSurfaces {
		return surfaceNames[s]
	}
	return "unknown"
}

func parseSurface(s string) (Surface, error) {
	if s == "" {
		return SurfaceGeneric, nil
	}
	for i, n := range surfaceNames {
		if strings.EqualFold(s, n) {
			return Surface(i), nil
		}
	}
	return 0, fmt.Errorf("unknown surface %q (want one of %s)", s, strings.Join(surfaceNames[:], ", "))
}

// bodyKind names the preset-specific reading of a request body a route needs.
type bodyKind uint8

const (
	bodyNone           bodyKind = iota
	bodyLoginName               // login names (username, loginName, domain) in a JSON, XML or form body
	bodyCommvaultTask           // a Commvault CreateTask: the subtask type decides backup or restore
	bodyCommvaultLogin          // Commvault Login: login names in the body or the Username header
)

// route is one compiled rule: a method and path pattern, the op it implies and where its subjects are. Routes
// are immutable after New.
type route struct {
	name    string
	methods []string // upper case; empty = any
	pat     pattern
	op      Action
	mask    state.Ops // org flags that deny; usually op.stateOps()
	surface Surface
	oauth   bool // read OAuth parameters (client_id, scope, assertions) whatever the op
	body    bodyKind
	sources []source // custom rules
}

// source is where a custom rule finds one subject.
type source struct {
	kind SubjectKind
	from sourceFrom
	name string // header name (lower case), query/form key, claim name
	idx  int    // capture index for path sources
	// login marks a login-name source ("domain\user", "user@domain"): the domain is looked up.
	login bool
}

type sourceFrom uint8

const (
	fromHeader sourceFrom = iota
	fromQuery
	fromPath
	fromForm
	fromJWT
)

var fromNames = [...]string{"header", "query", "path", "form", "jwt"}

func (r *route) matchMethod(m string) bool {
	if len(r.methods) == 0 {
		return true
	}
	for _, x := range r.methods {
		if x == m || strings.EqualFold(x, m) { // methods are sent upper case: most compare equal at once
			return true
		}
	}
	return false
}

// matchRoute returns the first route that matches, rules before presets.
func (a *Authorizer) matchRoute(method, path string, m *match) *route {
	first := firstSegmentOf(path)
	for _, r := range a.routes {
		if r.matchMethod(method) && r.pat.matchFirst(path, first, m) {
			return r
		}
	}
	return nil
}

// presetRoute builds a preset route; patterns are constants, so a compile error is a programming error caught
// by the tests.
func presetRoute(name, methods, pat string, fold bool, op Action, surface Surface) *route {
	p, err := compilePattern(pat, fold)
	if err != nil {
		panic(fmt.Sprintf("preset %s: pattern %q: %v", name, pat, err))
	}
	r := &route{name: name, pat: p, op: op, mask: op.stateOps(), surface: surface}
	if methods != "" {
		r.methods = strings.Split(methods, ",")
	}
	return r
}

// Preset names for Config.Presets.
const (
	PresetZITADEL   = "zitadel"
	PresetCommvault = "commvault"
)

// zitadelRoutes are ZITADEL's OIDC, login and API surfaces. Paths are case-sensitive, as ZITADEL's are.
func zitadelRoutes() []*route {
	authorize := presetRoute("zitadel-authorize", "GET,POST", "/oauth/v2/authorize", false, ActionLogin, SurfaceOAuthAuthorize)
	// An authorize request starts a login that ends in tokens: an org disabled for either is denied.
	authorize.mask = state.OpLogin | state.OpToken
	authorize.oauth = true
	token := presetRoute("zitadel-token", "POST", "/oauth/v2/token", false, ActionToken, SurfaceOAuthToken)
	token.oauth = true
	// Introspection by a deactivated client's app or org is denied; the introspected token is not ours to judge.
	introspect := presetRoute("zitadel-introspect", "POST", "/oauth/v2/introspect", false, ActionToken, SurfaceOAuthToken)
	introspect.oauth = true
	device := presetRoute("zitadel-device", "POST", "/oauth/v2/device_authorization", false, ActionLogin, SurfaceOAuthToken)
	device.oauth = true
	// Userinfo takes the access token from the form or the query too (RFC 6750 §2.2, 2.3), as zitadel/oidc does.
	userinfo := presetRoute("zitadel-userinfo", "", "/oidc/v1/userinfo", false, ActionAPI, SurfaceOAuthToken)
	userinfo.oauth = true
	loginUI := presetRoute("zitadel-login-ui", "", "/ui/login/**", false, ActionLogin, SurfaceZITADEL)
	loginUI.body = bodyLoginName
	loginUI.oauth = true
	loginV2 := presetRoute("zitadel-login-v2", "", "/ui/v2/login/**", false, ActionLogin, SurfaceZITADEL)
	loginV2.body = bodyLoginName
	sessions := presetRoute("zitadel-sessions", "", "/v2/sessions/**", false, ActionLogin, SurfaceZITADEL)
	sessions.body = bodyLoginName
	sessionsBeta := presetRoute("zitadel-sessions-beta", "", "/v2beta/sessions/**", false, ActionLogin, SurfaceZITADEL)
	sessionsBeta.body = bodyLoginName
	// gRPC, gRPC-Web and Connect calls of the same service: login names in the protobuf or JSON message.
	sessionsGRPC := presetRoute("zitadel-sessions-grpc", "", "/zitadel.session.v2*.SessionService/*", false, ActionLogin, SurfaceZITADEL)
	sessionsGRPC.body = bodyLoginName
	authRequests := presetRoute("zitadel-oidc-auth-requests", "", "/v2/oidc/auth_requests/**", false, ActionLogin, SurfaceZITADEL)
	saml := presetRoute("zitadel-saml-sso", "", "/saml/v2/SSO", false, ActionLogin, SurfaceZITADEL)
	return []*route{
		authorize, token, introspect, device,
		// Revocation and logout stay open: a deactivated org must still be able to end sessions.
		presetRoute("zitadel-revoke", "", "/oauth/v2/revoke", false, ActionOther, SurfaceOAuthToken),
		presetRoute("zitadel-end-session", "", "/oidc/v1/end_session", false, ActionOther, SurfaceGeneric),
		userinfo,
		loginUI, loginV2, sessions, sessionsBeta, sessionsGRPC, authRequests, saml,
		presetRoute("zitadel-management-api", "", "/management/v1/**", false, ActionAPI, SurfaceZITADEL),
		presetRoute("zitadel-auth-api", "", "/auth/v1/**", false, ActionAPI, SurfaceZITADEL),
		presetRoute("zitadel-admin-api", "", "/admin/v1/**", false, ActionAPI, SurfaceZITADEL),
		presetRoute("zitadel-v2-api", "", "/v2/**", false, ActionAPI, SurfaceZITADEL),
		presetRoute("zitadel-v2beta-api", "", "/v2beta/**", false, ActionAPI, SurfaceZITADEL),
		presetRoute("zitadel-v3alpha-api", "", "/v3alpha/**", false, ActionAPI, SurfaceZITADEL),
		presetRoute("zitadel-grpc-api", "", "/zitadel.*/*", false, ActionAPI, SurfaceZITADEL),
	}
}

// commvaultRoutes are Commvault's REST API under any web service root ("/webconsole/api",
// "/SearchSvc/CVWebService.svc", "/commandcenter/api"), case-insensitive as Commvault's paths are:
//
//   - POST {webservice}/Login: login; the user's org comes from the login name in the body (JSON "username" and
//     "domain", or the attributes of the XML DM2ContentIndexing_CheckCredentialReq) or a Username header,
//     "domain\user" or "user@domain", mapped through org domains.
//   - POST {webservice}/.../action/backup (Subclient, Backupset, Client): backup.
//   - POST {webservice}/.../action/restore and POST {webservice}/retrieveToClient: restore.
//   - POST {webservice}/CreateTask: backup or restore by the subtask in the body (subTaskType or operationType
//     BACKUP or RESTORE, or TMMsg subTaskType numbers 2 and 3); without a body (nginx does not forward it) both
//     backup and restore flags deny, so forward the body for restores of backup-disabled orgs to pass.
//
// Commvault's Authtoken is opaque: the org of a backup or restore request comes from the route (context
// extension org_id or X-Deact-Org-Id, e.g. per tenant host), a custom rule, or a JWT.
func commvaultRoutes() []*route {
	login := presetRoute("commvault-login", "POST", "/**/Login", true, ActionLogin, SurfaceCommvault)
	login.body = bodyCommvaultLogin
	task := presetRoute("commvault-create-task", "POST", "/**/CreateTask", true, ActionBackup, SurfaceCommvault)
	task.body = bodyCommvaultTask
	task.mask = state.OpBackup | state.OpRestore
	return []*route{
		login,
		presetRoute("commvault-backup", "POST", "/**/action/backup", true, ActionBackup, SurfaceCommvault),
		presetRoute("commvault-restore", "POST", "/**/action/restore", true, ActionRestore, SurfaceCommvault),
		presetRoute("commvault-retrieve-to-client", "POST", "/**/retrieveToClient", true, ActionRestore, SurfaceCommvault),
		task,
	}
}
