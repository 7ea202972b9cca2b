package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/deact/deact/admin/adminapi"
	"github.com/deact/deact/state"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// nativeHandler is a native route: it returns the status and body to write, or an error.
type nativeHandler func(r *http.Request, p *principal) (int, any, error)

type nativeRoute struct {
	write bool
	h     nativeHandler
}

// importRoute is the one route whose body may take long to arrive: once the caller is authenticated, the
// listener's read timeout is replaced by Config.ImportTimeout.
const importRoute = "POST /v1/import"

func (a *API) nativeMux() *http.ServeMux {
	mux := http.NewServeMux()
	routes := map[string]nativeRoute{
		"GET /v1/orgs":                                      {false, a.listOrgs},
		"GET /v1/orgs/{id}":                                 {false, a.getOrg},
		"PUT /v1/orgs/{id}":                                 {true, a.putOrg},
		"POST /v1/orgs/{id}/deactivate":                     {true, a.setOrg(true)},
		"POST /v1/orgs/{id}/reactivate":                     {true, a.setOrg(false)},
		"GET /v1/projects":                                  {false, listed(a.store.ListProjects, projectVisible)},
		"GET /v1/projects/{id}":                             {false, a.getProject},
		"POST /v1/projects/{id}/deactivate":                 {true, a.setProject(true)},
		"POST /v1/projects/{id}/reactivate":                 {true, a.setProject(false)},
		"GET /v1/apps":                                      {false, listed(a.store.ListApps, appVisible)},
		"GET /v1/projects/{project}/apps/{app}":             {false, a.getApp},
		"PUT /v1/projects/{project}/apps/{app}":             {true, a.putApp},
		"POST /v1/projects/{project}/apps/{app}/deactivate": {true, a.setApp(true)},
		"POST /v1/projects/{project}/apps/{app}/reactivate": {true, a.setApp(false)},
		"GET /v1/accounts/{id}":                             {false, a.getAccount},
		"PUT /v1/accounts/{id}":                             {true, a.putAccount},
		"POST /v1/import":                                   {true, a.importNDJSON},
		"GET /v1/audit":                                     {false, a.audit},
		"GET /v1/nodes":                                     {false, a.nodes},
		"GET /v1/tokens":                                    {false, listed(a.store.ListTokens, tokenVisible)},
		"POST /v1/tokens":                                   {true, a.createToken},
		"DELETE /v1/tokens/{hash}":                          {true, a.deleteToken},
		"GET /v1/sources":                                   {false, a.sources},
		"GET /v1/mirror/orgs/{id}":                          {false, a.mirrored(state.MirrorOrg)},
		"GET /v1/mirror/projects/{id}":                      {false, a.mirrored(state.MirrorProject)},
		"GET /v1/mirror/projects/{project}/apps/{app}":      {false, a.mirrored(state.MirrorApp)},
	}
	for pattern, route := range routes {
		op := pattern
		mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) { a.runNative(w, r, op, route, op == importRoute) })
	}
	return mux
}

// serveNative answers unknown paths and methods itself, so that they get a JSON body too.
func (a *API) serveNative(w http.ResponseWriter, r *http.Request) {
	if p := r.URL.Path; strings.Contains(p, "/../") || strings.HasSuffix(p, "/..") || strings.Contains(p, "/./") ||
		strings.HasSuffix(p, "/.") || strings.Contains(p, "//") {
		// ServeMux would redirect to the cleaned path; an id of "." or ".." is a mistake, not a redirect.
		writeNativeError(w, newError(kindInvalid, "DEACT-InvalidID", "the path holds an empty, \".\" or \"..\" segment"))
		return
	}
	if _, pattern := a.native.Handler(r); pattern != "" {
		a.native.ServeHTTP(w, r)
		return
	}
	var allow []string
	for _, m := range []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodDelete} {
		probe := r.Clone(r.Context())
		probe.Method = m
		if _, pattern := a.native.Handler(probe); pattern != "" {
			allow = append(allow, m)
		}
	}
	if len(allow) > 0 {
		w.Header().Set("Allow", strings.Join(allow, ", "))
		writeNativeError(w, &apiError{kind: kindInvalid, id: "DEACT-Method", msg: fmt.Sprintf("%s is not allowed on %s (allowed: %s)", r.Method, r.URL.Path, strings.Join(allow, ", "))}, http.StatusMethodNotAllowed)
		return
	}
	writeNativeError(w, newError(kindNotFound, "DEACT-NoRoute", "no route for %s %s", r.Method, r.URL.Path))
}

