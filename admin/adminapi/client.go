package adminapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"iter"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/deact/deact/state"
)

// maxAnswer bounds the body of one answer read by Client (a page of 1000 records is far smaller).
const maxAnswer = 64 << 20

// Client calls the native admin API with a bearer token. It is safe for concurrent use. Each call returns the
// answer decoded, or an error: *Error when the server answered with a status other than 2xx, the transport's
// error when there was no answer. The token is sent in the Authorization header only, never put in an error.
type Client struct {
	base           string
	token          string
	http           *http.Client
	confirmTimeout time.Duration
}

// Config configures a Client. Zero values take the defaults in brackets.
type Config struct {
	// URL is the admin API's base, e.g. "http://127.0.0.1:8080" (required): each call appends its path
	// ("/v1/orgs/…") to it.
	URL string
	// Token is the bearer token of every call (required).
	Token string
	// HTTP sends the requests [a client of its own connections with a 1-minute timeout]. Its Timeout bounds
	// each call, except Import, which streams for as long as the server allows: it waits at least
	// DefaultImportTimeout plus a minute (or without bound when Timeout is 0).
	HTTP *http.Client
	// ConfirmTimeout is sent with every write (HeaderConfirmTimeout): how long the server waits for the gateway
	// nodes to apply it, up to the server's maximum [0: the server's own bound].
	ConfirmTimeout time.Duration
}

// New returns a client for cfg.
func New(cfg Config) (*Client, error) {
	if cfg.URL == "" {
		return nil, errors.New("adminapi: Config.URL is required")
	}
	if cfg.Token == "" {
		return nil, errors.New("adminapi: Config.Token is required")
	}
	if cfg.ConfirmTimeout < 0 {
		return nil, fmt.Errorf("adminapi: ConfirmTimeout %v is negative", cfg.ConfirmTimeout)
	}
	if cfg.HTTP == nil {
		cfg.HTTP = &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone(), Timeout: time.Minute}
	}
	return &Client{base: strings.TrimSuffix(cfg.URL, "/"), token: cfg.Token, http: cfg.HTTP, confirmTimeout: cfg.ConfirmTimeout}, nil
}

// Close closes the idle connections of the client's HTTP transport (Config.HTTP's, when one was given).
func (c *Client) Close() { c.http.CloseIdleConnections() }

// Error is an answer whose status is not 2xx. When the server sent the native API's error body, the embedded
// ErrorDetail is that body's; otherwise (a proxy's page, say) Status is the HTTP status, Code is empty and
// Message is the body as it came.
type Error struct {
	ErrorDetail
	// Import says what an import committed before it stopped: resume it with ImportOptions.Skip = Import.Lines.
	Import *ImportResponse
	// statusLine is the HTTP status line ("502 Bad Gateway") of an answer that is not the API's error body.
	statusLine string
}

func (e *Error) Error() string {
	if e.statusLine != "" {
		return fmt.Sprintf("%s: %s", e.statusLine, e.Message)
	}
	return fmt.Sprintf("%s (%d %s)", e.Message, e.Status, e.Code)
}

// IsNotFound reports whether err is the API's answer that the subject does not exist (404).
func IsNotFound(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.statusLine == "" && e.Status == http.StatusNotFound
}

// --- orgs, projects, apps, accounts

// DeactivateOrg disables req.Ops (default "login,token") of org id.
func (c *Client) DeactivateOrg(ctx context.Context, id string, req DeactivateRequest) (WriteResult, error) {
	return c.write(ctx, http.MethodPost, "/v1/orgs/"+seg(id)+"/deactivate", req)
}

// ReactivateOrg enables req.Ops (default "all") of org id, whichever API disabled them.
func (c *Client) ReactivateOrg(ctx context.Context, id string, req DeactivateRequest) (WriteResult, error) {
	return c.write(ctx, http.MethodPost, "/v1/orgs/"+seg(id)+"/reactivate", req)
}

