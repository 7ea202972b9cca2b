package adminapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/deact/deact/admin/adminapi"
	"github.com/deact/deact/state"
)

// TestClientCalls: every call of the client against the real admin API, in the order an operator would make
// them; each answer is checked through the next read.
func TestClientCalls(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	c := e.client(rootToken)
	ctx := context.Background()
	check := func(what string, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	confirmed := func(what string, w adminapi.WriteResult, err error) {
		t.Helper()
		check(what, err)
		if w.Revision == 0 || w.ChangedAt.IsZero() || w.Confirmation.Confirmed != 1 || w.Confirmation.Total != 1 {
			t.Errorf("%s: %+v, want a revision confirmed by 1/1", what, w)
		}
	}

	t.Run("orgs", func(t *testing.T) {
		w, err := c.PutOrg(ctx, "o1", adminapi.OrgRequest{Name: "one", Domains: []string{"one.example"}, Reason: "onboard"})
		confirmed("PutOrg", w, err)
		w, err = c.DeactivateOrg(ctx, "o1", adminapi.DeactivateRequest{Ops: "login,backup", Reason: "unpaid"})
		confirmed("DeactivateOrg", w, err)
		o, err := c.GetOrg(ctx, "o1")
		check("GetOrg", err)
		if o.Record.Disabled != state.OpLogin|state.OpBackup || o.Record.Name != "one" || o.Record.Reason != "unpaid" || o.Revision != w.Revision {
			t.Errorf("GetOrg after deactivate: %+v (write at %d)", o, w.Revision)
		}
		w, err = c.ReactivateOrg(ctx, "o1", adminapi.DeactivateRequest{})
		confirmed("ReactivateOrg", w, err)
		if o, err = c.GetOrg(ctx, "o1"); err != nil || o.Record.Disabled != 0 {
			t.Errorf("GetOrg after reactivate: %+v %v", o, err)
		}
	})
	t.Run("projects and apps", func(t *testing.T) {
		w, err := c.PutApp(ctx, "p1", "a1", adminapi.AppRequest{OrgID: "o1", ClientIDs: []string{"a1@p1"}})
		confirmed("PutApp", w, err)
		w, err = c.DeactivateApp(ctx, "p1", "a1", adminapi.DeactivateRequest{})
		confirmed("DeactivateApp", w, err)
		a, err := c.GetApp(ctx, "p1", "a1")
		check("GetApp", err)
		if a.Record.State != state.Deactivated || a.Record.OrgID != "o1" || !slices.Equal(a.Record.ClientIDs, []string{"a1@p1"}) {
			t.Errorf("GetApp: %+v", a)
		}
		w, err = c.ReactivateApp(ctx, "p1", "a1", adminapi.DeactivateRequest{})
		confirmed("ReactivateApp", w, err)
		w, err = c.DeactivateProject(ctx, "p1", adminapi.DeactivateRequest{OrgID: "o1"})
		confirmed("DeactivateProject", w, err)
		p, err := c.GetProject(ctx, "p1")
		check("GetProject", err)
		if p.Record.State != state.Deactivated || p.Record.OrgID != "o1" {
			t.Errorf("GetProject: %+v", p)
		}
		w, err = c.ReactivateProject(ctx, "p1", adminapi.DeactivateRequest{})
		confirmed("ReactivateProject", w, err)
		w, err = c.PutAccount(ctx, "acc1", adminapi.AccountRequest{OrgID: "o1"})
		confirmed("PutAccount", w, err)
	})
	t.Run("lists, audit, nodes, sources, mirror", func(t *testing.T) {
		apps, err := adminapi.All(ctx, c.ListApps, adminapi.ListOptions{})
		if err != nil || len(apps) != 1 || apps[0].Record.ID != "a1" {
			t.Errorf("All(ListApps): %+v %v", apps, err)
		}
		projects, err := adminapi.All(ctx, c.ListProjects, adminapi.ListOptions{})
		if err != nil || len(projects) != 1 || projects[0].Record.ID != "p1" {
			t.Errorf("All(ListProjects): %+v %v", projects, err)
		}
		au, err := c.Audit(ctx, adminapi.AuditOptions{Limit: 2})
		check("Audit", err)
		if len(au.Entries) != 2 || au.Entries[0].Action == "" || au.Entries[0].Revision <= au.Entries[1].Revision {
			t.Errorf("Audit limit 2: %+v, want the 2 newest, newest first", au.Entries)
		}
		older, err := c.Audit(ctx, adminapi.AuditOptions{Before: au.Entries[1].At, Limit: 1})
		if err != nil || len(older.Entries) != 1 || older.Entries[0].Revision >= au.Entries[1].Revision {
			t.Errorf("Audit before %s: %+v %v", au.Entries[1].At, older.Entries, err)
		}
		// The cursor walks the whole log, one entry a page, without a gap or a repeat, and ends.
		whole, err := c.Audit(ctx, adminapi.AuditOptions{Limit: 1000})
		check("Audit all", err)
		if whole.Next != "" {
			t.Errorf("Audit of the whole log: Next %q, want none", whole.Next)
		}
		var walked []int64
		for cur, pages := "", 0; ; pages++ {
			pg, err := c.Audit(ctx, adminapi.AuditOptions{Cursor: cur, Limit: 1})
			check("Audit page", err)
			for _, en := range pg.Entries {
				walked = append(walked, en.Revision)
			}
			if pg.Next == "" || pages > len(whole.Entries) {
				break
			}
			cur = pg.Next
		}
		if len(walked) != len(whole.Entries) {
			t.Errorf("walked %d entries by cursor, the log has %d", len(walked), len(whole.Entries))
		}
		for i := range min(len(walked), len(whole.Entries)) {
			if walked[i] != whole.Entries[i].Revision {
				t.Errorf("entry %d by cursor: revision %d, want %d", i, walked[i], whole.Entries[i].Revision)
				break
			}
		}
		n, err := c.Nodes(ctx)
		if err != nil || len(n.Nodes) != 1 || n.Nodes[0].ID != "node-0" || n.Nodes[0].AppliedRevision == 0 {
			t.Errorf("Nodes: %+v %v", n, err)
		}
		check("PutSourceStatus", e.store.PutSourceStatus(ctx, state.SourceStatus{Source: "zitadel", Kind: "zitadel", Leader: "admin-1", UpdatedAt: time.Now()}))
		s, err := c.Sources(ctx)
		if err != nil || len(s.Sources) != 1 || s.Sources[0].Leader != "admin-1" {
			t.Errorf("Sources: %+v %v", s, err)
		}
		if _, err := e.store.ApplyMirror(ctx, []state.MirrorRecord{
			{Source: "zitadel", Kind: state.MirrorOrg, ID: "o1", Disabled: state.OpToken, Sequence: 3},
			{Source: "zitadel", Kind: state.MirrorProject, ID: "p1", OrgID: "o1", Deactivated: true, Sequence: 4},
			{Source: "zitadel", Kind: state.MirrorApp, ID: "a1", ProjectID: "p1", OrgID: "o1", Removed: true, Sequence: 5},
		}, state.Change{Actor: "test"}); err != nil {
			t.Fatal(err)
		}
		for name, call := range map[string]func() (adminapi.MirrorResponse, error){
			"MirroredOrg":     func() (adminapi.MirrorResponse, error) { return c.MirroredOrg(ctx, "o1") },
			"MirroredProject": func() (adminapi.MirrorResponse, error) { return c.MirroredProject(ctx, "p1") },
			"MirroredApp":     func() (adminapi.MirrorResponse, error) { return c.MirroredApp(ctx, "p1", "a1") },
		} {
			m, err := call()
			if err != nil || len(m.Records) != 1 || !m.Records[0].Record.Denies() {
				t.Errorf("%s: %+v %v", name, m, err)
			}
		}
	})
	t.Run("tokens", func(t *testing.T) {
		created, err := c.CreateToken(ctx, adminapi.TokenRequest{Name: "ops", Orgs: []string{"o1"}, Role: state.RoleReadOnly})
		check("CreateToken", err)
		if !strings.HasPrefix(created.Token, "deact_") || created.Record.Hash != state.HashToken(created.Token) ||
			created.Record.HomeOrg != "o1" || !created.Confirmation.NotNeeded {
			t.Errorf("CreateToken: %+v", created)
		}
		scoped := e.client(created.Token)
		if o, err := scoped.GetOrg(ctx, "o1"); err != nil || o.Record.ID != "o1" {
			t.Errorf("GetOrg with the new token: %+v %v", o, err)
		}
		toks, err := adminapi.All(ctx, c.ListTokens, adminapi.ListOptions{})
		if err != nil || !slices.ContainsFunc(toks, func(v state.Versioned[state.Token]) bool { return v.Record.Hash == created.Record.Hash }) {
			t.Errorf("ListTokens misses the new token: %+v %v", toks, err)
		}
		w, err := c.DeleteToken(ctx, created.Record.Hash)
		if err != nil || !w.Confirmation.NotNeeded {
			t.Errorf("DeleteToken: %+v %v", w, err)
		}
		if _, err := scoped.GetOrg(ctx, "o1"); !isAPIError(err, http.StatusUnauthorized, "unauthenticated") {
			t.Errorf("GetOrg with the revoked token: %v", err)
		}
	})
}

func isAPIError(err error, status int, code string) bool {
	var e *adminapi.Error
	return errors.As(err, &e) && e.Status == status && e.Code == code
}

// TestClientErrors: each refusal of the API arrives as an *adminapi.Error with the status, code, id and message
// of its body; an answer that is not the API's keeps its status line and body; the token is in no error.
func TestClientErrors(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	c := e.client(rootToken)
	ctx := context.Background()
	if _, err := c.DeactivateOrg(ctx, "o1", adminapi.DeactivateRequest{}); err != nil {
		t.Fatal(err)
	}
	readOnly := e.client("read-only-token-for-the-test-0123")
	if _, err := e.store.CreateToken(ctx, state.Token{Hash: state.HashToken("read-only-token-for-the-test-0123"), AllOrgs: true, Role: state.RoleReadOnly}, state.Change{Actor: "test"}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		call   func() error
		status int
		code   string
		id     string
	}{
		{"already deactivated", func() error { _, err := c.DeactivateOrg(ctx, "o1", adminapi.DeactivateRequest{}); return err }, 409, "already_deactivated", "DEACT-AlreadyDeactivated"},
		{"not found", func() error { _, err := c.GetOrg(ctx, "nope"); return err }, 404, "not_found", "DEACT-NotFound"},
		{"invalid id", func() error { _, err := c.GetOrg(ctx, "bad id"); return err }, 400, "invalid_argument", "DEACT-InvalidID"},
		{"unknown ops", func() error {
			_, err := c.DeactivateOrg(ctx, "o2", adminapi.DeactivateRequest{Ops: "login,fly"})
			return err
		}, 400, "invalid_argument", "DEACT-BadOps"},
		{"bad token", func() error { _, err := e.client("not-a-token-of-this-deact-0123").Nodes(ctx); return err }, 401, "unauthenticated", "DEACT-BadToken"},
		{"read-only token writes", func() error { _, err := readOnly.ReactivateOrg(ctx, "o1", adminapi.DeactivateRequest{}); return err }, 403, "permission_denied", "DEACT-ReadOnly"},
		{"confirm timeout above the server's maximum", func() error {
			slow := e.client(rootToken, func(c *adminapi.Config) { c.ConfirmTimeout = 2 * time.Minute })
			_, err := slow.ReactivateOrg(ctx, "o1", adminapi.DeactivateRequest{})
			return err
		}, 400, "invalid_argument", "DEACT-BadConfirmTimeout"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call()
			var ae *adminapi.Error
			if !errors.As(err, &ae) || ae.Status != tc.status || ae.Code != tc.code || ae.ID != tc.id || ae.Message == "" {
				t.Fatalf("err = %#v, want status %d code %s id %s", err, tc.status, tc.code, tc.id)
			}
			if want := fmt.Sprintf("%s (%d %s)", ae.Message, tc.status, tc.code); err.Error() != want {
				t.Errorf("Error() = %q, want %q", err.Error(), want)
			}
			if adminapi.IsNotFound(err) != (tc.status == http.StatusNotFound) {
				t.Errorf("IsNotFound = %v", adminapi.IsNotFound(err))
			}
			if strings.Contains(err.Error(), rootToken) {
				t.Errorf("the error names the token: %v", err)
			}
		})
	}

	t.Run("an answer that is not the API's", func(t *testing.T) {
		url := serve(t, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			http.Error(w, "upstream connect error", http.StatusBadGateway)
		}))
		proxy, err := adminapi.New(adminapi.Config{URL: url, Token: rootToken})
		if err != nil {
			t.Fatal(err)
		}
		defer proxy.Close()
		_, err = proxy.Nodes(ctx)
		var ae *adminapi.Error
		if !errors.As(err, &ae) || ae.Status != http.StatusBadGateway || ae.Code != "" || adminapi.IsNotFound(err) ||
			err.Error() != "502 Bad Gateway: upstream connect error" {
			t.Fatalf("err = %#v (%v)", err, err)
		}
	})
	t.Run("config", func(t *testing.T) {
		for _, cfg := range []adminapi.Config{{Token: rootToken}, {URL: e.url}, {URL: e.url, Token: rootToken, ConfirmTimeout: -time.Second}} {
			if _, err := adminapi.New(cfg); err == nil {
				t.Errorf("New(%+v) accepted", cfg)
			}
		}
	})
}

