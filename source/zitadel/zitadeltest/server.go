// Package zitadeltest is a ZITADEL-shaped HTTP server for tests and benchmarks: it holds orgs, projects, apps and
// org domains in memory, serves the v1 list APIs deact's ZITADEL source reads, and produces the Actions v2 event
// deliveries (body and ZITADEL-Signature header) ZITADEL would send when something changes.
//
// Where each answer's shape comes from (ZITADEL's published protos, rendered by its grpc-gateway as protojson:
// camelCase names, 64-bit integers as strings, enums by name, RFC 3339 timestamps):
//   - POST /admin/v1/orgs/_search: zitadel.admin.v1.AdminService/ListOrgs (admin.proto ListOrgsRequest
//     {query: zitadel.v1.ListQuery{offset uint64, limit uint32, asc bool}} → ListOrgsResponse{details:
//     zitadel.v1.ListDetails{totalResult uint64, viewTimestamp}, result: [zitadel.org.v1.Org{id, details:
//     zitadel.v1.ObjectDetails{sequence uint64, creationDate, changeDate, resourceOwner}, state: OrgState
//     ORG_STATE_ACTIVE|ORG_STATE_INACTIVE, name, primaryDomain}]}). Removed orgs are not listed.
//   - GET /management/v1/orgs/me with x-zitadel-orgid: ManagementService/GetMyOrg → {org: Org}; 404 once removed.
//   - POST /management/v1/orgs/me/domains/_search: ManagementService/ListOrgDomains → {details, result:
//     [zitadel.org.v1.Domain{orgId, details, domainName, isVerified, isPrimary, validationType}]}.
//   - POST /management/v1/projects/_search: ManagementService/ListProjects → {details, result:
//     [zitadel.project.v1.Project{id, details, name, state: PROJECT_STATE_ACTIVE|PROJECT_STATE_INACTIVE}]}.
//   - POST /management/v1/projects/{projectId}/apps/_search: ManagementService/ListApps → {details, result:
//     [zitadel.app.v1.App{id, details, state: APP_STATE_ACTIVE|APP_STATE_INACTIVE, name, oidcConfig{clientId} |
//     apiConfig{clientId} | samlConfig{}}]}.
//   - POST /oauth/v2/token with grant_type urn:ietf:params:oauth:grant-type:jwt-bearer: ZITADEL's JWT-profile grant
//     for service accounts (docs "Private key JWT" for service users): an RS256 assertion signed with the key of
//     the downloaded key file {"type":"serviceaccount","keyId","key","userId"}, iss = sub = userId, aud = the
//     issuer URL, answered {"access_token","token_type":"Bearer","expires_in"}; errors {"error","error_description"}.
//   - Errors: google.rpc.Status as the gateway writes it, {"code": 16, "message": "...", "details": []} with HTTP
//     401 (unauthenticated), 403 (code 7, permission denied), 404 (code 5).
//   - Event deliveries: internal/repository/execution/queue.go ContextInfoEvent (aggregateID, aggregateType,
//     resourceOwner, instanceID, version, sequence as a JSON number, event_type, created_at RFC 3339 nano, userID,
//     event_payload: the event's JSON as a Go []byte, so base64), with payloads from
//     internal/repository/project (application.go {"appId"}, oidc_config.go/api_config.go {"appId","clientId"}).
//     The signature is zitadel-go pkg/actions/signing.go's: "t=<unix>,v1=<hex HMAC-SHA256(key, t + "." + body)>",
//     one v1 per signing key.
//
// Sequences follow ZITADEL v2.x+: each aggregate (an org, a project with its apps) numbers its own events from 1;
// a list answer's details.sequence is the sequence of the last event the projection reduced for that object, so it
// can lag behind events of the same aggregate that the projection ignores (Server.Touch makes such events).
package zitadeltest

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Object states, as ZITADEL's protos name them without the type prefix.
const (
	Active   = "ACTIVE"
	Inactive = "INACTIVE"
	removed  = "REMOVED"
)

// App kinds.
const (
	OIDC = "oidc"
	API  = "api"
	SAML = "saml"
)

// MaxLimit is the largest page the list APIs return, as ZITADEL's default MaxQueryLimit (1000).
const MaxLimit = 1000

