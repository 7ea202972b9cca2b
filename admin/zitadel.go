package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"unicode/utf8"

	"connectrpc.com/connect"
	"connectrpc.com/vanguard"
	"github.com/deact/deact/admin/adminapi"
	"github.com/deact/deact/admin/proto/zitadel"
	management "github.com/deact/deact/admin/proto/zitadel/management/v1"
	"github.com/deact/deact/admin/proto/zitadel/management/v1/managementconnect"
	"github.com/deact/deact/state"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// HeaderZitadelOrg selects the organization of a ZITADEL call; without it the token's home org is meant.
const HeaderZitadelOrg = "x-zitadel-orgid"

// zitadelService implements ZITADEL's ManagementService deactivation methods. Vanguard serves it as REST JSON
// (the google.api.http routes), and connect as gRPC, gRPC-Web and Connect.
type zitadelService struct {
	managementconnect.UnimplementedManagementServiceHandler
	a *API
}

// zitadelOps is what a ZITADEL org deactivation disables: its users can neither log in nor get tokens.
const zitadelOps = state.OpLogin | state.OpToken

func (a *API) newZitadel() (http.Handler, error) {
	limit := int(a.cfg.MaxBodyBytes)
	path, h := managementconnect.NewManagementServiceHandler(&zitadelService{a: a}, connect.WithReadMaxBytes(limit))
	opts := []vanguard.ServiceOption{
		vanguard.WithMaxMessageBufferBytes(uint32(limit)),
		// Always transcode REST through binary, so REST answers are written by zitadelJSON, not connect's JSON.
		vanguard.WithTargetCodecs(vanguard.CodecProto),
		vanguard.WithRESTUnmarshalOptions(vanguard.RESTUnmarshalOptions{DiscardUnknownQueryParams: true}),
	}
	svcs := append([]*vanguard.Service{vanguard.NewService(path, h, opts...)}, a.zitadelV2Services(limit, opts)...)
	return vanguard.NewTranscoder(svcs,
		vanguard.WithCodec(newZitadelJSON),
		vanguard.WithUnknownHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			writeZitadelError(w, newError(kindNotFound, "DEACT-NoRoute", "no route for %s %s", r.Method, r.URL.Path))
		})))
}

// zitadelJSON is protojson as ZITADEL's gateway writes it: unpopulated fields left out, and compact, so the
// bytes are stable (protojson alone varies its whitespace between builds on purpose).
type zitadelJSON struct{ *vanguard.JSONCodec }

func newZitadelJSON(res vanguard.TypeResolver) vanguard.Codec {
	c := vanguard.NewJSONCodec(res)
	c.MarshalOptions.EmitUnpopulated = false
	return zitadelJSON{c}
}

func (c zitadelJSON) MarshalAppend(b []byte, msg proto.Message) ([]byte, error) {
	return c.JSONCodec.MarshalAppendStable(b, msg)
}

// Unmarshal reads a request body. A body that does not fit the message (a number for a string field, say) is
// the client's mistake: InvalidArgument in ZITADEL's shape, where vanguard would answer a bare 500.
func (c zitadelJSON) Unmarshal(b []byte, msg proto.Message) error {
	if err := c.JSONCodec.Unmarshal(b, msg); err != nil {
		return connectError(newError(kindInvalid, "DEACT-BadBody", "the request body does not fit %s: %v", msg.ProtoReflect().Descriptor().Name(), err))
	}
	return nil
}