// TestPages: Pages follows the cursor page by page, All gathers every item in order, a loop that stops early
// reads no further page, and a token scoped to some orgs pages through those only.
func TestPages(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	c := e.client(rootToken)
	ctx := context.Background()
	var want []string
	for i := range 7 {
		id := fmt.Sprintf("org%d", i)
		want = append(want, id)
		if _, err := c.PutOrg(ctx, id, adminapi.OrgRequest{Name: id}); err != nil {
			t.Fatal(err)
		}
	}
	var sizes []int
	var got []string
	for pg, err := range adminapi.Pages(ctx, c.ListOrgs, adminapi.ListOptions{Limit: 3}) {
		if err != nil {
			t.Fatal(err)
		}
		sizes = append(sizes, len(pg.Items))
		for _, v := range pg.Items {
			got = append(got, v.Record.ID)
		}
	}
	if !slices.Equal(sizes, []int{3, 3, 1}) || !slices.Equal(got, want) {
		t.Errorf("pages of 3: sizes %v, orgs %v; want [3 3 1] and %v", sizes, got, want)
	}
	all, err := adminapi.All(ctx, c.ListOrgs, adminapi.ListOptions{Limit: 2, After: "org2"})
	if err != nil || len(all) != 4 || all[0].Record.ID != "org3" || all[3].Record.ID != "org6" {
		t.Errorf("All after org2: %+v %v", all, err)
	}
	calls := 0
	counted := func(ctx context.Context, o adminapi.ListOptions) (state.Page[state.Org], error) {
		calls++
		return c.ListOrgs(ctx, o)
	}
	for range adminapi.Pages(ctx, counted, adminapi.ListOptions{Limit: 1}) {
		break
	}
	if calls != 1 {
		t.Errorf("a loop that stopped after the first page made %d calls", calls)
	}

	secret := "scoped-token-for-the-test-0123"
	if _, err := e.store.CreateToken(ctx, state.Token{Hash: state.HashToken(secret), HomeOrg: "org5", Orgs: []string{"org1", "org5"}, Role: state.RoleReadOnly}, state.Change{Actor: "test"}); err != nil {
		t.Fatal(err)
	}
	scoped, err := adminapi.All(ctx, e.client(secret).ListOrgs, adminapi.ListOptions{Limit: 1})
	if err != nil || len(scoped) != 2 || scoped[0].Record.ID != "org1" || scoped[1].Record.ID != "org5" {
		t.Errorf("All with a token for org1 and org5: %+v %v", scoped, err)
	}

	t.Run("errors end the listing", func(t *testing.T) {
		if _, err := adminapi.All(ctx, c.ListOrgs, adminapi.ListOptions{Limit: 5000}); !isAPIError(err, 400, "invalid_argument") {
			t.Errorf("limit 5000: %v", err)
		}
		// A server whose cursor does not move on would make the listing endless.
		stuck := func(context.Context, adminapi.ListOptions) (state.Page[state.Org], error) {
			return state.Page[state.Org]{Items: []state.Versioned[state.Org]{{}}, Next: "x"}, nil
		}
		if _, err := adminapi.All(ctx, stuck, adminapi.ListOptions{}); err == nil || !strings.Contains(err.Error(), "cursor") {
			t.Errorf("a cursor that does not move: %v", err)
		}
	})
}