// DeactivateProject deactivates project id, and with it all its apps.
func (c *Client) DeactivateProject(ctx context.Context, id string, req DeactivateRequest) (WriteResult, error) {
	return c.write(ctx, http.MethodPost, "/v1/projects/"+seg(id)+"/deactivate", req)
}

// ReactivateProject reactivates project id.
func (c *Client) ReactivateProject(ctx context.Context, id string, req DeactivateRequest) (WriteResult, error) {
	return c.write(ctx, http.MethodPost, "/v1/projects/"+seg(id)+"/reactivate", req)
}

// DeactivateApp deactivates app of project.
func (c *Client) DeactivateApp(ctx context.Context, project, app string, req DeactivateRequest) (WriteResult, error) {
	return c.write(ctx, http.MethodPost, appPath(project, app)+"/deactivate", req)
}

// ReactivateApp reactivates app of project.
func (c *Client) ReactivateApp(ctx context.Context, project, app string, req DeactivateRequest) (WriteResult, error) {
	return c.write(ctx, http.MethodPost, appPath(project, app)+"/reactivate", req)
}

// PutOrg registers org id (its name and domains).
func (c *Client) PutOrg(ctx context.Context, id string, req OrgRequest) (WriteResult, error) {
	return c.write(ctx, http.MethodPut, "/v1/orgs/"+seg(id), req)
}

// PutApp registers app of project (its owning org and client IDs).
func (c *Client) PutApp(ctx context.Context, project, app string, req AppRequest) (WriteResult, error) {
	return c.write(ctx, http.MethodPut, appPath(project, app), req)
}

// PutAccount registers account id as belonging to req.OrgID.
func (c *Client) PutAccount(ctx context.Context, id string, req AccountRequest) (WriteResult, error) {
	return c.write(ctx, http.MethodPut, "/v1/accounts/"+seg(id), req)
}

// GetOrg reads the local record of org id (what the admin APIs wrote, not the sources' mirror).
func (c *Client) GetOrg(ctx context.Context, id string) (state.Versioned[state.Org], error) {
	var v state.Versioned[state.Org]
	return v, c.get(ctx, "/v1/orgs/"+seg(id), nil, &v)
}

// GetProject reads the local record of project id.
func (c *Client) GetProject(ctx context.Context, id string) (state.Versioned[state.Project], error) {
	var v state.Versioned[state.Project]
	return v, c.get(ctx, "/v1/projects/"+seg(id), nil, &v)
}

// GetApp reads the local record of app of project.
func (c *Client) GetApp(ctx context.Context, project, app string) (state.Versioned[state.App], error) {
	var v state.Versioned[state.App]
	return v, c.get(ctx, appPath(project, app), nil, &v)
}

// MirroredOrg reads what each source mirrors of org id.
func (c *Client) MirroredOrg(ctx context.Context, id string) (MirrorResponse, error) {
	var v MirrorResponse
	return v, c.get(ctx, "/v1/mirror/orgs/"+seg(id), nil, &v)
}

// MirroredProject reads what each source mirrors of project id.
func (c *Client) MirroredProject(ctx context.Context, id string) (MirrorResponse, error) {
	var v MirrorResponse
	return v, c.get(ctx, "/v1/mirror/projects/"+seg(id), nil, &v)
}

// MirroredApp reads what each source mirrors of app of project.
func (c *Client) MirroredApp(ctx context.Context, project, app string) (MirrorResponse, error) {
	var v MirrorResponse
	return v, c.get(ctx, "/v1/mirror"+strings.TrimPrefix(appPath(project, app), "/v1"), nil, &v)
}

// --- lists

// ListOptions asks for one page of a listing.
type ListOptions struct {
	After string // where the page starts: the Next of the page before; empty for the first page
	Limit int    // the page's size, 1 to 1000 [0: the server's, 100]
}

func (o ListOptions) query() url.Values {
	q := url.Values{}
	if o.After != "" {
		q.Set("after", o.After)
	}
	if o.Limit != 0 {
		q.Set("limit", strconv.Itoa(o.Limit))
	}
	return q
}