// serveZitadel handles the ZITADEL routes. Unary bodies (REST, Connect unary) are read and checked here, so that
// an oversized one gets 413 and a malformed one 400, in ZITADEL's error shape, before vanguard (which may start
// the method before it finds the body malformed) sees them; gRPC and gRPC-Web bodies stream through, with the
// same message limit enforced by connect.
func (a *API) serveZitadel(w http.ResponseWriter, r *http.Request) {
	ct := strings.ToLower(r.Header.Get("Content-Type"))
	if strings.HasPrefix(ct, "application/grpc") || strings.HasPrefix(ct, "application/connect+") {
		r.Body = http.MaxBytesReader(w, r.Body, a.cfg.MaxBodyBytes+64<<10) // room for framing; connect enforces the message limit
		a.zitadel.ServeHTTP(w, r)
		return
	}
	if ct == "" || strings.HasPrefix(ct, "application/x-www-form-urlencoded") {
		// ZITADEL's gateway reads any REST body as JSON, and clients rely on it (curl -d sends it as a form):
		// do the same, then check it is a JSON object like any other.
		ct = "application/json"
		r.Header.Set("Content-Type", ct)
	}
	body, err := a.readBody(r)
	if trimmed := bytes.TrimSpace(body); err == nil && len(trimmed) > 0 && (ct == "" || strings.Contains(ct, "json")) &&
		(trimmed[0] != '{' || !json.Valid(trimmed)) {
		err = newError(kindInvalid, "DEACT-BadBody", "the request body is not a JSON object")
	}
	if strings.Contains(strings.ToLower(r.URL.EscapedPath()), "%2f") {
		// Routes match the decoded path, where an escaped "/" would split an id into two segments: it is an
		// invalid id, not another route.
		err = fmt.Errorf("%w: a path segment holds an escaped \"/\"", state.ErrInvalidID)
	}
	if !utf8.ValidString(r.URL.Path) {
		// A path variable becomes a proto string, which must be UTF-8; vanguard would fail on it with a 500.
		err = fmt.Errorf("%w: the path is not UTF-8", state.ErrInvalidID)
	}
	if err != nil {
		e := classify(err)
		if ew := connect.NewErrorWriter(); strings.HasPrefix(r.URL.Path, "/zitadel.") && ew.IsSupported(r) {
			// A Connect unary call: its client reads only Connect's error shape.
			a.metrics.request("zitadel", "connect", e)
			_ = ew.Write(w, r, connectError(e))
			return
		}
		a.metrics.request("zitadel", "rest", e)
		writeZitadelError(w, e)
		return
	}
	bufferedBody(r, body)
	// The query parameter is ours, not the method's: hand it to the handler as the header.
	if v := r.URL.Query().Get("confirmTimeout"); v != "" && r.Header.Get(adminapi.HeaderConfirmTimeout) == "" {
		r.Header.Set(adminapi.HeaderConfirmTimeout, v)
	}
	// Every route here has body "*", for which ZITADEL's gateway takes no field from the query. Vanguard would,
	// and after the path: ?organizationId=B on /v2/organizations/A/deactivate would write B while the path, all
	// that proxies and access logs see, says A.
	r.URL.RawQuery = ""
	if r.Method == http.MethodPost && r.Header.Get("Connect-Protocol-Version") == "" && strings.HasPrefix(r.URL.Path, "/zitadel.") {
		// connect-go servers, ZITADEL's among them, take a Connect unary call without this header (curl -d
		// '{"projectId":"1"}' .../zitadel.project.v2.ProjectService/DeactivateProject); vanguard needs it to tell
		// the call from REST. No REST route starts with /zitadel.
		r.Header.Set("Connect-Protocol-Version", "1")
	}
	rw := &plainErrorWriter{ResponseWriter: w}
	a.zitadel.ServeHTTP(rw, r)
	rw.finish()
}

// plainErrorWriter turns the few plain-text errors vanguard writes itself (405, 415) into ZITADEL's JSON error
// shape, so that every REST error parses the same way. JSON answers pass through untouched, and so does a JSON
// status vanguard labels with the server's content type (it does for a request body it cannot decode).
type plainErrorWriter struct {
	http.ResponseWriter
	status int
	text   bytes.Buffer
}

func (w *plainErrorWriter) WriteHeader(status int) {
	if status >= 400 && !strings.HasPrefix(w.Header().Get("Content-Type"), "application/json") {
		w.status = status
		return
	}
	w.ResponseWriter.WriteHeader(status)
}

func (w *plainErrorWriter) Write(b []byte) (int, error) {
	if w.status != 0 {
		if w.text.Len() < 64<<10 {
			w.text.Write(b)
		}
		return len(b), nil
	}
	return w.ResponseWriter.Write(b)
}

func (w *plainErrorWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok && w.status == 0 {
		f.Flush()
	}
}

