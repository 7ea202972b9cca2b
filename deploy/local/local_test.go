package local_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/deact/deact/deploy/local"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/genproto/googleapis/rpc/code"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

func checkOrg(t *testing.T, c authv3.AuthorizationClient, org string) int32 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := c.Check(ctx, &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Method: "POST", Path: "/oauth/v2/token", Headers: map[string]string{"x-zitadel-orgid": org},
		}},
		ContextExtensions: map[string]string{"op": "token"},
	}})
	if err != nil {
		t.Fatalf("Check: %v", err)
	}
	return resp.Status.Code
}

func deactivate(t *testing.T, c *local.Cluster, org string, deactivate bool) (status int, confirmed string) {
	t.Helper()
	action := "_deactivate"
	if !deactivate {
		action = "_reactivate"
	}
	req, _ := http.NewRequest("POST", c.AdminURL()+"/management/v1/orgs/me/"+action, strings.NewReader("{}"))
	req.Header.Set("Authorization", "Bearer "+c.AdminToken)
	req.Header.Set("x-zitadel-orgid", org)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, resp.Header.Get("X-Deact-Confirmed")
}

// TestLocalClusterFanOut: a deactivation through the admin node reaches all 3 gateways (each denies on its
// own gRPC Check the moment the admin answers 3/3), and with one etcd member stopped enforcement goes on and a
// new deactivation still reaches every gateway.
func TestLocalClusterFanOut(t *testing.T) {
	t.Run("in-process", func(t *testing.T) { testFanOut(t, local.Config{Dir: t.TempDir()}) })
	t.Run("processes", func(t *testing.T) {
		bin := filepath.Join(t.TempDir(), "deactd")
		if out, err := exec.Command("go", "build", "-o", bin, "../../cmd/deactd").CombinedOutput(); err != nil {
			t.Fatalf("go build deactd: %v\n%s", err, out)
		}
		testFanOut(t, local.Config{Dir: t.TempDir(), Exec: bin})
	})
}

func testFanOut(t *testing.T, cfg local.Config) {
	c, err := local.Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	// The admin token is on no child's command line (every user can read those).
	for _, n := range append(slices.Clone(c.Gateways), c.Admin) {
		if n.PID == 0 {
			continue
		}
		cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", n.PID))
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(cmdline), c.AdminToken) {
			t.Errorf("%s has the admin token on its command line", n.ID)
		}
	}
	var clients []authv3.AuthorizationClient
	for _, addr := range c.AuthzAddrs() {
		conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		clients = append(clients, authv3.NewAuthorizationClient(conn))
	}
	// Every gateway must have registered before a write can be confirmed by all of them.
	deadline := time.Now().Add(10 * time.Second)
	for {
		status, confirmed := deactivate(t, c, "warmup", true)
		if status == 200 && confirmed == "3/3" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("gateways never all registered (%d, %q)", status, confirmed)
		}
		_, _ = deactivate(t, c, "warmup", false)
		time.Sleep(50 * time.Millisecond)
	}

	if status, confirmed := deactivate(t, c, "1001", true); status != 200 || confirmed != "3/3" {
		t.Fatalf("deactivate: %d, confirmed %q", status, confirmed)
	}
	for i, cl := range clients {
		if got := checkOrg(t, cl, "1001"); got != int32(code.Code_PERMISSION_DENIED) {
			t.Fatalf("gateway %d: code %d, want PERMISSION_DENIED", i+1, got)
		}
	}

	c.Etcd.Stop(0)
	for i, cl := range clients {
		if got := checkOrg(t, cl, "1001"); got != int32(code.Code_PERMISSION_DENIED) {
			t.Fatalf("gateway %d with a member down: code %d", i+1, got)
		}
	}
	if status, confirmed := deactivate(t, c, "1002", true); status != 200 || confirmed != "3/3" {
		t.Fatalf("deactivate with a member down: %d, confirmed %q", status, confirmed)
	}
	for i, cl := range clients {
		if got := checkOrg(t, cl, "1002"); got != int32(code.Code_PERMISSION_DENIED) {
			t.Fatalf("gateway %d, write made with a member down: code %d", i+1, got)
		}
		if got := checkOrg(t, cl, "1003"); got != int32(code.Code_OK) {
			t.Fatalf("gateway %d denies an active org: code %d", i+1, got)
		}
	}
}