// TestImport: an import answers what it committed; one that stops part way is an *adminapi.Error that says
// what was committed, and Skip resumes it.
func TestImport(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	c := e.client(rootToken, func(c *adminapi.Config) { c.HTTP = &http.Client{Timeout: 5 * time.Second} })
	ctx := context.Background()
	var lines []string
	for i := range 70 {
		lines = append(lines, fmt.Sprintf(`{"org":{"id":"imp%d","domains":["imp%d.example"]}}`, i, i))
	}
	good := strings.Join(lines, "\n")
	lines[65] = `{"org":{"id":"imp0"}}`
	_, err := c.Import(ctx, strings.NewReader(strings.Join(lines, "\n")), adminapi.ImportOptions{})
	var ae *adminapi.Error
	if !errors.As(err, &ae) || ae.Status != 400 || ae.Line != 66 || ae.Import == nil || ae.Import.Lines != 60 || ae.Import.Complete ||
		!strings.Contains(err.Error(), "resume with skip=60") {
		t.Fatalf("failed import: %#v (%v)", err, err)
	}
	res, err := c.Import(ctx, strings.NewReader(good), adminapi.ImportOptions{Skip: ae.Import.Lines})
	if err != nil || !res.Complete || res.Records != 10 || res.Skipped != 60 || res.Lines != 70 || res.Confirmation.Confirmed != 1 {
		t.Fatalf("resumed import: %+v %v", res, err)
	}
	if _, err := c.Import(ctx, strings.NewReader(good), adminapi.ImportOptions{Skip: -1}); err == nil {
		t.Error("a negative Skip was sent")
	}
}