func (w *plainErrorWriter) finish() {
	if w.status == 0 {
		return
	}
	w.Header().Del("Content-Length")
	if text := w.text.Bytes(); json.Valid(text) && protojson.Unmarshal(text, new(status.Status)) == nil {
		w.Header().Set("Content-Type", "application/json")
		w.ResponseWriter.WriteHeader(w.status)
		_, _ = w.ResponseWriter.Write(text)
		return
	}
	msg := strings.TrimSpace(w.text.String())
	if msg == "" {
		msg = http.StatusText(w.status)
	}
	code := connect.CodeInvalidArgument
	id := "DEACT-BadRequest"
	if w.status == http.StatusMethodNotAllowed {
		code, id = connect.CodeUnimplemented, "DEACT-Method"
	}
	writeZitadelErrorStatus(w.ResponseWriter, &apiError{kind: kindInvalid, id: id, msg: msg}, code, w.status)
}

// writeZitadelError writes a REST error in ZITADEL's (grpc-gateway's) shape, for failures found before the
// request reaches vanguard.
func writeZitadelError(w http.ResponseWriter, e *apiError) {
	code := vanguardStatus(e.connectCode())
	if e.kind == kindTooLarge {
		code = http.StatusRequestEntityTooLarge
	}
	writeZitadelErrorStatus(w, e, e.connectCode(), code)
}

