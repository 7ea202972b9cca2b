package authz

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// JWTAuthnFilter is the dynamic metadata namespace of Envoy's jwt_authn filter, read for verified claims.
const JWTAuthnFilter = "envoy.filters.http.jwt_authn"

// Check implements envoy.service.auth.v3.Authorization: it converts the CheckRequest, decides, and converts the
// decision. A deny is a successful call with status PERMISSION_DENIED and a denied_response shaped for the
// client; the only error is UNAVAILABLE while the replica is not ready or the node is fenced, so Envoy never
// gets an allow from a replica without state or from a node writers no longer wait for (configure
// failure_mode_allow: false).
func (a *Authorizer) Check(ctx context.Context, cr *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	start := time.Now()
	var req Request
	requestFromCheck(cr, &req)
	var d Decision
	if err := a.decideNow(&req, &d); err != nil {
		a.recordUnavailable(transportGRPC, start)
		return nil, status.Error(codes.Unavailable, unavailableMessage(err))
	}
	var resp *authv3.CheckResponse
	if d.Allow {
		resp = a.allowCheckResponse(d.Revision)
	} else {
		resp = deniedCheckResponse(&d, &req)
		if a.revisionHeader {
			// The revision a deny was decided at lets operators (and the soak test) tie it to the state.
			dr := resp.GetDeniedResponse()
			dr.Headers = append(dr.Headers, headerOption(HeaderRevision, strconv.FormatInt(d.Revision, 10)))
		}
	}
	a.record(ctx, transportGRPC, &d, start)
	return resp, nil
}

// requestFromCheck fills r from an Envoy CheckRequest without copying headers (unless Envoy sent them as a raw
// header_map) or the body (unless sent as raw_body).
func requestFromCheck(cr *authv3.CheckRequest, r *Request) {
	attrs := cr.GetAttributes()
	h := attrs.GetRequest().GetHttp()
	r.Method = h.GetMethod()
	target := h.GetPath()
	r.Headers = h.GetHeaders()
	if r.Headers == nil {
		if hm := h.GetHeaderMap().GetHeaders(); len(hm) > 0 {
			r.Headers = make(map[string]string, len(hm))
			for _, hv := range hm {
				k := strings.ToLower(hv.GetKey())
				v := string(hv.GetRawValue())
				if v == "" {
					v = hv.GetValue()
				}
				if old, ok := r.Headers[k]; ok {
					v = old + "," + v
				}
				r.Headers[k] = v
			}
		}
	}
	if r.Method == "" {
		r.Method = r.Headers[":method"]
	}
	if target == "" {
		target = r.Headers[":path"]
	}
	target, _, _ = strings.Cut(target, "#")
	r.Path, r.Query, _ = strings.Cut(target, "?")
	r.Body = h.GetBody()
	if raw := h.GetRawBody(); len(raw) > 0 {
		r.Body = string(raw)
	}
	r.Route = attrs.GetContextExtensions()
	r.JWTMetadata = attrs.GetMetadataContext().GetFilterMetadata()[JWTAuthnFilter]
}

// allowResponse is a CheckResponse shared by every allow at one revision: protobuf messages may be marshalled
// concurrently, and this one is never modified after it is published.
type allowResponse struct {
	rev  int64
	resp *authv3.CheckResponse
}

func (a *Authorizer) allowCheckResponse(rev int64) *authv3.CheckResponse {
	if !a.revisionHeader {
		rev = 0
	}
	if c := a.allowResp.Load(); c != nil && c.rev == rev {
		return c.resp
	}
	resp := &authv3.CheckResponse{Status: &rpcstatus.Status{Code: int32(codes.OK)}}
	if a.revisionHeader {
		resp.HttpResponse = &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{
			Headers: []*corev3.HeaderValueOption{headerOption(HeaderRevision, strconv.FormatInt(rev, 10))},
		}}
	}
	a.allowResp.Store(&allowResponse{rev: rev, resp: resp})
	return resp
}

func deniedCheckResponse(d *Decision, req *Request) *authv3.CheckResponse {
	dn := shape(d, req)
	headers := make([]*corev3.HeaderValueOption, len(dn.headers))
	for i, h := range dn.headers {
		headers[i] = headerOption(h[0], h[1])
	}
	return &authv3.CheckResponse{
		Status: &rpcstatus.Status{Code: int32(codes.PermissionDenied), Message: string(d.Reason)},
		HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{
			Status:  &typev3.HttpStatus{Code: typev3.StatusCode(dn.status)},
			Headers: headers,
			Body:    dn.body,
		}},
	}
}

// headerOption sets (never appends to) a header, so a client cannot smuggle its own value next to deact's.
func headerOption(k, v string) *corev3.HeaderValueOption {
	return &corev3.HeaderValueOption{
		Header:       &corev3.HeaderValue{Key: k, Value: v},
		AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD,
	}
}

// unavailableMessage says why a decision was refused.
func unavailableMessage(err error) string {
	if errors.Is(err, ErrFenced) {
		return "deact: node fenced: not current with etcd"
	}
	return "deact: state replica not ready"
}