// TestAnswersRoundTrip: every answer of the API decodes into its adminapi type and encodes back to the very
// bytes the server sent, so a client that prints what it decoded (deactctl -o json) prints the answer as it came.
func TestAnswersRoundTrip(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	if _, err := e.store.ApplyMirror(ctx, []state.MirrorRecord{
		{Source: "zitadel", Kind: state.MirrorOrg, ID: "o1", Disabled: state.OpToken, Sequence: 3, Domains: []string{"one.example"}},
		{Source: "zitadel", Kind: state.MirrorApp, ID: "a1", ProjectID: "p1", OrgID: "o1", Removed: true, RemovedAt: time.Now(), Sequence: 5, ClientIDs: []string{"a1@p1"}},
	}, state.Change{Actor: "test & co"}); err != nil {
		t.Fatal(err)
	}
	if err := e.store.PutSourceStatus(ctx, state.SourceStatus{Source: "zitadel", Kind: "zitadel", Leader: "admin-1", UpdatedAt: time.Now(),
		LastReconcileDuration: 1234 * time.Millisecond, LastError: "answered <401>"}); err != nil {
		t.Fatal(err)
	}
	type answer struct {
		name, method, path, body string
		into                     any
	}
	for _, a := range []answer{
		{"register org", "PUT", "/v1/orgs/o1", `{"name":"One & <Two>","domains":["one.example"],"reason":"on\u00e9board"}`, new(adminapi.WriteResult)},
		{"deactivate org", "POST", "/v1/orgs/o1/deactivate", `{"ops":"login,backup"}`, new(adminapi.WriteResult)},
		{"register app", "PUT", "/v1/projects/p1/apps/a1", `{"orgId":"o1","clientIds":["a1@p1","web"]}`, new(adminapi.WriteResult)},
		{"deactivate project", "POST", "/v1/projects/p1/deactivate", `{"orgId":"o1"}`, new(adminapi.WriteResult)},
		{"create token", "POST", "/v1/tokens", `{"name":"ops","orgs":["o1"],"role":"admin"}`, new(adminapi.TokenCreated)},
		{"import", "POST", "/v1/import", `{"org":{"id":"o9","disabledBy":{"commvault":"backup"},"state":"deactivated","disableBackup":true}}`, new(adminapi.ImportResponse)},
		{"get org", "GET", "/v1/orgs/o1", "", new(state.Versioned[state.Org])},
		{"get imported org", "GET", "/v1/orgs/o9", "", new(state.Versioned[state.Org])},
		{"get project", "GET", "/v1/projects/p1", "", new(state.Versioned[state.Project])},
		{"get app", "GET", "/v1/projects/p1/apps/a1", "", new(state.Versioned[state.App])},
		{"list orgs", "GET", "/v1/orgs?limit=1", "", new(state.Page[state.Org])},
		{"list projects", "GET", "/v1/projects", "", new(state.Page[state.Project])},
		{"list apps", "GET", "/v1/apps", "", new(state.Page[state.App])},
		{"list tokens", "GET", "/v1/tokens", "", new(state.Page[state.Token])},
		{"audit", "GET", "/v1/audit", "", new(adminapi.AuditResponse)},
		{"nodes", "GET", "/v1/nodes", "", new(adminapi.NodesResponse)},
		{"sources", "GET", "/v1/sources", "", new(adminapi.SourcesResponse)},
		{"mirrored org", "GET", "/v1/mirror/orgs/o1", "", new(adminapi.MirrorResponse)},
		{"mirrored app", "GET", "/v1/mirror/projects/p1/apps/a1", "", new(adminapi.MirrorResponse)},
	} {
		t.Run(a.name, func(t *testing.T) {
			raw := e.raw(a.method, a.path, a.body)
			if err := json.Unmarshal(raw, a.into); err != nil {
				t.Fatalf("%s: %v", raw, err)
			}
			var again bytes.Buffer
			if err := json.NewEncoder(&again).Encode(a.into); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(again.Bytes(), raw) {
				t.Errorf("decoded and encoded again:\n%s\nthe server sent:\n%s", again.Bytes(), raw)
			}
		})
	}
}