func (a *API) runNative(w http.ResponseWriter, r *http.Request, op string, route nativeRoute, stream bool) {
	status, body, err := a.authenticateAndCall(w, r, route, stream)
	if err != nil {
		e := classify(err)
		a.metrics.request("native", op, e)
		a.logFailure("native", op, e)
		writeNativeError(w, e)
		return
	}
	a.metrics.request("native", op, nil)
	switch wr := body.(type) {
	case adminapi.WriteResult:
		setConfirmHeaders(w.Header(), wr.Confirmation)
	case adminapi.TokenCreated:
		setConfirmHeaders(w.Header(), wr.Confirmation)
	}
	writeJSON(w, status, body)
}

// authenticateAndCall authenticates the caller, refuses a write to a read-only token, lifts the read deadline of a
// streamed body (the import) for an authenticated caller only, and calls the route's handler.
func (a *API) authenticateAndCall(w http.ResponseWriter, r *http.Request, route nativeRoute, stream bool) (int, any, error) {
	ctx := r.Context()
	p, err := a.auth.authenticate(ctx, bearer(r.Header), ipFromContext(ctx))
	if err != nil {
		return 0, nil, err
	}
	if route.write && !p.canWrite() {
		return 0, nil, errReadOnly
	}
	if stream {
		// Only now, for an authenticated caller: a slow body is no way to hold a connection for 30 minutes.
		rc := http.NewResponseController(w)
		deadline := time.Now().Add(a.cfg.ImportTimeout)
		if err := rc.SetReadDeadline(deadline); err != nil && !errors.Is(err, http.ErrNotSupported) {
			return 0, nil, err
		}
		_ = rc.SetWriteDeadline(deadline.Add(a.cfg.WriteTimeout + MaxConfirmTimeout))
	}
	return route.h(r, p)
}

func writeJSON(w http.ResponseWriter, status int, body any) {
	b, err := json.Marshal(body)
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"error":{"status":500,"code":"internal","message":"internal error"}}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

func writeNativeError(w http.ResponseWriter, e *apiError, status ...int) {
	var b adminapi.ErrorBody
	b.Error.Status = e.httpStatus()
	if len(status) > 0 {
		b.Error.Status = status[0]
	}
	b.Error.Code, b.Error.ID, b.Error.Message = e.name(), e.id, e.msg
	b.Error.Line, b.Import = e.line, e.imported
	if b.Error.Status == http.StatusMethodNotAllowed {
		b.Error.Code = "method_not_allowed"
	}
	writeJSON(w, b.Error.Status, b)
}

// decode reads a JSON body into v; an empty body leaves v as it is. Unknown fields are refused.
func (a *API) decode(r *http.Request, v any) error {
	body, err := a.readBody(r)
	if err != nil {
		return err
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return newError(kindInvalid, "DEACT-BadBody", "malformed JSON body: %s", bodyError(err))
	}
	if dec.More() {
		return newError(kindInvalid, "DEACT-BadBody", "malformed JSON body: more than one value")
	}
	return nil
}

// page reads the cursor parameters.
func page(r *http.Request, cursor string) (string, int64, error) {
	q := r.URL.Query()
	var limit int64 = 100
	if v := q.Get("limit"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 1 || n > 1000 {
			return "", 0, newError(kindInvalid, "DEACT-BadLimit", "limit must be between 1 and 1000")
		}
		limit = n
	}
	after := q.Get(cursor)
	if len(after) > 2*state.MaxIDLen+1 {
		return "", 0, newError(kindInvalid, "DEACT-BadCursor", "cursor is too long")
	}
	return after, limit, nil
}

// write finishes a native write: wait for the nodes, log, answer.
func (a *API) write(r *http.Request, p *principal, op, subject string, res state.Result, err error) (int, any, error) {
	if err != nil {
		return 0, nil, err
	}
	timeout, terr := a.confirmTimeout(r)
	if terr != nil {
		timeout = a.cfg.ConfirmTimeout // validated before the write; unreachable
	}
	c := a.confirm(r.Context(), res.Revision, timeout)
	a.logWrite("native", op, p, subject, res, c)
	return http.StatusOK, adminapi.WriteResult{Revision: res.Revision, ChangedAt: res.ChangedAt, OrgID: res.OrgID, Confirmation: c}, nil
}