// InstanceID is the instance every event names.
const InstanceID = "250000000000000001"

// Server is a running fake ZITADEL. It is safe for concurrent use; every change returns the event ZITADEL would
// deliver for it.
type Server struct {
	URL   string
	Token string // the bearer token the APIs accept

	srv      *httptest.Server
	requests atomic.Int64

	mu       sync.Mutex
	nextID   uint64
	aggSeq   map[string]uint64 // per aggregate
	orgs     []*org
	orgByID  map[string]*org
	projByID map[string]*project
	appByID  map[string]*app
	fail     int             // HTTP status every API answers with, 0 for none
	forbid   string          // an org whose listings answer 403
	hidden   map[string]bool // orgs left out of the admin listing (a glitch, not a removal)
	saKeys   map[string]saKey
	issued   map[string]bool // access tokens from the JWT-profile grant
}

type saKey struct {
	userID string
	pub    *rsa.PublicKey
}

type object struct {
	id         string
	name       string
	state      string
	seq        uint64
	created    time.Time
	changed    time.Time
	resOwner   string
	aggregate  string
	removedSeq uint64
}

type org struct {
	object
	domains  []domain
	projects []*project
}

type domain struct {
	name    string
	seq     uint64
	primary bool
}

type project struct {
	object
	apps []*app
}

type app struct {
	object
	projectID string
	kind      string
	clientID  string
}

// Event is one delivery of an Actions v2 event execution: the body ZITADEL posts to the target.
type Event struct {
	AggregateID   string `json:"aggregateID,omitempty"`
	AggregateType string `json:"aggregateType,omitempty"`
	ResourceOwner string `json:"resourceOwner,omitempty"`
	InstanceID    string `json:"instanceID,omitempty"`
	Version       string `json:"version,omitempty"`
	Sequence      uint64 `json:"sequence,omitempty"`
	EventType     string `json:"event_type,omitempty"`
	CreatedAt     string `json:"created_at,omitempty"`
	UserID        string `json:"userID,omitempty"`
	EventPayload  []byte `json:"event_payload,omitempty"`
}

// Body is the JSON ZITADEL posts.
func (e Event) Body() []byte {
	b, _ := json.Marshal(e)
	return b
}

// Sign returns the ZITADEL-Signature header value for body at t, one v1 value per key.
func Sign(t time.Time, body []byte, keys ...string) string {
	parts := []string{"t=" + strconv.FormatInt(t.Unix(), 10)}
	for _, k := range keys {
		m := hmac.New(sha256.New, []byte(k))
		m.Write([]byte(strconv.FormatInt(t.Unix(), 10)))
		m.Write([]byte("."))
		m.Write(body)
		parts = append(parts, "v1="+hex.EncodeToString(m.Sum(nil)))
	}
	return strings.Join(parts, ",")
}

// New starts a server, stopped at Close.
func New() *Server {
	s := &Server{
		Token: "zitadel-test-pat", nextID: 300000000000000000,
		aggSeq: map[string]uint64{}, hidden: map[string]bool{}, saKeys: map[string]saKey{}, issued: map[string]bool{}, orgByID: map[string]*org{}, projByID: map[string]*project{}, appByID: map[string]*app{},
	}
	s.srv = httptest.NewServer(http.HandlerFunc(s.serve))
	s.URL = s.srv.URL
	return s
}

// Close stops the server; afterwards it is unreachable.
func (s *Server) Close() { s.srv.Close() }

// Requests is the number of API requests served so far.
func (s *Server) Requests() int64 { return s.requests.Load() }

// Fail makes every API answer with status (401, 403, 503, ...); 0 restores normal answers.
func (s *Server) Fail(status int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fail = status
}

// Forbid makes the listings of one org answer 403 (a service account that lost its grant there); "" undoes it.
func (s *Server) Forbid(orgID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.forbid = orgID
}

func (s *Server) id() string {
	s.nextID++
	return strconv.FormatUint(s.nextID, 10)
}

