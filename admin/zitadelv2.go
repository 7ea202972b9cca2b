package admin

import (
	"context"
	"net/http"

	"connectrpc.com/connect"
	"connectrpc.com/vanguard"
	application "github.com/deact/deact/admin/proto/zitadel/application/v2"
	"github.com/deact/deact/admin/proto/zitadel/application/v2/applicationconnect"
	org "github.com/deact/deact/admin/proto/zitadel/org/v2"
	"github.com/deact/deact/admin/proto/zitadel/org/v2/orgconnect"
	project "github.com/deact/deact/admin/proto/zitadel/project/v2"
	"github.com/deact/deact/admin/proto/zitadel/project/v2/projectconnect"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// ZITADEL's v2 resource APIs, the ones its documentation points clients to instead of the deprecated v1
// management API. They share the v1 write path (authentication, org check, store write, confirmation headers,
// error shape); what differs is where the org comes from and what the answer holds:
//
//   - zitadel.org.v2.OrganizationService names the org in the request (REST: the path); x-zitadel-orgid is not
//     consulted. It is the only one of the three with REST routes, in ZITADEL as here.
//   - zitadel.project.v2.ProjectService and zitadel.application.v2.ApplicationService act in the org of
//     x-zitadel-orgid or the token's home org, as v1 does; gRPC, gRPC-Web and Connect only.
//   - Answers carry only the change date (v2 has no sequence or resource owner); the X-Deact-Confirmed headers
//     are the same as v1's.
type (
	orgV2Service struct {
		orgconnect.UnimplementedOrganizationServiceHandler
		a *API
	}
	projectV2Service struct {
		projectconnect.UnimplementedProjectServiceHandler
		a *API
	}
	applicationV2Service struct {
		applicationconnect.UnimplementedApplicationServiceHandler
		a *API
	}
)

// zitadelV2Services are the v2 services, for the transcoder that serves v1, with the same limits and codecs.
func (a *API) zitadelV2Services(limit int, opts []vanguard.ServiceOption) []*vanguard.Service {
	read := connect.WithReadMaxBytes(limit)
	var svcs []*vanguard.Service
	add := func(path string, h http.Handler) { svcs = append(svcs, vanguard.NewService(path, h, opts...)) }
	add(orgconnect.NewOrganizationServiceHandler(&orgV2Service{a: a}, read))
	add(projectconnect.NewProjectServiceHandler(&projectV2Service{a: a}, read))
	add(applicationconnect.NewApplicationServiceHandler(&applicationV2Service{a: a}, read))
	return svcs
}

// orgInRequest is the v2 rule for the org: the one the request names, which it must name.
func orgInRequest(id string) orgPicker {
	return func(http.Header, *principal) (string, error) {
		if id == "" {
			return "", newError(kindInvalid, "DEACT-NoOrg", "no organization: organization_id is required")
		}
		return id, nil
	}
}

// zitadelV2Write runs a v2 call through the shared ZITADEL write path and answers with the message answer
// builds from the change date.
func zitadelV2Write[T any](ctx context.Context, a *API, op string, req connect.AnyRequest, pick orgPicker, ids [][2]string,
	write zitadelWriteFunc, answer func(*timestamppb.Timestamp) *T) (*connect.Response[T], error) {
	d, h, err := a.zitadelWriteOrg(ctx, op, req, pick, ids, write)
	if err != nil {
		return nil, err
	}
	return respond(answer(d.GetChangeDate()), h), nil
}

func (s *orgV2Service) DeactivateOrganization(ctx context.Context, req *connect.Request[org.DeactivateOrganizationRequest]) (*connect.Response[org.DeactivateOrganizationResponse], error) {
	const op = "v2.DeactivateOrganization"
	return zitadelV2Write(ctx, s.a, op, req, orgInRequest(req.Msg.GetOrganizationId()), nil, s.a.zitadelSetOrg(ctx, true, op),
		func(t *timestamppb.Timestamp) *org.DeactivateOrganizationResponse {
			return &org.DeactivateOrganizationResponse{ChangeDate: t}
		})
}

func (s *orgV2Service) ActivateOrganization(ctx context.Context, req *connect.Request[org.ActivateOrganizationRequest]) (*connect.Response[org.ActivateOrganizationResponse], error) {
	const op = "v2.ActivateOrganization"
	return zitadelV2Write(ctx, s.a, op, req, orgInRequest(req.Msg.GetOrganizationId()), nil, s.a.zitadelSetOrg(ctx, false, op),
		func(t *timestamppb.Timestamp) *org.ActivateOrganizationResponse {
			return &org.ActivateOrganizationResponse{ChangeDate: t}
		})
}

func (s *projectV2Service) DeactivateProject(ctx context.Context, req *connect.Request[project.DeactivateProjectRequest]) (*connect.Response[project.DeactivateProjectResponse], error) {
	const op = "v2.DeactivateProject"
	id := req.Msg.GetProjectId()
	return zitadelV2Write(ctx, s.a, op, req, orgFromHeader, [][2]string{{"project", id}}, s.a.zitadelSetProject(ctx, id, true, op),
		func(t *timestamppb.Timestamp) *project.DeactivateProjectResponse {
			return &project.DeactivateProjectResponse{ChangeDate: t}
		})
}

func (s *projectV2Service) ActivateProject(ctx context.Context, req *connect.Request[project.ActivateProjectRequest]) (*connect.Response[project.ActivateProjectResponse], error) {
	const op = "v2.ActivateProject"
	id := req.Msg.GetProjectId()
	return zitadelV2Write(ctx, s.a, op, req, orgFromHeader, [][2]string{{"project", id}}, s.a.zitadelSetProject(ctx, id, false, op),
		func(t *timestamppb.Timestamp) *project.ActivateProjectResponse {
			return &project.ActivateProjectResponse{ChangeDate: t}
		})
}

func (s *applicationV2Service) DeactivateApplication(ctx context.Context, req *connect.Request[application.DeactivateApplicationRequest]) (*connect.Response[application.DeactivateApplicationResponse], error) {
	const op = "v2.DeactivateApplication"
	pid, aid := req.Msg.GetProjectId(), req.Msg.GetApplicationId()
	return zitadelV2Write(ctx, s.a, op, req, orgFromHeader, [][2]string{{"project", pid}, {"app", aid}}, s.a.zitadelSetApp(ctx, pid, aid, true, op),
		func(t *timestamppb.Timestamp) *application.DeactivateApplicationResponse {
			return &application.DeactivateApplicationResponse{DeactivationDate: t}
		})
}

func (s *applicationV2Service) ReactivateApplication(ctx context.Context, req *connect.Request[application.ReactivateApplicationRequest]) (*connect.Response[application.ReactivateApplicationResponse], error) {
	const op = "v2.ReactivateApplication"
	pid, aid := req.Msg.GetProjectId(), req.Msg.GetApplicationId()
	return zitadelV2Write(ctx, s.a, op, req, orgFromHeader, [][2]string{{"project", pid}, {"app", aid}}, s.a.zitadelSetApp(ctx, pid, aid, false, op),
		func(t *timestamppb.Timestamp) *application.ReactivateApplicationResponse {
			return &application.ReactivateApplicationResponse{ReactivationDate: t}
		})
}
