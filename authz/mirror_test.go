package authz

import (
	"context"
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/deact/deact/state"
)

// TestCheckMirroredLayers: decisions through a real replica deny when any layer does. The fixtures are local
// (all active); a source mirrors what its upstream says, and the cases are where the layers disagree.
func TestCheckMirroredLayers(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{})
	ctx := context.Background()
	token := func(body string) *authv3.CheckRequest {
		return checkRequest(t, httpReq(`{"method":"POST","path":"/oauth/v2/token",
			"headers":{"content-type":"application/x-www-form-urlencoded"},"body":"`+body+`"}`, ""))
	}
	login := func(name string) *authv3.CheckRequest {
		return checkRequest(t, httpReq(`{"method":"POST","path":"/webconsole/api/Login",
			"headers":{"content-type":"application/json"},"body":"{\"username\":\"`+name+`\",\"password\":\"x\"}"}`, ""))
	}
	portal := token("grant_type=client_credentials&client_id=400%40acme-portal&client_secret=s")
	cli := token("grant_type=client_credentials&client_id=401%40acme-cli&client_secret=s")
	wantAllow(t, e.check(t, portal), "before any mirrored record")
	wantAllow(t, e.check(t, cli), "before any mirrored record")

	apply := func(recs ...state.MirrorRecord) {
		t.Helper()
		res, err := e.store.ApplyMirror(ctx, recs, state.Change{Actor: "source zitadel"})
		if err != nil {
			t.Fatal(err)
		}
		e.applied(t, res.Revision)
	}

	// Upstream says another org (555, deactivated) owns app 400: both owners are checked.
	apply(state.MirrorRecord{Source: "zitadel", Kind: state.MirrorOrg, ID: "555", Disabled: state.OpLogin | state.OpToken, Sequence: 3},
		state.MirrorRecord{Source: "zitadel", Kind: state.MirrorApp, ID: appPortal, ProjectID: projMain, OrgID: "555", Sequence: 4})
	wantDeny(t, e.check(t, portal), checkCase{status: 400, reason: ReasonOrgDeactivated}, nil)
	wantAllow(t, e.check(t, cli), "for an app the mirrored layer does not touch")

	// Upstream removed an app that claims the CLI's client ID: the local app is active, the tombstone denies.
	apply(state.MirrorRecord{Source: "zitadel", Kind: state.MirrorApp, ID: "999", ProjectID: projMain, OrgID: orgAcme,
		ClientIDs: []string{clientCLI}, Sequence: 5},
		state.MirrorRecord{Source: "zitadel", Kind: state.MirrorApp, ID: "999", ProjectID: projMain, Removed: true, Sequence: 6})
	wantDeny(t, e.check(t, cli), checkCase{status: 400, reason: ReasonAppDeactivated}, nil)

	// A mirrored domain of a deactivated org denies a Commvault login through it, though no local org has it.
	apply(state.MirrorRecord{Source: "commvault", Kind: state.MirrorOrg, ID: "777", Disabled: state.OpLogin,
		Domains: []string{"Mirrored.Example"}, Sequence: 1})
	wantDeny(t, e.check(t, login(`mirrored.example\\\\alice`)), checkCase{status: 403, reason: ReasonOrgDeactivated}, nil)

	// The upstream reactivates what it deactivated: a local deactivation still stands.
	if _, err := e.store.SetProjectState(ctx, projRep, orgAcme, true, state.Change{Actor: "admin"}); err != nil {
		t.Fatal(err)
	}
	apply(state.MirrorRecord{Source: "zitadel", Kind: state.MirrorProject, ID: projRep, OrgID: orgAcme, Sequence: 9})
	wantDeny(t, e.check(t, token("grant_type=client_credentials&client_id=402%40reports&client_secret=s")),
		checkCase{status: 400, reason: ReasonProjectDeactivated}, nil)
}
