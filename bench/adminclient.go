package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/deact/deact/admin"
)

// adminClient calls deact's native admin API (/v1/...) with a bearer token. Safe for concurrent use.
type adminClient struct {
	base  string
	token string
	http  *http.Client
	// confirmTimeout is asked of every write (?confirmTimeout=).
	confirmTimeout time.Duration
}

func newAdminClient(base, token string, conns int) (*adminClient, error) {
	if err := checkLoopbackURL(base); err != nil {
		return nil, err
	}
	if token == "" {
		return nil, fmt.Errorf("admin API %s: no admin token (--admin-token or DEACT_ADMIN_TOKEN)", base)
	}
	tr := &http.Transport{MaxIdleConns: conns, MaxIdleConnsPerHost: conns, MaxConnsPerHost: conns, IdleConnTimeout: time.Minute}
	return &adminClient{base: strings.TrimSuffix(base, "/"), token: token, http: &http.Client{Transport: tr, Timeout: time.Minute},
		confirmTimeout: 2 * time.Second}, nil
}

func (c *adminClient) close() { c.http.CloseIdleConnections() }

// writeAnswer is what a write returned: the HTTP status and the fan-out confirmation headers.
type writeAnswer struct {
	status    int
	confirmed int
	total     int
	waitMs    float64
	body      []byte
}

func (w writeAnswer) complete() bool { return w.total > 0 && w.confirmed == w.total }

// do sends one request; a non-2xx status is not an error here (the caller counts it).
func (c *adminClient) do(ctx context.Context, method, path string, body io.Reader, contentType string, headers ...[2]string) (writeAnswer, error) {
	u := c.base + path
	if method != http.MethodGet {
		u += "?confirmTimeout=" + url.QueryEscape(c.confirmTimeout.String())
	}
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return writeAnswer{}, err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for _, h := range headers {
		req.Header.Set(h[0], h[1])
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return writeAnswer{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return writeAnswer{}, err
	}
	a := writeAnswer{status: resp.StatusCode, body: b}
	if v := resp.Header.Get(admin.HeaderConfirmed); v != "" {
		n, t, _ := strings.Cut(v, "/")
		a.confirmed, _ = strconv.Atoi(n)
		a.total, _ = strconv.Atoi(t)
	}
	a.waitMs, _ = strconv.ParseFloat(resp.Header.Get(admin.HeaderConfirmWaitMs), 64)
	return a, nil
}

// setOrg deactivates (every op) or reactivates org id.
func (c *adminClient) setOrg(ctx context.Context, id string, deactivate bool) (writeAnswer, error) {
	action, body := "reactivate", "{}"
	if deactivate {
		action, body = "deactivate", `{"ops":"all","reason":"deactbench"}`
	}
	return c.do(ctx, http.MethodPost, "/v1/orgs/"+url.PathEscape(id)+"/"+action, strings.NewReader(body), "application/json")
}

// setOrgZitadel deactivates or reactivates org id through the ZITADEL-compatible REST API (what a ZITADEL
// client calls: login and token off), with the org in x-zitadel-orgid.
func (c *adminClient) setOrgZitadel(ctx context.Context, id string, deactivate bool) (writeAnswer, error) {
	action := "_reactivate"
	if deactivate {
		action = "_deactivate"
	}
	return c.do(ctx, http.MethodPost, "/management/v1/orgs/me/"+action, strings.NewReader("{}"), "application/json",
		[2]string{admin.HeaderZitadelOrg, id})
}

// importNDJSON posts records to /v1/import and returns the import's answer.
func (c *adminClient) importNDJSON(ctx context.Context, ndjson []byte) (admin.ImportResponse, error) {
	var out admin.ImportResponse
	a, err := c.do(ctx, http.MethodPost, "/v1/import", bytes.NewReader(ndjson), "application/x-ndjson")
	if err != nil {
		return out, fmt.Errorf("import: %w", err)
	}
	if a.status != http.StatusOK {
		return out, fmt.Errorf("import: HTTP %d: %s", a.status, bytes.TrimSpace(a.body))
	}
	if err := json.Unmarshal(a.body, &out); err != nil {
		return out, fmt.Errorf("import answer: %w", err)
	}
	return out, nil
}

// nodes lists the gateway nodes registered with the admin's etcd.
func (c *adminClient) nodes(ctx context.Context) ([]admin.NodeStatus, error) {
	a, err := c.do(ctx, http.MethodGet, "/v1/nodes", nil, "")
	if err != nil {
		return nil, err
	}
	if a.status != http.StatusOK {
		return nil, fmt.Errorf("nodes: HTTP %d: %s", a.status, bytes.TrimSpace(a.body))
	}
	var out admin.NodesResponse
	if err := json.Unmarshal(a.body, &out); err != nil {
		return nil, err
	}
	return out.Nodes, nil
}

// waitNodes waits until at least n gateway nodes are registered (bounded by ctx and 30 s).
func (c *adminClient) waitNodes(ctx context.Context, n int) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	got := 0
	for {
		nodes, err := c.nodes(ctx)
		if err == nil && len(nodes) >= n {
			return nil
		}
		got = len(nodes)
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %d gateway nodes to register (have %d, last error %v): %w", n, got, err, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// register writes the model's orgs (with domains), a project per app and the apps (with client IDs) in their
// current states through /v1/import, in chunks.
func (c *adminClient) register(ctx context.Context, m *model) (records int, _ error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	flush := func() error {
		if buf.Len() == 0 {
			return nil
		}
		res, err := c.importNDJSON(ctx, buf.Bytes())
		buf.Reset()
		records += res.Records
		return err
	}
	for i := range m.orgs {
		off := m.orgs[i].state.Load().deactivated
		_ = enc.Encode(map[string]any{"org": map[string]any{
			"id": m.orgs[i].id, "name": m.orgs[i].id, "domains": []string{m.domain(i)},
			"state": stateWord(off), "disableLogin": off, "disableToken": off, "disableBackup": off, "disableRestore": off,
		}})
		if buf.Len() > 1<<20 {
			if err := flush(); err != nil {
				return records, err
			}
		}
	}
	for j := range m.apps {
		org := m.orgs[m.appOrg(j)].id
		_ = enc.Encode(map[string]any{"project": map[string]any{"id": m.projectID(j), "orgId": org, "state": "active"}})
		_ = enc.Encode(map[string]any{"app": map[string]any{
			"id": m.appID(j), "projectId": m.projectID(j), "orgId": org, "clientIds": []string{m.clientID(j)},
			"state": stateWord(m.apps[j].state.Load().deactivated),
		}})
		if buf.Len() > 1<<20 {
			if err := flush(); err != nil {
				return records, err
			}
		}
	}
	return records, flush()
}

func stateWord(deactivated bool) string {
	if deactivated {
		return "deactivated"
	}
	return "active"
}