// ListOrgs reads one page of the orgs the token may see.
func (c *Client) ListOrgs(ctx context.Context, o ListOptions) (state.Page[state.Org], error) {
	return list[state.Org](ctx, c, "/v1/orgs", o)
}

// ListProjects reads one page of the projects the token may see.
func (c *Client) ListProjects(ctx context.Context, o ListOptions) (state.Page[state.Project], error) {
	return list[state.Project](ctx, c, "/v1/projects", o)
}

// ListApps reads one page of the apps the token may see.
func (c *Client) ListApps(ctx context.Context, o ListOptions) (state.Page[state.App], error) {
	return list[state.App](ctx, c, "/v1/apps", o)
}

// ListTokens reads one page of the tokens within the token's scope (their records: hashes, never secrets).
func (c *Client) ListTokens(ctx context.Context, o ListOptions) (state.Page[state.Token], error) {
	return list[state.Token](ctx, c, "/v1/tokens", o)
}

func list[T any](ctx context.Context, c *Client, path string, o ListOptions) (state.Page[T], error) {
	var pg state.Page[T]
	return pg, c.get(ctx, path, o.query(), &pg)
}

// ListFunc reads one page of a listing: Client.ListOrgs, ListProjects, ListApps or ListTokens.
type ListFunc[T any] func(context.Context, ListOptions) (state.Page[T], error)

// Pages reads a listing page by page, from o.After on, following each page's Next until a page has none. A
// failed call is yielded as the last element (with an empty page). Each page is read when the loop asks for it:
// a listing that changes meanwhile is seen as it is then, never twice the same record.
func Pages[T any](ctx context.Context, list ListFunc[T], o ListOptions) iter.Seq2[state.Page[T], error] {
	return func(yield func(state.Page[T], error) bool) {
		for {
			pg, err := list(ctx, o)
			if err == nil && pg.Next != "" && pg.Next == o.After {
				err = fmt.Errorf("adminapi: the server answered the cursor %q with itself as the next page", o.After)
			}
			if err != nil {
				yield(state.Page[T]{}, err)
				return
			}
			if !yield(pg, nil) || pg.Next == "" {
				return
			}
			o.After = pg.Next
		}
	}
}

// All reads every page of a listing (see Pages) and returns their items in order.
func All[T any](ctx context.Context, list ListFunc[T], o ListOptions) ([]state.Versioned[T], error) {
	all := []state.Versioned[T]{}
	for pg, err := range Pages(ctx, list, o) {
		if err != nil {
			return nil, err
		}
		all = append(all, pg.Items...)
	}
	return all, nil
}

// --- audit, nodes, sources, import

// AuditOptions asks for audit entries.
type AuditOptions struct {
	// Cursor continues where an answer stopped: its Next. It wins over Before.
	Cursor string
	// Before asks for the entries written before this time only; zero: from the newest.
	Before time.Time
	Limit  int // how many, 1 to 1000 [0: the server's, 100]
}

// Audit reads the latest changes, newest first, that the token may see.
func (c *Client) Audit(ctx context.Context, o AuditOptions) (AuditResponse, error) {
	q := url.Values{}
	if o.Cursor != "" {
		q.Set("before", o.Cursor)
	} else if !o.Before.IsZero() {
		// The server's cursor is an audit key's suffix, which starts with the entry's time in nanoseconds.
		q.Set("before", fmt.Sprintf("%019d", o.Before.UnixNano()))
	}
	if o.Limit != 0 {
		q.Set("limit", strconv.Itoa(o.Limit))
	}
	var v AuditResponse
	return v, c.get(ctx, "/v1/audit", q, &v)
}

// Nodes reads the gateway node registry (a token for all orgs only).
func (c *Client) Nodes(ctx context.Context) (NodesResponse, error) {
	var v NodesResponse
	return v, c.get(ctx, "/v1/nodes", nil, &v)
}

