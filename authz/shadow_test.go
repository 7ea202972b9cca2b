package authz

import (
	"context"
	"testing"
)

// TestCheckAppRecordsCannotShadow: where etcd holds two app records with one app ID under two projects (the
// store refuses to write that now, but older state or a hand-written key may hold it), the deactivated one is
// never shadowed by the active one: a request naming the app ID is denied, a request with the deactivated
// record's client ID is denied, and only the other record's own client ID passes.
func TestCheckAppRecordsCannotShadow(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{})
	ctx := context.Background()
	cli := e.cli
	var rev int64
	for _, kv := range [][2]string{
		// B's app, deactivated, and A's record claiming the same app ID under A's project, written later.
		{"/deact/v1/state/apps/" + projRep + "/777", `{"id":"777","projectId":"` + projRep + `","orgId":"` + orgAcme + `","clientIds":["777@b"],"state":"deactivated"}`},
		{"/deact/v1/state/clients/777@b", `{"clientId":"777@b","appId":"777","projectId":"` + projRep + `","orgId":"` + orgAcme + `"}`},
		{"/deact/v1/state/apps/projA/777", `{"id":"777","projectId":"projA","orgId":"` + orgOther + `","clientIds":["777@a"],"state":"active"}`},
		{"/deact/v1/state/clients/777@a", `{"clientId":"777@a","appId":"777","projectId":"projA","orgId":"` + orgOther + `"}`},
	} {
		resp, err := cli.Put(ctx, kv[0], kv[1])
		if err != nil {
			t.Fatal(err)
		}
		rev = resp.Header.Revision
	}
	e.applied(t, rev)
	token := func(clientID string) string {
		return httpReq(`{"method":"POST","path":"/oauth/v2/token",
			"headers":{"content-type":"application/x-www-form-urlencoded"},
			"body":"grant_type=client_credentials&client_id=`+clientID+`&client_secret=s3cret"}`, "")
	}
	for _, c := range []struct {
		name, req string
		deny      int // the deny's HTTP status, 0 for an allow
	}{
		{"app id in the route facts", httpReq(`{"method":"POST","path":"/x","headers":{}}`, `"context_extensions":{"op":"token","app_id":"777"}`), 403},
		{"client id of the deactivated record", token("777%40b"), 400},
		{"client id of the active record", token("777%40a"), 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			resp := e.check(t, checkRequest(t, c.req))
			if c.deny == 0 {
				wantAllow(t, resp, "for %s", c.name)
				return
			}
			wantDeny(t, resp, checkCase{status: c.deny, reason: ReasonAppDeactivated}, nil)
		})
	}
}
