// Package commvaulttest is a Commvault-shaped HTTP server for tests and benchmarks: it holds organizations in
// memory and serves the parts of Commvault's REST web service that deact's Commvault source reads, in JSON or
// in XML as the request's Accept header asks, with logins whose tokens expire.
//
// Where each answer's shape comes from (Commvault's REST API documentation, "REST API - Authentication: POST
// Login", "REST API - GET Organization", "REST API - GET Organization Details", "REST API - POST Deactivate",
// and the cvpysdk SDK's organization.py and commcell.py, which read these answers):
//   - POST {webservice}/Login: body {"username", "password" (base64), "domain", "commserver"} or
//     <DM2ContentIndexing_CheckCredentialReq username=".." password=".."/> → {"token": "QSDK …", "userName",
//     "aliasName", ...} or <DM2ContentIndexing_CheckCredentialResp token="QSDK …" userName=".."/>. A refused login
//     is a 200 with {"errList": [{"errorCode", "errLogMessage"}]}. Tokens expire (the documentation says after 30
//     minutes of inactivity; here after TokenTTL from the login, or at ExpireTokens); an expired or unknown
//     Authtoken is a 401.
//   - GET {webservice}/Organization → {"providers": [{"connectName", "shortName": {"id", "domainName"},
//     "providerGUID", "description", "enabled", "flags", "primaryContacts": [...]}]} (the documented elements;
//     cvpysdk reads connectName and shortName.id). XML: <App_GetOrganizationsResponse><providers connectName=".."
//     ...><shortName id=".." domainName=".."/></providers></App_GetOrganizationsResponse> (scalars as
//     attributes, as Commvault writes XML; the root element's name is not documented and deact does not read it).
//   - GET {webservice}/Organization/{organizationId} → {"organizationInfo": {"organization": {"connectName",
//     "description", "emailDomainNames": [...], "shortName": {"id", "domainName"}, "deactivateOptions":
//     {"disableLogin", "disableBackup", "disableRestore"}}, "organizationProperties": {"primaryDomain",
//     "primaryContacts", "userCount", ...}}} (organization, organizationProperties, emailDomainNames and
//     shortName.domainName as cvpysdk reads them; deactivateOptions with the members POST Deactivate takes, or,
//     with Org.OptionsInProperties, under organizationProperties, where deact's own Commvault-compatible API
//     writes them: the documentation's element table does not settle where they live).
//     JSON writes the options as booleans (as cvpysdk sends them), XML as 1/0 (as the documentation's XML
//     template does). An unknown organization is a 404 with {"errorCode", "errorMessage"}.
//   - Paths are matched case-insensitively, as Commvault's web server does.
package commvaulttest