// Sources reads the status of every upstream source.
func (c *Client) Sources(ctx context.Context) (SourcesResponse, error) {
	var v SourcesResponse
	return v, c.get(ctx, "/v1/sources", nil, &v)
}

// ImportOptions configures an import.
type ImportOptions struct {
	// Skip is the number of lines an earlier import of the same input committed: they are read, not written.
	Skip int
}

// Import streams NDJSON records to /v1/import (a token for all orgs only). An import that stopped part way
// returns an *Error whose Import says what was committed; repeat it with Skip set to Import.Lines.
func (c *Client) Import(ctx context.Context, ndjson io.Reader, o ImportOptions) (ImportResponse, error) {
	if o.Skip < 0 {
		return ImportResponse{}, fmt.Errorf("adminapi: ImportOptions.Skip %d is negative", o.Skip)
	}
	q := url.Values{}
	if o.Skip > 0 {
		q.Set("skip", strconv.Itoa(o.Skip))
	}
	hc := c.http
	if bound := DefaultImportTimeout + time.Minute; hc.Timeout != 0 && hc.Timeout < bound {
		lifted := *hc
		lifted.Timeout = bound
		hc = &lifted
	}
	var v ImportResponse
	return v, c.do(ctx, hc, http.MethodPost, "/v1/import", q, ndjson, "application/x-ndjson", &v)
}

// --- tokens

// CreateToken creates a token within the calling token's scope; the answer holds its secret, shown this once.
func (c *Client) CreateToken(ctx context.Context, req TokenRequest) (TokenCreated, error) {
	var v TokenCreated
	return v, c.send(ctx, http.MethodPost, "/v1/tokens", req, &v)
}

// DeleteToken revokes the token with the given hash (state.HashToken of its secret).
func (c *Client) DeleteToken(ctx context.Context, hash string) (WriteResult, error) {
	var v WriteResult
	return v, c.send(ctx, http.MethodDelete, "/v1/tokens/"+seg(hash), nil, &v)
}

// --- requests

func (c *Client) write(ctx context.Context, method, path string, body any) (WriteResult, error) {
	var v WriteResult
	return v, c.send(ctx, method, path, body, &v)
}

func (c *Client) get(ctx context.Context, path string, q url.Values, out any) error {
	return c.do(ctx, c.http, http.MethodGet, path, q, nil, "", out)
}

// send sends body (nil: none) as JSON.
func (c *Client) send(ctx context.Context, method, path string, body, out any) error {
	var r io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		r = bytes.NewReader(b)
	}
	return c.do(ctx, c.http, method, path, nil, r, "application/json", out)
}

// do sends one request and decodes a 2xx answer into out; any other answer becomes an *Error.
func (c *Client) do(ctx context.Context, hc *http.Client, method, path string, q url.Values, body io.Reader, contentType string, out any) error {
	u := c.base + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if method != http.MethodGet && c.confirmTimeout > 0 {
		req.Header.Set(HeaderConfirmTimeout, c.confirmTimeout.String())
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer+1))
	if err != nil {
		return err
	}
	if len(b) > maxAnswer {
		return fmt.Errorf("%s %s: the answer is larger than %d bytes", method, path, maxAnswer)
	}
	if resp.StatusCode/100 != 2 {
		return answerError(resp, b)
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("unexpected answer: %w", err)
	}
	return nil
}

// answerError reads a non-2xx answer: the API's error body when it is one (it has a message), else the body as
// it came.
func answerError(resp *http.Response, b []byte) *Error {
	var eb ErrorBody
	if json.Unmarshal(b, &eb) == nil && eb.Error.Message != "" {
		return &Error{ErrorDetail: eb.Error, Import: eb.Import}
	}
	return &Error{ErrorDetail: ErrorDetail{Status: resp.StatusCode, Message: string(bytes.TrimSpace(b))}, statusLine: resp.Status}
}

func seg(s string) string { return url.PathEscape(s) }

func appPath(project, app string) string { return "/v1/projects/" + seg(project) + "/apps/" + seg(app) }