// tokenWrite finishes a token write: gateways hold no tokens, so it waits for none (see adminapi.ConfirmNotNeeded).
func (a *API) tokenWrite(p *principal, op, subject string, res state.Result, err error) (int, any, error) {
	if err != nil {
		return 0, nil, err
	}
	c := state.Confirmation{Revision: res.Revision, NotNeeded: true}
	a.logWrite("native", op, p, subject, res, c)
	return http.StatusOK, adminapi.WriteResult{Revision: res.Revision, ChangedAt: res.ChangedAt, OrgID: res.OrgID, Confirmation: c}, nil
}

// listed is the handler of a listing: a page of it, without the records the token may not see (so a page may
// hold fewer than limit records while Next points further).
func listed[T any](list func(context.Context, string, int64) (state.Page[T], error), visible func(*principal, *T) bool) nativeHandler {
	return func(r *http.Request, p *principal) (int, any, error) {
		after, limit, err := page(r, "after")
		if err != nil {
			return 0, nil, err
		}
		pg, err := list(r.Context(), after, limit)
		if err != nil {
			return 0, nil, err
		}
		pg.Items = orEmpty(slices.DeleteFunc(pg.Items, func(v state.Versioned[T]) bool { return !visible(p, &v.Record) }))
		return http.StatusOK, pg, nil
	}
}

func projectVisible(p *principal, v *state.Project) bool { return p.tok.Allows(v.OrgID) }
func appVisible(p *principal, v *state.App) bool         { return p.tok.Allows(v.OrgID) }
func tokenVisible(p *principal, v *state.Token) bool     { return p.tok.Covers(v) }