import (
	"encoding/base64"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// WebService is the web service root the server answers under; Server.URL includes it.
const WebService = "/webconsole/api"

// Server is a fake Commvault. Its methods are safe for concurrent use.
type Server struct {
	URL      string // the web service root, e.g. http://127.0.0.1:1234/webconsole/api
	User     string // the one user that can log in ["admin"]
	Password string // its password ["secret"]

	srv *httptest.Server

	mu       sync.Mutex
	orgs     map[string]*Org
	nextID   int
	tokens   map[string]time.Time // token → expiry
	tokenTTL time.Duration
	fail     int           // answer every API request (login included) with this status; 0: no fault
	delay    time.Duration // hold every request this long first (a hung Commvault)
	latency  time.Duration // per detail request, so concurrency shows
	stall    chan struct{} // the next detail request waits on it after reading the org

	requests, logins, inFlight, maxInFlight, details, lists atomic.Int64
}

// Org is one organization as the server holds it.
type Org struct {
	ID, Name      string
	Alias         string   // shortName.domainName
	EmailDomains  []string // emailDomainNames
	PrimaryDomain string   // organizationProperties.primaryDomain
	Login         bool     // deactivateOptions.disableLogin
	Backup        bool     // deactivateOptions.disableBackup
	Restore       bool     // deactivateOptions.disableRestore
	// Slow delays this organization's detail answers.
	Slow time.Duration
	// OptionsInProperties writes deactivateOptions under organizationProperties instead of organization (where
	// deact's own Commvault-compatible API puts them).
	OptionsInProperties bool
	// RawBackup, when set, is written as disableBackup's value verbatim (a JSON token or an XML attribute
	// value), to test values deact must refuse.
	RawBackup string
}

// New starts a server with one user and tokens that live 30 minutes.
func New() *Server {
	s := &Server{User: "admin", Password: "secret", orgs: map[string]*Org{}, nextID: 1,
		tokens: map[string]time.Time{}, tokenTTL: 30 * time.Minute}
	s.srv = httptest.NewServer(http.HandlerFunc(s.serve))
	s.URL = s.srv.URL + WebService
	return s
}

// Close stops the server; requests in flight are cut.
func (s *Server) Close() { s.srv.CloseClientConnections(); s.srv.Close() }

// Requests counts API requests served (logins included); Logins the successful logins.
func (s *Server) Requests() int64 { return s.requests.Load() }
func (s *Server) Logins() int64   { return s.logins.Load() }

// DetailRequests counts GET /Organization/{id} requests.
func (s *Server) DetailRequests() int64 { return s.details.Load() }

// ListRequests counts GET /Organization requests: one per round.
func (s *Server) ListRequests() int64 { return s.lists.Load() }

// MaxInFlight is the most detail requests served at once since the last ResetMaxInFlight.
func (s *Server) MaxInFlight() int64 { return s.maxInFlight.Load() }
func (s *Server) ResetMaxInFlight()  { s.maxInFlight.Store(0) }

// Fail answers every request with status (0 turns it off).
func (s *Server) Fail(status int) { s.mu.Lock(); s.fail = status; s.mu.Unlock() }

// Delay holds every request d before answering (0 turns it off).
func (s *Server) Delay(d time.Duration) { s.mu.Lock(); s.delay = d; s.mu.Unlock() }

// Latency makes every detail request take d.
func (s *Server) Latency(d time.Duration) { s.mu.Lock(); s.latency = d; s.mu.Unlock() }

// Stall makes the next detail request read its organization, then wait until release is called (or the
// request is cancelled): a slow round whose answer is older than what happens meanwhile.
func (s *Server) Stall() (release func()) {
	ch := make(chan struct{})
	s.mu.Lock()
	s.stall = ch
	s.mu.Unlock()
	var once sync.Once
	return func() { once.Do(func() { close(ch) }) }
}

// SetTokenTTL sets the lifetime of tokens issued from now on.
func (s *Server) SetTokenTTL(d time.Duration) { s.mu.Lock(); s.tokenTTL = d; s.mu.Unlock() }

// ExpireTokens makes every token issued so far invalid.
func (s *Server) ExpireTokens() { s.mu.Lock(); clear(s.tokens); s.mu.Unlock() }

// Token logs in directly and returns a valid token, for tests of a fixed token.
func (s *Server) Token() string { return s.issue() }

// AddOrg adds an active organization with an alias (shortName.domainName) and email domains; it returns its ID.
func (s *Server) AddOrg(name, alias string, emailDomains ...string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	id := strconv.Itoa(s.nextID)
	s.nextID++
	s.orgs[id] = &Org{ID: id, Name: name, Alias: alias, EmailDomains: emailDomains}
	return id
}

// Populate adds n organizations named org-N with alias tN and email domain tN.example; it returns their IDs.
func (s *Server) Populate(n int) []string {
	ids := make([]string, n)
	for i := range n {
		ids[i] = s.AddOrg(fmt.Sprintf("org-%d", i), fmt.Sprintf("t%d", i), fmt.Sprintf("t%d.example", i))
	}
	return ids
}

// Update changes an organization under the server's lock; it reports false for an unknown ID.
func (s *Server) Update(id string, f func(*Org)) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	o, ok := s.orgs[id]
	if ok {
		f(o)
	}
	return ok
}

// Deactivate sets an organization's deactivateOptions, as POST /organization/{id}/action/deactivate does.
func (s *Server) Deactivate(id string, login, backup, restore bool) {
	s.Update(id, func(o *Org) { o.Login, o.Backup, o.Restore = login, backup, restore })
}

// Activate clears them, as POST /organization/{id}/action/activate does.
func (s *Server) Activate(id string) { s.Deactivate(id, false, false, false) }

// Remove deletes an organization.
func (s *Server) Remove(id string) { s.mu.Lock(); delete(s.orgs, id); s.mu.Unlock() }

func (s *Server) issue() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := fmt.Sprintf("QSDK %x%08d", time.Now().UnixNano(), len(s.tokens))
	s.tokens[t] = time.Now().Add(s.tokenTTL)
	return t
}

