package admin

import (
	"net/http"
	"time"

	"github.com/deact/deact/admin/adminapi"
	"github.com/deact/deact/state"
)

// sources lists every source's status. Any valid token may read it: it names no org, only the upstream's URL
// and counts, and operators of a single org need to see whether the sync behind their deactivations is healthy.
func (a *API) sources(r *http.Request, _ *principal) (int, any, error) {
	all, err := a.store.ListSourceStatus(r.Context())
	if err != nil {
		return 0, nil, err
	}
	now := time.Now()
	out := adminapi.SourcesResponse{Sources: make([]adminapi.SourceView, 0, len(all))}
	for _, st := range all {
		out.Sources = append(out.Sources, adminapi.SourceView{SourceStatus: st, AgeMs: max(now.Sub(st.UpdatedAt).Milliseconds(), 0)})
	}
	return http.StatusOK, out, nil
}

// mirrored answers what the sources mirror of one org, project or app. An org's records need the org in the
// token's scope; a project's or app's records are shown only when the token may act on the org they name (a
// record with no owner only to a token for all orgs).
func (a *API) mirrored(kind state.MirrorKind) nativeHandler {
	return func(r *http.Request, p *principal) (int, any, error) {
		id, project := r.PathValue("id"), ""
		if kind == state.MirrorApp {
			id, project = r.PathValue("app"), r.PathValue("project")
		}
		if kind == state.MirrorOrg {
			if err := state.ValidateID("org", id); err != nil {
				return 0, nil, err
			}
			if err := p.authorize(id, false); err != nil {
				return 0, nil, err
			}
		}
		recs, err := a.store.MirroredRecords(r.Context(), kind, project, id)
		if err != nil {
			return 0, nil, err
		}
		out := adminapi.MirrorResponse{Records: []state.Versioned[state.MirrorRecord]{}}
		for _, v := range recs {
			if kind == state.MirrorOrg || p.tok.Allows(v.Record.OrgID) {
				out.Records = append(out.Records, v)
			}
		}
		return http.StatusOK, out, nil
	}
}