func writeZitadelErrorStatus(w http.ResponseWriter, e *apiError, code connect.Code, httpStatus int) {
	st := &status.Status{Code: int32(code), Message: zitadelMessage(e)}
	if d, err := anypb.New(&zitadel.ErrorDetail{Id: e.id, Message: e.msg}); err == nil {
		st.Details = []*anypb.Any{d}
	}
	b, err := newZitadelJSON(nil).MarshalAppend(nil, st)
	if err != nil {
		b = []byte(`{"code":13,"message":"internal error"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(httpStatus)
	_, _ = w.Write(b)
}

// vanguardStatus is the HTTP status grpc-gateway (and so ZITADEL, and vanguard) uses for a code.
func vanguardStatus(c connect.Code) int {
	switch c {
	case connect.CodeInvalidArgument, connect.CodeFailedPrecondition, connect.CodeOutOfRange:
		return http.StatusBadRequest
	case connect.CodeUnauthenticated:
		return http.StatusUnauthorized
	case connect.CodePermissionDenied:
		return http.StatusForbidden
	case connect.CodeNotFound:
		return http.StatusNotFound
	case connect.CodeAlreadyExists, connect.CodeAborted:
		return http.StatusConflict
	case connect.CodeResourceExhausted:
		return http.StatusTooManyRequests
	case connect.CodeUnavailable:
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

// zitadelMessage is ZITADEL's message convention: the text, then the error id in parentheses.
func zitadelMessage(e *apiError) string { return fmt.Sprintf("%s (%s)", e.msg, e.id) }

// connectError converts a failure into a connect error carrying ZITADEL's ErrorDetail.
func connectError(e *apiError) *connect.Error {
	ce := connect.NewError(e.connectCode(), fmt.Errorf("%s", zitadelMessage(e)))
	if d, err := connect.NewErrorDetail(&zitadel.ErrorDetail{Id: e.id, Message: e.msg}); err == nil {
		ce.AddDetail(d)
	}
	return ce
}

// zitadelWrite runs one ZITADEL write on the org of the x-zitadel-orgid header or the token's home org.
func (a *API) zitadelWrite(ctx context.Context, op string, req connect.AnyRequest, ids [][2]string,
	write zitadelWriteFunc) (*zitadel.ObjectDetails, http.Header, error) {
	return a.zitadelWriteOrg(ctx, op, req, orgFromHeader, ids, write)
}

// orgPicker names the org a ZITADEL call acts on, once the caller is known.
type orgPicker func(h http.Header, p *principal) (string, error)

// orgFromHeader is the v1 rule: the x-zitadel-orgid header, else the token's home org.
func orgFromHeader(h http.Header, p *principal) (string, error) {
	if org := h.Get(HeaderZitadelOrg); org != "" {
		return org, nil
	}
	if p.tok.HomeOrg != "" {
		return p.tok.HomeOrg, nil
	}
	return "", newError(kindInvalid, "DEACT-NoOrg", "no organization: send the %s header (the token has no home org)", HeaderZitadelOrg)
}

// zitadelWriteOrg runs one ZITADEL write (v1 or v2): authenticate, pick and check the org, write, wait for the
// nodes. The error it returns is a connect error in ZITADEL's shape.
func (a *API) zitadelWriteOrg(ctx context.Context, op string, req connect.AnyRequest, pick orgPicker, ids [][2]string,
	write zitadelWriteFunc) (*zitadel.ObjectDetails, http.Header, error) {
	details, hdr, err := a.zitadelWriteInner(ctx, req, pick, ids, write, op)
	var e *apiError
	if err != nil {
		e = classify(err)
		a.logFailure("zitadel", op, e)
		a.metrics.request("zitadel", op, e)
		return nil, nil, connectError(e)
	}
	a.metrics.request("zitadel", op, nil)
	return details, hdr, nil
}

func (a *API) zitadelWriteInner(ctx context.Context, req connect.AnyRequest, pick orgPicker, ids [][2]string,
	write zitadelWriteFunc, op string) (*zitadel.ObjectDetails, http.Header, error) {
	h := req.Header()
	ip := ipFromContext(ctx)
	if ip == "" {
		ip = hostOf(req.Peer().Addr)
	}
	p, err := a.auth.authenticate(ctx, bearer(h), ip)
	if err != nil {
		return nil, nil, err
	}
	org, err := pick(h, p)
	if err != nil {
		return nil, nil, err
	}
	if err := state.ValidateID("org", org); err != nil {
		return nil, nil, err
	}
	for _, id := range ids {
		if err := state.ValidateID(id[0], id[1]); err != nil {
			return nil, nil, err
		}
	}
	if err := p.authorize(org, true); err != nil {
		return nil, nil, err
	}
	timeout := a.cfg.ConfirmTimeout
	if v := h.Get(adminapi.HeaderConfirmTimeout); v != "" {
		if timeout, err = parseConfirmTimeout(v); err != nil {
			return nil, nil, err
		}
	}
	res, err := write(p, org)
	if err != nil {
		return nil, nil, err
	}
	c := a.confirm(ctx, res.Revision, timeout)
	a.logWrite("zitadel", op, p, subjectOf(org, ids), res, c)
	out := http.Header{}
	setConfirmHeaders(out, c)
	return &zitadel.ObjectDetails{
		Sequence:      uint64(res.Revision),
		ChangeDate:    timestamppb.New(res.ChangedAt),
		ResourceOwner: res.OrgID,
	}, out, nil
}

func subjectOf(org string, ids [][2]string) string {
	s := "org " + org
	for _, id := range ids {
		s += " " + id[0] + " " + id[1]
	}
	return s
}

func hostOf(addr string) string {
	if i := strings.LastIndexByte(addr, ':'); i > 0 {
		return strings.Trim(addr[:i], "[]")
	}
	return addr
}

// change is a write by p through the native API: the store checks, inside its transaction, that the records it
// touches are in the token's scope.
func change(p *principal, reason string) state.Change {
	return state.Change{Actor: p.actor, Reason: reason, Via: state.SourceNative, Scoped: !p.tok.AllOrgs, Orgs: p.tok.Orgs}
}

// changeVia is a write by p through another API than the native one.
func changeVia(p *principal, via state.Source, reason string) state.Change {
	c := change(p, reason)
	c.Via = via
	return c
}

func respond[T any](msg *T, hdr http.Header) *connect.Response[T] {
	resp := connect.NewResponse(msg)
	for k, v := range hdr {
		resp.Header()[k] = v
	}
	return resp
}

// zitadelWriteFunc is the store write of one ZITADEL call, on the org the call was checked for.
type zitadelWriteFunc func(p *principal, org string) (state.Result, error)

// zitadelTarget is what a ZITADEL call deactivates or reactivates: the org the call acts on, one of its
// projects, or one of its apps.
type zitadelTarget struct {
	what         string // "org", "project" or "app"
	project, app string
	deactivate   bool
}

// ids are the target's IDs below the org, for validation and the log.
func (t zitadelTarget) ids() [][2]string {
	switch t.what {
	case "project":
		return [][2]string{{"project", t.project}}
	case "app":
		return [][2]string{{"project", t.project}, {"app", t.app}}
	}
	return nil
}

// zitadelSet is the store write of every ZITADEL API version's deactivation or reactivation of t.
func (a *API) zitadelSet(ctx context.Context, t zitadelTarget, op string) zitadelWriteFunc {
	return func(p *principal, org string) (state.Result, error) {
		c := changeVia(p, state.SourceZitadel, "zitadel "+op)
		switch t.what {
		case "project":
			return a.store.SetProjectState(ctx, t.project, org, t.deactivate, c)
		case "app":
			return a.store.SetAppState(ctx, t.project, t.app, org, t.deactivate, c)
		case "org":
			if t.deactivate {
				return a.store.DeactivateOrg(ctx, org, zitadelOps, false, c)
			}
			return a.store.ReactivateOrg(ctx, org, c)
		}
		return state.Result{}, fmt.Errorf("zitadel target %q", t.what) // a bug: every method names one
	}
}

// zitadelV1 runs one ManagementService method on t through the shared write path. Resp is the method's
// response message: every one of them is {details}, set here to the write's details.
func zitadelV1[Resp any, R interface {
	*Resp
	proto.Message
}](ctx context.Context, a *API, op string, req connect.AnyRequest, t zitadelTarget) (*connect.Response[Resp], error) {
	d, h, err := a.zitadelWrite(ctx, op, req, t.ids(), a.zitadelSet(ctx, t, op))
	if err != nil {
		return nil, err
	}
	msg := R(new(Resp))
	m := msg.ProtoReflect()
	m.Set(m.Descriptor().Fields().ByName("details"), protoreflect.ValueOfMessage(d.ProtoReflect()))
	return respond((*Resp)(msg), h), nil
}

func (s *zitadelService) DeactivateOrg(ctx context.Context, req *connect.Request[management.DeactivateOrgRequest]) (*connect.Response[management.DeactivateOrgResponse], error) {
	return zitadelV1[management.DeactivateOrgResponse](ctx, s.a, "DeactivateOrg", req, zitadelTarget{what: "org", deactivate: true})
}

func (s *zitadelService) ReactivateOrg(ctx context.Context, req *connect.Request[management.ReactivateOrgRequest]) (*connect.Response[management.ReactivateOrgResponse], error) {
	return zitadelV1[management.ReactivateOrgResponse](ctx, s.a, "ReactivateOrg", req, zitadelTarget{what: "org"})
}

func (s *zitadelService) DeactivateProject(ctx context.Context, req *connect.Request[management.DeactivateProjectRequest]) (*connect.Response[management.DeactivateProjectResponse], error) {
	return zitadelV1[management.DeactivateProjectResponse](ctx, s.a, "DeactivateProject", req,
		zitadelTarget{what: "project", project: req.Msg.GetId(), deactivate: true})
}

func (s *zitadelService) ReactivateProject(ctx context.Context, req *connect.Request[management.ReactivateProjectRequest]) (*connect.Response[management.ReactivateProjectResponse], error) {
	return zitadelV1[management.ReactivateProjectResponse](ctx, s.a, "ReactivateProject", req,
		zitadelTarget{what: "project", project: req.Msg.GetId()})
}

func (s *zitadelService) DeactivateApp(ctx context.Context, req *connect.Request[management.DeactivateAppRequest]) (*connect.Response[management.DeactivateAppResponse], error) {
	return zitadelV1[management.DeactivateAppResponse](ctx, s.a, "DeactivateApp", req,
		zitadelTarget{what: "app", project: req.Msg.GetProjectId(), app: req.Msg.GetAppId(), deactivate: true})
}

func (s *zitadelService) ReactivateApp(ctx context.Context, req *connect.Request[management.ReactivateAppRequest]) (*connect.Response[management.ReactivateAppResponse], error) {
	return zitadelV1[management.ReactivateAppResponse](ctx, s.a, "ReactivateApp", req,
		zitadelTarget{what: "app", project: req.Msg.GetProjectId(), app: req.Msg.GetAppId()})
}
