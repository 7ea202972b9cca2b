package daemon_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/deact/deact/admin/adminapi"
	"github.com/deact/deact/daemon"
	"github.com/deact/deact/internal/wait"
	"github.com/deact/deact/source"
	"github.com/deact/deact/state"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/genproto/googleapis/rpc/code"
)

// mirrorSource is a source whose sync mirrors org 4242 as token-disabled upstream, and whose handler answers
// 204, standing in for a connector.
type mirrorSource struct{}

func (mirrorSource) Name() string     { return "upstream" }
func (mirrorSource) Kind() string     { return "test" }
func (mirrorSource) Upstream() string { return "https://idp.example" }
func (mirrorSource) Handler(env source.Env) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) })
}
func (mirrorSource) Sync(ctx context.Context, env source.Env) error {
	start := time.Now()
	res, err := env.Store.ApplyMirror(ctx, []state.MirrorRecord{{Source: "upstream", Kind: state.MirrorOrg, ID: "4242",
		Disabled: state.OpLogin | state.OpToken, Sequence: 1}}, state.Change{Actor: "source upstream"})
	env.Status.Reconciled(start, int64(res.Written), 1, 0, err)
	<-ctx.Done()
	return nil
}

// TestDaemonRunsSources: an admin node runs its sources: the mirrored deactivation denies on the ext_authz
// listener, the handler is served under /v1/sources/{name}/, and /v1/sources names this node as the leader.
func TestDaemonRunsSources(t *testing.T) {
	t.Parallel()
	d := start(t, func(c *daemon.Config) {
		c.Sources = []source.Source{mirrorSource{}}
		c.SourceLeaderTTL = 2 * time.Second
	})
	check := authv3.NewAuthorizationClient(d.authz(t))
	wait.Eventually(t, "mirrored org denied", func() bool {
		resp, err := check.Check(context.Background(), tokenRequest("4242"))
		return err == nil && resp.Status.Code == int32(code.Code_PERMISSION_DENIED)
	})
	if status, _ := post(t, "http://"+d.AdminAddr+"/v1/sources/upstream/events", nil, "{}"); status != http.StatusNoContent {
		t.Fatalf("source handler: %d", status)
	}
	wait.Eventually(t, "source status", func() bool {
		req, _ := http.NewRequest("GET", "http://"+d.AdminAddr+"/v1/sources", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		var v adminapi.SourcesResponse
		return json.Unmarshal(b, &v) == nil && len(v.Sources) == 1 && v.Sources[0].Leader == "n1" && v.Sources[0].Reconciles == 1
	})
}
