package admin

import (
	"context"
	"errors"
	"net/http"

	"connectrpc.com/connect"
	"connectrpc.com/vanguard"
	application "github.com/deact/deact/admin/proto/zitadel/application/v2"
	"github.com/deact/deact/admin/proto/zitadel/application/v2/applicationconnect"
	org "github.com/deact/deact/admin/proto/zitadel/org/v2"
	"github.com/deact/deact/admin/proto/zitadel/org/v2/orgconnect"
	project "github.com/deact/deact/admin/proto/zitadel/project/v2"
	"github.com/deact/deact/admin/proto/zitadel/project/v2/projectconnect"
	"github.com/deact/deact/state"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// ZITADEL's v2 resource APIs, the ones its documentation points clients to instead of the deprecated v1
// management API. They share the v1 write path (authentication, org check, store write, confirmation headers,
// error shape); what differs is where the org comes from and what the answer holds:
//
//   - zitadel.org.v2.OrganizationService names the org in the request (REST: the path); x-zitadel-orgid is not
//     consulted. It is the only one of the three with REST routes, in ZITADEL as here.
//   - zitadel.project.v2.ProjectService and zitadel.application.v2.ApplicationService name no org: they act
//     in the org of x-zitadel-orgid, else the record's own org, else the token's home org (orgOfRecord); gRPC,
//     gRPC-Web and Connect only.
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

// orgOfRecord is the v2 rule for projects and apps, whose requests name no org: x-zitadel-orgid if sent; else
// the org owning the record, if the token may act on it (ZITADEL checks permissions on the resource's owner, so
// its v2 clients send no org); else the v1 rule. So a record of an org outside the token's scope is NOT_FOUND, as
// in v1, without naming its owner, and an unknown record is created in the token's home org. The store checks
// the owner again in the write's transaction.
func orgOfRecord(owner func() (string, error)) orgPicker {
	return func(h http.Header, p *principal) (string, error) {
		if h.Get(HeaderZitadelOrg) != "" {
			return orgFromHeader(h, p)
		}
		org, err := owner()
		switch {
		case err == nil && org != "" && p.tok.Allows(org):
			return org, nil
		case err != nil && !errors.Is(err, state.ErrNotFound) && !errors.Is(err, state.ErrInvalidID):
			return "", err
		}
		return orgFromHeader(h, p)
	}
}

func (a *API) projectOwner(ctx context.Context, id string) func() (string, error) {
	return func() (string, error) {
		v, err := a.store.GetProject(ctx, id)
		return v.Record.OrgID, err
	}
}

func (a *API) appOwner(ctx context.Context, projectID, appID string) func() (string, error) {
	return func() (string, error) {
		v, err := a.store.GetApp(ctx, projectID, appID)
		return v.Record.OrgID, err
	}
}

// zitadelV2Write runs a v2 call through the shared ZITADEL write path; v2 answers carry only the change date.
func (a *API) zitadelV2Write(ctx context.Context, op string, req connect.AnyRequest, pick orgPicker, ids [][2]string,
	write zitadelWriteFunc) (*timestamppb.Timestamp, http.Header, error) {
	d, h, err := a.zitadelWriteOrg(ctx, op, req, pick, ids, write)
	return d.GetChangeDate(), h, err
}

// answer is the response to a v2 call: msg with the confirmation headers, or the call's error.
func answer[T any](msg *T, h http.Header, err error) (*connect.Response[T], error) {
	if err != nil {
		return nil, err
	}
	return respond(msg, h), nil
}

func (s *orgV2Service) set(ctx context.Context, req connect.AnyRequest, id string, deactivate bool, op string) (*timestamppb.Timestamp, http.Header, error) {
	t := zitadelTarget{what: "org", deactivate: deactivate}
	return s.a.zitadelV2Write(ctx, op, req, orgInRequest(id), t.ids(), s.a.zitadelSet(ctx, t, op))
}

func (s *orgV2Service) DeactivateOrganization(ctx context.Context, req *connect.Request[org.DeactivateOrganizationRequest]) (*connect.Response[org.DeactivateOrganizationResponse], error) {
	t, h, err := s.set(ctx, req, req.Msg.GetOrganizationId(), true, "v2.DeactivateOrganization")
	return answer(&org.DeactivateOrganizationResponse{ChangeDate: t}, h, err)
}

func (s *orgV2Service) ActivateOrganization(ctx context.Context, req *connect.Request[org.ActivateOrganizationRequest]) (*connect.Response[org.ActivateOrganizationResponse], error) {
	t, h, err := s.set(ctx, req, req.Msg.GetOrganizationId(), false, "v2.ActivateOrganization")
	return answer(&org.ActivateOrganizationResponse{ChangeDate: t}, h, err)
}

func (s *projectV2Service) set(ctx context.Context, req connect.AnyRequest, id string, deactivate bool, op string) (*timestamppb.Timestamp, http.Header, error) {
	t := zitadelTarget{what: "project", project: id, deactivate: deactivate}
	return s.a.zitadelV2Write(ctx, op, req, orgOfRecord(s.a.projectOwner(ctx, id)), t.ids(), s.a.zitadelSet(ctx, t, op))
}

func (s *projectV2Service) DeactivateProject(ctx context.Context, req *connect.Request[project.DeactivateProjectRequest]) (*connect.Response[project.DeactivateProjectResponse], error) {
	t, h, err := s.set(ctx, req, req.Msg.GetProjectId(), true, "v2.DeactivateProject")
	return answer(&project.DeactivateProjectResponse{ChangeDate: t}, h, err)
}

func (s *projectV2Service) ActivateProject(ctx context.Context, req *connect.Request[project.ActivateProjectRequest]) (*connect.Response[project.ActivateProjectResponse], error) {
	t, h, err := s.set(ctx, req, req.Msg.GetProjectId(), false, "v2.ActivateProject")
	return answer(&project.ActivateProjectResponse{ChangeDate: t}, h, err)
}

func (s *applicationV2Service) set(ctx context.Context, req connect.AnyRequest, projectID, appID string, deactivate bool, op string) (*timestamppb.Timestamp, http.Header, error) {
	t := zitadelTarget{what: "app", project: projectID, app: appID, deactivate: deactivate}
	return s.a.zitadelV2Write(ctx, op, req, orgOfRecord(s.a.appOwner(ctx, projectID, appID)), t.ids(), s.a.zitadelSet(ctx, t, op))
}

func (s *applicationV2Service) DeactivateApplication(ctx context.Context, req *connect.Request[application.DeactivateApplicationRequest]) (*connect.Response[application.DeactivateApplicationResponse], error) {
	t, h, err := s.set(ctx, req, req.Msg.GetProjectId(), req.Msg.GetApplicationId(), true, "v2.DeactivateApplication")
	return answer(&application.DeactivateApplicationResponse{DeactivationDate: t}, h, err)
}

func (s *applicationV2Service) ReactivateApplication(ctx context.Context, req *connect.Request[application.ReactivateApplicationRequest]) (*connect.Response[application.ReactivateApplicationResponse], error) {
	t, h, err := s.set(ctx, req, req.Msg.GetProjectId(), req.Msg.GetApplicationId(), false, "v2.ReactivateApplication")
	return answer(&application.ReactivateApplicationResponse{ReactivationDate: t}, h, err)
}