// event appends an event to aggregate agg and returns its delivery. Callers hold mu.
func (s *Server) event(aggType, agg, owner, typ string, payload any) Event {
	s.aggSeq[agg]++
	var p []byte
	if payload != nil {
		p, _ = json.Marshal(payload)
	}
	return Event{
		AggregateID: agg, AggregateType: aggType, ResourceOwner: owner, InstanceID: InstanceID, Version: "v1",
		Sequence: s.aggSeq[agg], EventType: typ, CreatedAt: time.Now().UTC().Format(time.RFC3339Nano),
		UserID: "250000000000000002", EventPayload: p,
	}
}

func (o *object) reduce(ev Event, state string) {
	o.seq, o.changed = ev.Sequence, time.Now().UTC()
	if state != "" {
		o.state = state
	}
}

// AddOrg creates an active org with its domains (the first is primary) and returns its ID and events.
func (s *Server) AddOrg(name string, domains ...string) (string, []Event) {
	s.mu.Lock()
	defer s.mu.Unlock()
	id := s.id()
	o := &org{object: object{id: id, name: name, state: Active, created: time.Now().UTC(), resOwner: id, aggregate: id}}
	evs := []Event{s.event("org", id, id, "org.added", map[string]string{"name": name})}
	o.reduce(evs[0], "")
	for i, d := range domains {
		ev := s.event("org", id, id, "org.domain.added", map[string]string{"domain": d})
		evs = append(evs, ev)
		o.domains = append(o.domains, domain{name: d, seq: ev.Sequence, primary: i == 0})
		if i == 0 {
			pev := s.event("org", id, id, "org.domain.primary.set", map[string]string{"domain": d})
			evs = append(evs, pev)
			o.reduce(pev, "")
		}
	}
	s.orgs = append(s.orgs, o)
	s.orgByID[id] = o
	return id, evs
}

// AddDomain adds a domain to an org.
func (s *Server) AddDomain(orgID, name string) Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	o := s.orgByID[orgID]
	ev := s.event("org", orgID, orgID, "org.domain.added", map[string]string{"domain": name})
	o.domains = append(o.domains, domain{name: name, seq: ev.Sequence})
	return ev
}

// AddProject creates an active project in an org.
func (s *Server) AddProject(orgID, name string) (string, Event) {
	s.mu.Lock()
	defer s.mu.Unlock()
	o := s.orgByID[orgID]
	id := s.id()
	p := &project{object: object{id: id, name: name, state: Active, created: time.Now().UTC(), resOwner: orgID, aggregate: id}}
	ev := s.event("project", id, orgID, "project.added", map[string]string{"name": name})
	p.reduce(ev, "")
	o.projects = append(o.projects, p)
	s.projByID[id] = p
	return id, ev
}

// AddApp creates an active app of kind OIDC, API or SAML in a project and returns its ID, its client ID (empty
// for SAML) and the events: project.application.added, then the config-added event.
func (s *Server) AddApp(projectID, name, kind string) (appID, clientID string, evs []Event) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.projByID[projectID]
	appID = s.id()
	a := &app{object: object{id: appID, name: name, state: Active, created: time.Now().UTC(), resOwner: p.resOwner, aggregate: projectID},
		projectID: projectID, kind: kind}
	evs = append(evs, s.event("project", projectID, p.resOwner, "project.application.added", map[string]string{"appId": appID, "name": name}))
	a.reduce(evs[0], "")
	if kind != SAML {
		clientID = appID + "@" + strings.ToLower(strings.ReplaceAll(p.name, " ", "-"))
		typ := "project.application.config." + kind + ".added"
		ev := s.event("project", projectID, p.resOwner, typ, map[string]any{"appId": appID, "clientId": clientID, "version": 0})
		a.clientID = clientID
		a.reduce(ev, "")
		evs = append(evs, ev)
	} else {
		ev := s.event("project", projectID, p.resOwner, "project.application.config.saml.added", map[string]any{"appId": appID, "entityId": "https://sp.example/" + appID})
		a.reduce(ev, "")
		evs = append(evs, ev)
	}
	p.apps = append(p.apps, a)
	s.appByID[appID] = a
	return appID, clientID, evs
}