// orEmpty is s, or an empty slice for nil: an empty list is answered [], not null.
func orEmpty[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// preWrite validates what every write validates before touching etcd: ids and the confirm timeout.
func (a *API) preWrite(r *http.Request, ids ...[2]string) error {
	for _, id := range ids {
		if err := state.ValidateID(id[0], id[1]); err != nil {
			return err
		}
	}
	_, err := a.confirmTimeout(r)
	return err
}

// --- orgs

func (a *API) listOrgs(r *http.Request, p *principal) (int, any, error) {
	after, limit, err := page(r, "after")
	if err != nil {
		return 0, nil, err
	}
	if p.tok.AllOrgs {
		pg, err := a.store.ListOrgs(r.Context(), after, limit)
		return http.StatusOK, pg, err
	}
	// A scoped token sees its own orgs, read one by one (scopes are short lists).
	orgs := slices.Sorted(slices.Values(p.tok.Orgs))
	var out state.Page[state.Org]
	for _, id := range orgs {
		if id <= after {
			continue
		}
		if int64(len(out.Items)) == limit {
			out.Next = out.Items[len(out.Items)-1].Record.ID
			break
		}
		v, err := a.store.GetOrg(r.Context(), id)
		if errors.Is(err, state.ErrNotFound) {
			continue
		}
		if err != nil {
			return 0, nil, err
		}
		out.Items = append(out.Items, v)
		out.Revision = max(out.Revision, v.Revision)
	}
	out.Items = orEmpty(out.Items)
	return http.StatusOK, out, nil
}

func (a *API) getOrg(r *http.Request, p *principal) (int, any, error) {
	id := r.PathValue("id")
	if err := state.ValidateID("org", id); err != nil {
		return 0, nil, err
	}
	if err := p.authorize(id, false); err != nil {
		return 0, nil, err
	}
	v, err := a.store.GetOrg(r.Context(), id)
	if err != nil {
		return 0, nil, fmt.Errorf("org %s: %w", id, err)
	}
	return http.StatusOK, v, nil
}

func (a *API) putOrg(r *http.Request, p *principal) (int, any, error) {
	id := r.PathValue("id")
	var req adminapi.OrgRequest
	if err := a.decode(r, &req); err != nil {
		return 0, nil, err
	}
	if err := a.preWrite(r, [2]string{"org", id}); err != nil {
		return 0, nil, err
	}
	if err := p.authorize(id, true); err != nil {
		return 0, nil, err
	}
	res, err := a.store.PutOrg(r.Context(), state.Org{ID: id, Name: req.Name, Domains: req.Domains}, change(p, req.Reason))
	return a.write(r, p, "register org", "org "+id, res, err)
}

func (a *API) setOrg(deactivate bool) nativeHandler {
	return func(r *http.Request, p *principal) (int, any, error) {
		id := r.PathValue("id")
		var req adminapi.DeactivateRequest
		if err := a.decode(r, &req); err != nil {
			return 0, nil, err
		}
		if err := a.preWrite(r, [2]string{"org", id}); err != nil {
			return 0, nil, err
		}
		ops := zitadelOps
		if !deactivate {
			ops = state.OpsAll
		}
		if req.Ops != "" {
			var err error
			if ops, err = state.ParseOps(req.Ops); err != nil {
				return 0, nil, newError(kindInvalid, "DEACT-BadOps", "%v", err)
			}
			if ops == 0 {
				return 0, nil, newError(kindInvalid, "DEACT-BadOps", "ops names no operation")
			}
		}
		if err := p.authorize(id, true); err != nil {
			return 0, nil, err
		}
		if deactivate {
			res, err := a.store.DeactivateOrg(r.Context(), id, ops, req.Exact, change(p, req.Reason))
			return a.write(r, p, "deactivate org "+ops.String(), "org "+id, res, err)
		}
		res, err := a.store.EnableOrgOps(r.Context(), id, ops, change(p, req.Reason))
		return a.write(r, p, "reactivate org "+ops.String(), "org "+id, res, err)
	}
}

// --- projects and apps

// ownerOrg decides the org a project or app write acts for, and checks the token may act on it: the org given
// in the request, else the record's own org; a scoped token must name one when the record is new, and may not
// touch a record without an owner. (The store checks the same again inside its transaction; this read gives
// the caller the clearer answer.)
func (a *API) ownerOrg(p *principal, given, stored string, exists bool) (string, error) {
	if exists && stored == "" && !p.tok.AllOrgs {
		return "", newError(kindForbidden, "DEACT-Ownerless", "the record has no owning org: only a token for all orgs may change it")
	}
	org := given
	if org == "" {
		org = stored
	}
	if org == "" {
		if !p.tok.AllOrgs {
			return "", newError(kindInvalid, "DEACT-NoOrg", "orgId is required")
		}
		return "", nil
	}
	if err := state.ValidateID("org", org); err != nil {
		return "", err
	}
	if err := p.authorize(org, true); err != nil {
		return "", err
	}
	if exists && stored != "" && stored != org {
		// The record belongs to another org than the one named: whether the caller may see it or not, the
		// answer does not reveal more than "not found".
		return "", fmt.Errorf("record of org %s: %w", org, state.ErrNotFound)
	}
	return org, nil
}

func (a *API) getProject(r *http.Request, p *principal) (int, any, error) {
	id := r.PathValue("id")
	v, err := a.store.GetProject(r.Context(), id)
	if err != nil {
		return 0, nil, fmt.Errorf("project %s: %w", id, err)
	}
	if err := p.authorize(v.Record.OrgID, false); err != nil {
		return 0, nil, err
	}
	return http.StatusOK, v, nil
}

func (a *API) setProject(deactivate bool) nativeHandler {
	return func(r *http.Request, p *principal) (int, any, error) {
		id := r.PathValue("id")
		var req adminapi.DeactivateRequest
		if err := a.decode(r, &req); err != nil {
			return 0, nil, err
		}
		if err := a.preWrite(r, [2]string{"project", id}); err != nil {
			return 0, nil, err
		}
		cur, err := a.store.GetProject(r.Context(), id)
		if err != nil && !errors.Is(err, state.ErrNotFound) {
			return 0, nil, err
		}
		org, err := a.ownerOrg(p, req.OrgID, cur.Record.OrgID, err == nil)
		if err != nil {
			return 0, nil, err
		}
		res, err := a.store.SetProjectState(r.Context(), id, org, deactivate, change(p, req.Reason))
		return a.write(r, p, action("project", deactivate), "project "+id, res, err)
	}
}

func (a *API) getApp(r *http.Request, p *principal) (int, any, error) {
	v, err := a.store.GetApp(r.Context(), r.PathValue("project"), r.PathValue("app"))
	if err != nil {
		return 0, nil, fmt.Errorf("app %s: %w", r.PathValue("app"), err)
	}
	if err := p.authorize(v.Record.OrgID, false); err != nil {
		return 0, nil, err
	}
	return http.StatusOK, v, nil
}

func (a *API) putApp(r *http.Request, p *principal) (int, any, error) {
	project, app := r.PathValue("project"), r.PathValue("app")
	var req adminapi.AppRequest
	if err := a.decode(r, &req); err != nil {
		return 0, nil, err
	}
	if err := a.preWrite(r, [2]string{"project", project}, [2]string{"app", app}, [2]string{"org", req.OrgID}); err != nil {
		return 0, nil, err
	}
	if err := p.authorize(req.OrgID, true); err != nil {
		return 0, nil, err
	}
	res, err := a.store.PutApp(r.Context(), state.App{ID: app, ProjectID: project, OrgID: req.OrgID, ClientIDs: req.ClientIDs}, change(p, req.Reason))
	return a.write(r, p, "register app", "app "+project+"/"+app, res, err)
}

func (a *API) setApp(deactivate bool) nativeHandler {
	return func(r *http.Request, p *principal) (int, any, error) {
		project, app := r.PathValue("project"), r.PathValue("app")
		var req adminapi.DeactivateRequest
		if err := a.decode(r, &req); err != nil {
			return 0, nil, err
		}
		if err := a.preWrite(r, [2]string{"project", project}, [2]string{"app", app}); err != nil {
			return 0, nil, err
		}
		cur, err := a.store.GetApp(r.Context(), project, app)
		if err != nil && !errors.Is(err, state.ErrNotFound) {
			return 0, nil, err
		}
		org, err := a.ownerOrg(p, req.OrgID, cur.Record.OrgID, err == nil)
		if err != nil {
			return 0, nil, err
		}
		res, err := a.store.SetAppState(r.Context(), project, app, org, deactivate, change(p, req.Reason))
		return a.write(r, p, action("app", deactivate), "app "+project+"/"+app, res, err)
	}
}

func action(what string, deactivate bool) string {
	if deactivate {
		return "deactivate " + what
	}
	return "reactivate " + what
}

// --- accounts

func (a *API) getAccount(r *http.Request, p *principal) (int, any, error) {
	id := r.PathValue("id")
	v, err := a.store.GetAccount(r.Context(), id)
	if err != nil {
		return 0, nil, fmt.Errorf("account %s: %w", id, err)
	}
	if err := p.authorize(v.Record.OrgID, false); err != nil {
		return 0, nil, err
	}
	return http.StatusOK, v, nil
}

func (a *API) putAccount(r *http.Request, p *principal) (int, any, error) {
	id := r.PathValue("id")
	var req adminapi.AccountRequest
	if err := a.decode(r, &req); err != nil {
		return 0, nil, err
	}
	if err := a.preWrite(r, [2]string{"account", id}, [2]string{"org", req.OrgID}); err != nil {
		return 0, nil, err
	}
	if err := p.authorize(req.OrgID, true); err != nil {
		return 0, nil, err
	}
	// Moving an account away from an org needs the right to act on that org too: the store checks it inside its
	// transaction (state.ErrOtherOrg, answered 403).
	res, err := a.store.PutAccount(r.Context(), state.Account{ID: id, OrgID: req.OrgID}, change(p, req.Reason))
	return a.write(r, p, "register account", "account "+id, res, err)
}

// --- import, audit, nodes

// importNDJSON streams the body to Store.ImportWith. Records may name any org, so only an all-orgs token
// imports. Each batch is bounded by the write timeout, the whole import by ImportTimeout; ?skip=N resumes an
// import that stopped after committing lines 1..N. Success and failure both say exactly what was committed.
func (a *API) importNDJSON(r *http.Request, p *principal) (int, any, error) {
	if !p.tok.AllOrgs {
		return 0, nil, newError(kindForbidden, "DEACT-ImportScope", "import needs a token for all orgs")
	}
	timeout, err := a.confirmTimeout(r)
	if err != nil {
		return 0, nil, err
	}
	skip := 0
	if v := r.URL.Query().Get("skip"); v != "" {
		if skip, err = strconv.Atoi(v); err != nil || skip < 0 {
			return 0, nil, newError(kindInvalid, "DEACT-BadSkip", "skip must be a number of lines, 0 or more")
		}
	}
	if r.ContentLength > a.cfg.MaxImportBytes {
		return 0, nil, newError(kindTooLarge, "DEACT-BodyTooLarge", "import body is larger than %d bytes", a.cfg.MaxImportBytes)
	}
	ctx, cancel := context.WithTimeout(clientv3.WithRequireLeader(requestContext(r.Context())), a.cfg.ImportTimeout)
	defer cancel()
	body := &limitedBody{r: r.Body, left: a.cfg.MaxImportBytes}
	res, err := a.store.ImportWith(ctx, body, change(p, "import"), state.ImportOptions{Skip: skip, BatchTimeout: a.cfg.WriteTimeout})
	if err != nil {
		return 0, nil, a.importError(ctx, res, err, body.exceeded)
	}
	var c state.Confirmation
	if res.Revision > 0 {
		c = a.confirm(r.Context(), res.Revision, timeout)
	}
	a.logWrite("native", "import", p, fmt.Sprintf("%d records", res.Records), state.Result{Revision: res.Revision}, c)
	return http.StatusOK, adminapi.ImportResponse{ImportResult: res, Complete: true, Confirmation: c}, nil
}

// importError classifies an import that stopped part way, and says what it committed.
func (a *API) importError(ctx context.Context, res state.ImportResult, err error, tooLarge bool) *apiError {
	var (
		e  *apiError
		le *state.ImportLineError
		re *state.ImportReadError
	)
	switch {
	case tooLarge:
		e = newError(kindTooLarge, "DEACT-BodyTooLarge", "import body is larger than %d bytes", a.cfg.MaxImportBytes)
	case errors.As(err, &le):
		id := "DEACT-BadImport"
		if le.Other > 0 {
			id = "DEACT-DuplicateRecord"
		}
		e = &apiError{kind: kindInvalid, id: id, msg: le.Error(), err: err, line: le.Line}
	case errors.As(err, &re) && pastDeadline(ctx):
		e = &apiError{kind: kindInvalid, id: "DEACT-ImportTimeout", msg: fmt.Sprintf("the import took longer than its bound (%v) and was cut after line %d", a.cfg.ImportTimeout, re.After), err: err}
	case errors.As(err, &re):
		e = &apiError{kind: kindInvalid, id: "DEACT-BodyUnreadable", msg: fmt.Sprintf("the body could not be read after line %d", re.After), err: err}
	default:
		e = classify(err)
		e = &apiError{kind: e.kind, id: e.id, msg: e.msg, err: err}
	}
	e.msg += fmt.Sprintf("; committed: lines 1-%d (%d records in %d batches); resume with skip=%d", res.Lines, res.Records, res.Batches, res.Lines)
	e.imported = &adminapi.ImportResponse{ImportResult: res}
	return e
}

// pastDeadline reports whether ctx's own deadline has passed (not just whether it is done: the server cancels a
// request's context when its connection fails).
func pastDeadline(ctx context.Context) bool {
	dl, ok := ctx.Deadline()
	return ok && !time.Now().Before(dl)
}

type limitedBody struct {
	r        interface{ Read([]byte) (int, error) }
	left     int64
	exceeded bool
}

func (b *limitedBody) Read(p []byte) (int, error) {
	if b.left <= 0 {
		b.exceeded = true
		return 0, errors.New("body too large")
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.r.Read(p)
	b.left -= int64(n)
	if b.left <= 0 && err == nil {
		// Probe for more data: one more byte means the limit is exceeded.
		var one [1]byte
		if m, _ := b.r.Read(one[:]); m > 0 {
			b.exceeded = true
			return n, errors.New("body too large")
		}
	}
	return n, err
}

func (a *API) audit(r *http.Request, p *principal) (int, any, error) {
	before, limit, err := page(r, "before")
	if err != nil {
		return 0, nil, err
	}
	pg, err := a.store.AuditPage(r.Context(), before, limit)
	if err != nil {
		return 0, nil, err
	}
	entries := pg.Entries
	if !p.tok.AllOrgs {
		entries = slices.DeleteFunc(entries, func(e state.AuditEntry) bool {
			orgs := auditOrgs(e)
			return len(orgs) == 0 || slices.ContainsFunc(orgs, func(o string) bool { return !p.tok.Allows(o) })
		})
	}
	entries = orEmpty(entries)
	return http.StatusOK, adminapi.AuditResponse{Entries: entries, Next: pg.Next}, nil
}

// auditOrgs names the orgs an audit entry concerns: the org of an org key, the orgId (or a token's orgs) of the
// record before and after. An entry that names none (an import) is shown only to all-orgs tokens.
func auditOrgs(e state.AuditEntry) []string {
	var orgs []string
	if id, ok := strings.CutPrefix(e.Key, state.OrgKey("")); ok {
		orgs = append(orgs, id)
	}
	for _, raw := range []json.RawMessage{e.Before, e.After} {
		var rec struct {
			OrgID   string   `json:"orgId"`
			HomeOrg string   `json:"homeOrg"`
			AllOrgs bool     `json:"allOrgs"`
			Orgs    []string `json:"orgs"`
		}
		if len(raw) == 0 || json.Unmarshal(raw, &rec) != nil {
			continue
		}
		if rec.AllOrgs {
			return nil
		}
		for _, o := range append([]string{rec.OrgID, rec.HomeOrg}, rec.Orgs...) {
			if o != "" && !slices.Contains(orgs, o) {
				orgs = append(orgs, o)
			}
		}
	}
	return orgs
}

// nodes shows the fleet (node IDs, versions, revisions) as this admin node's Fanout sees it: it belongs to no
// org, so only all-orgs tokens (admin or read-only) may read it.
func (a *API) nodes(r *http.Request, p *principal) (int, any, error) {
	if !p.tok.AllOrgs {
		return 0, nil, newError(kindForbidden, "DEACT-NodesScope", "only a token for all orgs may read the node registry")
	}
	// The Fanout's view, not the store's: a node that reports directly to admin nodes writes its record only at
	// registration, so the record's revision and time would be old.
	nodes := a.fanout.Nodes()
	now := time.Now()
	out := adminapi.NodesResponse{Nodes: make([]adminapi.NodeStatus, 0, len(nodes))}
	for _, n := range nodes {
		age := now.Sub(n.SyncedAt).Milliseconds()
		out.Nodes = append(out.Nodes, adminapi.NodeStatus{Node: n, AgeMs: age, StaleMs: n.StalenessMs + max(age, 0)})
	}
	return http.StatusOK, out, nil
}

// --- tokens

func (a *API) createToken(r *http.Request, p *principal) (int, any, error) {
	var req adminapi.TokenRequest
	if err := a.decode(r, &req); err != nil {
		return 0, nil, err
	}
	if _, err := a.confirmTimeout(r); err != nil {
		return 0, nil, err
	}
	if req.Role == "" {
		req.Role = state.RoleReadOnly
	}
	if req.HomeOrg == "" && !req.AllOrgs && len(req.Orgs) > 0 {
		req.HomeOrg = req.Orgs[0]
	}
	if req.HomeOrg != "" && !req.AllOrgs && !slices.Contains(req.Orgs, req.HomeOrg) {
		req.Orgs = append(req.Orgs, req.HomeOrg)
	}
	secret, err := state.NewToken()
	if err != nil {
		return 0, nil, err
	}
	tok := state.Token{Hash: state.HashToken(secret), Name: req.Name, HomeOrg: req.HomeOrg, AllOrgs: req.AllOrgs,
		Orgs: req.Orgs, Role: req.Role, CreatedBy: p.actor}
	if err := tok.Validate(); err != nil {
		if errors.Is(err, state.ErrInvalidID) {
			return 0, nil, err
		}
		return 0, nil, newError(kindInvalid, "DEACT-BadToken", "%v", err)
	}
	if !p.tok.Covers(&tok) {
		return 0, nil, newError(kindForbidden, "DEACT-TokenScope", "a token can only create tokens within its own scope")
	}
	res, err := a.store.CreateToken(r.Context(), tok, change(p, "create token "+req.Name))
	if err == nil {
		a.auth.remember(tok)
	}
	_, body, err := a.tokenWrite(p, "create token", "token "+tok.Hash[:12], res, err)
	if err != nil {
		return 0, nil, err
	}
	tok.Created = res.ChangedAt
	return http.StatusCreated, adminapi.TokenCreated{Token: secret, Record: tok, WriteResult: body.(adminapi.WriteResult)}, nil
}

func (a *API) deleteToken(r *http.Request, p *principal) (int, any, error) {
	hash := strings.ToLower(r.PathValue("hash"))
	v, err := a.store.GetToken(r.Context(), hash)
	if err != nil {
		return 0, nil, err
	}
	if !p.tok.Covers(&v.Record) {
		return 0, nil, newError(kindForbidden, "DEACT-TokenScope", "the token may not revoke tokens outside its scope")
	}
	res, err := a.store.DeleteToken(r.Context(), hash, change(p, "delete token"))
	a.auth.forget(hash)
	return a.tokenWrite(p, "delete token", "token "+hash[:12], res, err)
}