func (s *Server) valid(token string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	exp, ok := s.tokens[token]
	return ok && time.Now().Before(exp)
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	s.requests.Add(1)
	s.mu.Lock()
	fail, delay := s.fail, s.delay
	s.mu.Unlock()
	if delay > 0 {
		select {
		case <-time.After(delay):
		case <-r.Context().Done():
			return
		}
	}
	asXML := strings.Contains(r.Header.Get("Accept"), "xml")
	if fail != 0 {
		writeError(w, asXML, fail, fail, "injected failure")
		return
	}
	path, ok := strings.CutPrefix(strings.ToLower(r.URL.Path), strings.ToLower(WebService))
	switch {
	case !ok:
		http.NotFound(w, r)
	case path == "/login" && r.Method == http.MethodPost:
		s.login(w, r, asXML)
	case !s.valid(r.Header.Get("Authtoken")):
		writeError(w, asXML, http.StatusUnauthorized, 1, "Access denied")
	case path == "/organization" && r.Method == http.MethodGet:
		s.lists.Add(1)
		s.list(w, asXML)
	case strings.HasPrefix(path, "/organization/") && r.Method == http.MethodGet:
		s.detail(w, r, strings.TrimPrefix(path, "/organization/"), asXML)
	default:
		writeError(w, asXML, http.StatusNotFound, 1, "no such API")
	}
}

func (s *Server) login(w http.ResponseWriter, r *http.Request, asXML bool) {
	b, _ := io.ReadAll(io.LimitReader(r.Body, 1<<16))
	var req struct {
		Username string `json:"username" xml:"username,attr"`
		Password string `json:"password" xml:"password,attr"`
	}
	var err error
	if strings.Contains(r.Header.Get("Content-Type"), "xml") {
		err = xml.Unmarshal(b, &req)
	} else {
		err = json.Unmarshal(b, &req)
	}
	pw, perr := base64.StdEncoding.DecodeString(req.Password)
	if err != nil || perr != nil || req.Username != s.User || string(pw) != s.Password {
		type errEntry struct {
			Code    int    `json:"errorCode" xml:"errorCode,attr"`
			Message string `json:"errLogMessage" xml:"errLogMessage,attr"`
		}
		resp := struct {
			XMLName xml.Name   `json:"-" xml:"DM2ContentIndexing_CheckCredentialResp"`
			Errors  []errEntry `json:"errList" xml:"errList"`
		}{Errors: []errEntry{{Code: 5, Message: "Invalid Username or Password"}}}
		write(w, asXML, http.StatusOK, resp)
		return
	}
	s.logins.Add(1)
	resp := struct {
		XMLName  xml.Name `json:"-" xml:"DM2ContentIndexing_CheckCredentialResp"`
		Token    string   `json:"token" xml:"token,attr"`
		UserName string   `json:"userName" xml:"userName,attr"`
		Alias    string   `json:"aliasName" xml:"aliasName,attr"`
	}{Token: s.issue(), UserName: s.User, Alias: "1"}
	write(w, asXML, http.StatusOK, resp)
}

type shortName struct {
	ID         int    `json:"id" xml:"id,attr"`
	DomainName string `json:"domainName" xml:"domainName,attr"`
}

func (s *Server) list(w http.ResponseWriter, asXML bool) {
	type provider struct {
		ConnectName string    `json:"connectName" xml:"connectName,attr"`
		Description string    `json:"description" xml:"description,attr"`
		Enabled     bool      `json:"enabled" xml:"enabled,attr"`
		Flags       int       `json:"flags" xml:"flags,attr"`
		ShortName   shortName `json:"shortName" xml:"shortName"`
	}
	s.mu.Lock()
	ids := make([]string, 0, len(s.orgs))
	for id := range s.orgs {
		ids = append(ids, id)
	}
	slices.SortFunc(ids, func(a, b string) int { x, _ := strconv.Atoi(a); y, _ := strconv.Atoi(b); return x - y })
	out := make([]provider, 0, len(ids))
	for _, id := range ids {
		o := s.orgs[id]
		n, _ := strconv.Atoi(id)
		out = append(out, provider{ConnectName: o.Name, Enabled: true, ShortName: shortName{ID: n, DomainName: o.Alias}})
	}
	s.mu.Unlock()
	write(w, asXML, http.StatusOK, struct {
		XMLName   xml.Name   `json:"-" xml:"App_GetOrganizationsResponse"`
		Providers []provider `json:"providers" xml:"providers"`
	}{Providers: out})
}