// Populate creates orgs×projects×apps objects quickly (OIDC apps, one domain per org) and returns the org IDs.
// It makes no events: it stands for a ZITADEL that existed before deact followed it.
func (s *Server) Populate(orgs, projectsPerOrg, appsPerProject int) []string {
	ids := make([]string, 0, orgs)
	for i := range orgs {
		id, _ := s.AddOrg(fmt.Sprintf("org-%d", i), fmt.Sprintf("org-%d.example.com", i))
		ids = append(ids, id)
		for j := range projectsPerOrg {
			pid, _ := s.AddProject(id, fmt.Sprintf("p%d", j))
			for k := range appsPerProject {
				s.AddApp(pid, fmt.Sprintf("app-%d", k), OIDC)
			}
		}
	}
	return ids
}

// Hide leaves an org out of the admin org listing (or puts it back), without any event: a listing glitch such
// as a projection being rebuilt, not a removal.
func (s *Server) Hide(orgID string, hidden bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.hidden[orgID] = hidden
}

// Touch appends an event to an org's aggregate that the org projection does not reduce (a member added), so the
// aggregate's sequence moves past the org's details.sequence.
func (s *Server) Touch(orgID string) Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.event("org", orgID, orgID, "org.member.added", map[string]string{"userId": "1", "roles": "ORG_OWNER"})
}

// SetOrgState deactivates (Inactive) or reactivates (Active) an org.
func (s *Server) SetOrgState(id, state string) Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	o := s.orgByID[id]
	ev := s.event("org", id, id, map[string]string{Active: "org.reactivated", Inactive: "org.deactivated"}[state], nil)
	o.reduce(ev, state)
	return ev
}

// RemoveOrg removes an org with its projects and apps; it vanishes from every listing.
func (s *Server) RemoveOrg(id string) Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	o := s.orgByID[id]
	ev := s.event("org", id, id, "org.removed", map[string]string{"name": o.name})
	o.reduce(ev, removed)
	s.orgs = slices.DeleteFunc(s.orgs, func(x *org) bool { return x == o })
	return ev
}

// SetProjectState deactivates or reactivates a project.
func (s *Server) SetProjectState(id, state string) Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.projByID[id]
	ev := s.event("project", id, p.resOwner, map[string]string{Active: "project.reactivated", Inactive: "project.deactivated"}[state], nil)
	p.reduce(ev, state)
	return ev
}

// RemoveProject removes a project and its apps.
func (s *Server) RemoveProject(id string) Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.projByID[id]
	ev := s.event("project", id, p.resOwner, "project.removed", map[string]string{"name": p.name})
	p.reduce(ev, removed)
	o := s.orgByID[p.resOwner]
	o.projects = slices.DeleteFunc(o.projects, func(x *project) bool { return x == p })
	return ev
}

// SetAppState deactivates or reactivates an app; the event is on its project's aggregate.
func (s *Server) SetAppState(appID, state string) Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.appByID[appID]
	typ := map[string]string{Active: "project.application.reactivated", Inactive: "project.application.deactivated"}[state]
	ev := s.event("project", a.projectID, a.resOwner, typ, map[string]string{"appId": appID})
	a.reduce(ev, state)
	return ev
}

// RemoveApp removes an app.
func (s *Server) RemoveApp(appID string) Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.appByID[appID]
	ev := s.event("project", a.projectID, a.resOwner, "project.application.removed", map[string]string{"appId": appID})
	a.reduce(ev, removed)
	p := s.projByID[a.projectID]
	p.apps = slices.DeleteFunc(p.apps, func(x *app) bool { return x == a })
	return ev
}

// Wire types of the answers (see the package doc for their protos).
type (
	listQuery struct {
		Offset json.Number `json:"offset"` // uint64: protojson accepts "10" and 10
		Limit  uint32      `json:"limit"`
		Asc    bool        `json:"asc"`
	}
	listRequest struct {
		Query listQuery `json:"query"`
	}
	objectDetails struct {
		Sequence      string `json:"sequence"`
		CreationDate  string `json:"creationDate"`
		ChangeDate    string `json:"changeDate"`
		ResourceOwner string `json:"resourceOwner"`
	}
	listDetails struct {
		TotalResult   string `json:"totalResult"`
		ViewTimestamp string `json:"viewTimestamp"`
	}
	orgJSON struct {
		ID            string        `json:"id"`
		Details       objectDetails `json:"details"`
		State         string        `json:"state"`
		Name          string        `json:"name"`
		PrimaryDomain string        `json:"primaryDomain,omitempty"`
	}
	domainJSON struct {
		OrgID          string        `json:"orgId"`
		Details        objectDetails `json:"details"`
		DomainName     string        `json:"domainName"`
		IsVerified     bool          `json:"isVerified"`
		IsPrimary      bool          `json:"isPrimary"`
		ValidationType string        `json:"validationType"`
	}
	projectJSON struct {
		ID      string        `json:"id"`
		Details objectDetails `json:"details"`
		Name    string        `json:"name"`
		State   string        `json:"state"`
	}
	clientConfig struct {
		ClientID string `json:"clientId"`
	}
	appJSON struct {
		ID         string         `json:"id"`
		Details    objectDetails  `json:"details"`
		State      string         `json:"state"`
		Name       string         `json:"name"`
		OIDCConfig *clientConfig  `json:"oidcConfig,omitempty"`
		APIConfig  *clientConfig  `json:"apiConfig,omitempty"`
		SAMLConfig map[string]any `json:"samlConfig,omitempty"`
	}
)

func (o *object) details(seq uint64) objectDetails {
	return objectDetails{Sequence: strconv.FormatUint(seq, 10), CreationDate: o.created.Format(time.RFC3339Nano),
		ChangeDate: o.changed.Format(time.RFC3339Nano), ResourceOwner: o.resOwner}
}

func (o *org) json() orgJSON {
	j := orgJSON{ID: o.id, Details: o.details(o.seq), State: "ORG_STATE_" + o.state, Name: o.name}
	for _, d := range o.domains {
		if d.primary {
			j.PrimaryDomain = d.name
		}
	}
	return j
}

type rpcStatus struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
	Details []any  `json:"details"`
}

func writeError(w http.ResponseWriter, status int, msg string) {
	code := map[int]int{400: 3, 401: 16, 403: 7, 404: 5, 503: 14}[status]
	if code == 0 {
		code = 13
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(rpcStatus{Code: code, Message: msg, Details: []any{}})
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

// ServiceAccountKey makes a key for a new service account and returns its key file, as the console downloads it.
func (s *Server) ServiceAccountKey() []byte {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	keyID, userID := s.id(), s.id()
	s.saKeys[keyID] = saKey{userID: userID, pub: &k.PublicKey}
	pemKey := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k)})
	b, _ := json.Marshal(map[string]string{"type": "serviceaccount", "keyId": keyID, "key": string(pemKey), "userId": userID})
	return b
}

// RevokeIssued invalidates every access token the JWT-profile grant issued (they expired, say).
func (s *Server) RevokeIssued() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.issued = map[string]bool{}
}