func (s *Server) detail(w http.ResponseWriter, r *http.Request, id string, asXML bool) {
	s.details.Add(1)
	n := s.inFlight.Add(1)
	defer s.inFlight.Add(-1)
	for {
		m := s.maxInFlight.Load()
		if n <= m || s.maxInFlight.CompareAndSwap(m, n) {
			break
		}
	}
	s.mu.Lock()
	lat, stall := s.latency, s.stall
	s.stall = nil
	o, ok := s.orgs[id]
	var c Org
	if ok {
		c = *o
		c.EmailDomains = slices.Clone(o.EmailDomains)
	}
	s.mu.Unlock()
	if ok {
		lat += c.Slow
	}
	if lat > 0 {
		select {
		case <-time.After(lat):
		case <-r.Context().Done():
			return
		}
	}
	if stall != nil {
		select {
		case <-stall:
		case <-r.Context().Done():
			return
		}
	}
	if !ok {
		writeError(w, asXML, http.StatusNotFound, 2, "Organization not found")
		return
	}
	num, _ := strconv.Atoi(c.ID)
	if asXML {
		flag := func(b bool) string {
			if b {
				return "1"
			}
			return "0"
		}
		backup := flag(c.Backup)
		if c.RawBackup != "" {
			backup = c.RawBackup
		}
		type opts struct {
			Login   string `xml:"disableLogin,attr"`
			Backup  string `xml:"disableBackup,attr"`
			Restore string `xml:"disableRestore,attr"`
		}
		type organization struct {
			ConnectName  string    `xml:"connectName,attr"`
			Description  string    `xml:"description,attr"`
			Enabled      bool      `xml:"enabled,attr"`
			EmailDomains []string  `xml:"emailDomainNames"`
			ShortName    shortName `xml:"shortName"`
			Deactivate   *opts     `xml:"deactivateOptions"`
		}
		type props struct {
			PrimaryDomain string `xml:"primaryDomain,attr"`
			UserCount     int    `xml:"userCount,attr"`
			Deactivate    *opts  `xml:"deactivateOptions"`
		}
		o := &opts{Login: flag(c.Login), Backup: backup, Restore: flag(c.Restore)}
		org := organization{ConnectName: c.Name, Enabled: true, EmailDomains: c.EmailDomains,
			ShortName: shortName{ID: num, DomainName: c.Alias}, Deactivate: o}
		pr := props{PrimaryDomain: c.PrimaryDomain, UserCount: 3}
		if c.OptionsInProperties {
			org.Deactivate, pr.Deactivate = nil, o
		}
		write(w, true, http.StatusOK, struct {
			XMLName xml.Name `xml:"App_GetOrganizationInfoResponse"`
			Info    struct {
				Org   organization `xml:"organization"`
				Props props        `xml:"organizationProperties"`
			} `xml:"organizationInfo"`
		}{Info: struct {
			Org   organization `xml:"organization"`
			Props props        `xml:"organizationProperties"`
		}{
			Org: org, Props: pr,
		}})
		return
	}
	backup := json.RawMessage(strconv.FormatBool(c.Backup))
	if c.RawBackup != "" {
		backup = json.RawMessage(c.RawBackup)
	}
	emails := c.EmailDomains
	if emails == nil {
		emails = []string{}
	}
	organization := map[string]any{
		"connectName": c.Name, "description": "", "enabled": true, "emailDomainNames": emails,
		"shortName": map[string]any{"id": num, "domainName": c.Alias},
	}
	properties := map[string]any{
		"primaryDomain": c.PrimaryDomain, "userCount": 3, "enableAuthCodeGen": false,
		"primaryContacts": []any{map[string]any{"fullName": "Tenant Admin", "user": map[string]any{"userName": c.Alias + "\\admin", "userId": 7}}},
	}
	opts := map[string]any{"disableLogin": c.Login, "disableBackup": backup, "disableRestore": c.Restore}
	if c.OptionsInProperties {
		properties["deactivateOptions"] = opts
	} else {
		organization["deactivateOptions"] = opts
	}
	write(w, false, http.StatusOK, map[string]any{
		"organizationInfo": map[string]any{"organization": organization, "organizationProperties": properties},
	})
}

func writeError(w http.ResponseWriter, asXML bool, status, code int, msg string) {
	write(w, asXML, status, struct {
		XMLName xml.Name `json:"-" xml:"EVGui_GenericResp"`
		Code    int      `json:"errorCode" xml:"errorCode,attr"`
		Message string   `json:"errorMessage" xml:"errorMessage,attr"`
	}{Code: code, Message: msg})
}

func write(w http.ResponseWriter, asXML bool, status int, v any) {
	var b []byte
	var err error
	if asXML {
		w.Header().Set("Content-Type", "application/xml; charset=utf-8")
		b, err = xml.Marshal(v)
	} else {
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		b, err = json.Marshal(v)
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.WriteHeader(status)
	_, _ = w.Write(b)
}