func (s *Server) tokenGrant(w http.ResponseWriter, r *http.Request) {
	oauthErr := func(status int, code, desc string) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(map[string]string{"error": code, "error_description": desc})
	}
	if err := r.ParseForm(); err != nil || r.PostForm.Get("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer" {
		oauthErr(400, "unsupported_grant_type", "want the jwt-bearer grant")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var key saKey
	claims := jwt.RegisteredClaims{}
	_, err := jwt.ParseWithClaims(r.PostForm.Get("assertion"), &claims, func(t *jwt.Token) (any, error) {
		kid, _ := t.Header["kid"].(string)
		k, ok := s.saKeys[kid]
		if !ok {
			return nil, fmt.Errorf("unknown key %q", kid)
		}
		key = k
		return k.pub, nil
	}, jwt.WithValidMethods([]string{"RS256"}), jwt.WithAudience(s.URL), jwt.WithExpirationRequired(), jwt.WithIssuedAt())
	if err != nil || claims.Issuer != key.userID || claims.Subject != key.userID {
		oauthErr(400, "invalid_grant", fmt.Sprintf("assertion invalid: %v", err))
		return
	}
	var rnd [16]byte
	_, _ = rand.Read(rnd[:])
	at := hex.EncodeToString(rnd[:])
	s.issued[at] = true
	writeJSON(w, map[string]any{"access_token": at, "token_type": "Bearer", "expires_in": 43199})
}

func (s *Server) authorized(r *http.Request) bool {
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok {
		return false
	}
	if tok == s.Token {
		return true
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.issued[tok]
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	s.requests.Add(1)
	if r.URL.Path == "/oauth/v2/token" && r.Method == http.MethodPost {
		s.tokenGrant(w, r)
		return
	}
	if !s.authorized(r) {
		writeError(w, http.StatusUnauthorized, "Errors.Token.Invalid (AUTH-7fs1e)")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail != 0 {
		writeError(w, s.fail, "Errors.Internal")
		return
	}
	var req listRequest
	if r.Method == http.MethodPost {
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			writeError(w, http.StatusBadRequest, "invalid body: "+err.Error())
			return
		}
	}
	offset, _ := strconv.ParseUint(req.Query.Offset.String(), 10, 64)
	limit := int(req.Query.Limit)
	if limit == 0 || limit > MaxLimit {
		limit = MaxLimit
	}
	orgID := r.Header.Get("x-zitadel-orgid")
	var o *org
	if strings.HasPrefix(r.URL.Path, "/management/") {
		o = s.orgByID[orgID]
		if o == nil || o.state == removed {
			writeError(w, http.StatusNotFound, "Errors.Org.NotFound")
			return
		}
		if orgID == s.forbid {
			writeError(w, http.StatusForbidden, "No matching permissions found (AUTH-5mWD2)")
			return
		}
	}
	switch {
	case r.Method == http.MethodPost && r.URL.Path == "/admin/v1/orgs/_search":
		listed := make([]*org, 0, len(s.orgs))
		for _, o := range s.orgs {
			if !s.hidden[o.id] {
				listed = append(listed, o)
			}
		}
		writeJSON(w, page(listed, offset, limit, func(o *org) orgJSON { return o.json() }))
	case r.Method == http.MethodGet && r.URL.Path == "/management/v1/orgs/me":
		writeJSON(w, map[string]any{"org": o.json()})
	case r.Method == http.MethodPost && r.URL.Path == "/management/v1/orgs/me/domains/_search":
		writeJSON(w, page(o.domains, offset, limit, func(d domain) domainJSON {
			return domainJSON{OrgID: o.id, Details: o.details(d.seq), DomainName: d.name, IsVerified: true, IsPrimary: d.primary,
				ValidationType: "DOMAIN_VALIDATION_TYPE_UNSPECIFIED"}
		}))
	case r.Method == http.MethodPost && r.URL.Path == "/management/v1/projects/_search":
		writeJSON(w, page(o.projects, offset, limit, func(p *project) projectJSON {
			return projectJSON{ID: p.id, Details: p.details(p.seq), Name: p.name, State: "PROJECT_STATE_" + p.state}
		}))
	case r.Method == http.MethodPost && strings.HasPrefix(r.URL.Path, "/management/v1/projects/") && strings.HasSuffix(r.URL.Path, "/apps/_search"):
		pid := strings.TrimSuffix(strings.TrimPrefix(r.URL.Path, "/management/v1/projects/"), "/apps/_search")
		p := s.projByID[pid]
		if p == nil || p.resOwner != o.id || p.state == removed {
			writeError(w, http.StatusNotFound, "Errors.Project.NotFound")
			return
		}
		writeJSON(w, page(p.apps, offset, limit, func(a *app) appJSON {
			j := appJSON{ID: a.id, Details: a.details(a.seq), State: "APP_STATE_" + a.state, Name: a.name}
			switch a.kind {
			case OIDC:
				j.OIDCConfig = &clientConfig{ClientID: a.clientID}
			case API:
				j.APIConfig = &clientConfig{ClientID: a.clientID}
			default:
				j.SAMLConfig = map[string]any{"metadataUrl": "https://sp.example/" + a.id}
			}
			return j
		}))
	default:
		writeError(w, http.StatusNotFound, "Not Found")
	}
}

type listResponse[T any] struct {
	Details listDetails `json:"details"`
	Result  []T         `json:"result"`
}

func page[E, T any](all []E, offset uint64, limit int, conv func(E) T) listResponse[T] {
	resp := listResponse[T]{Details: listDetails{TotalResult: strconv.Itoa(len(all)), ViewTimestamp: time.Now().UTC().Format(time.RFC3339Nano)}, Result: []T{}}
	for i := offset; i < uint64(len(all)) && len(resp.Result) < limit; i++ {
		resp.Result = append(resp.Result, conv(all[i]))
	}
	return resp
}
