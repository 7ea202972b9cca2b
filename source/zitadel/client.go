package zitadel

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/deact/deact/source"
)

// Client reads ZITADEL's v1 admin and management REST APIs (served by ZITADEL v2.x through v4.x) with a service
// account's personal access token. It is safe for concurrent use.
type Client struct {
	base     *url.URL
	token    string      // a personal access token, or
	profile  *jwtProfile // a service account key (JWT profile)
	http     *http.Client
	pageSize int
}

// ClientConfig configures a Client.
type ClientConfig struct {
	URL      string       // ZITADEL's base URL, e.g. https://auth.example.com
	Token    string       // a personal access token of a service account, or
	KeyFile  []byte       // the service account's key file (JSON), for the JWT-profile grant
	HTTP     *http.Client // [a client with a 30 s timeout]
	PageSize int          // list page size [1000, ZITADEL's default maximum]
}

// NewClient validates cfg and returns a Client.
func NewClient(cfg ClientConfig) (*Client, error) {
	u, err := url.Parse(cfg.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("zitadel url %q: want http(s)://host[:port]", cfg.URL)
	}
	if (cfg.Token == "") == (len(cfg.KeyFile) == 0) {
		return nil, errors.New("zitadel: give either a personal access token or a service account key file")
	}
	if strings.ContainsAny(cfg.Token, "\r\n \t") {
		return nil, errors.New("zitadel token contains white space")
	}
	if cfg.HTTP == nil {
		cfg.HTTP = &http.Client{Timeout: 30 * time.Second, Transport: source.NewTransport(0)}
	}
	if cfg.PageSize <= 0 || cfg.PageSize > 1000 {
		cfg.PageSize = 1000
	}
	u.Path = strings.TrimSuffix(u.Path, "/")
	c := &Client{base: u, token: cfg.Token, http: cfg.HTTP, pageSize: cfg.PageSize}
	if len(cfg.KeyFile) > 0 {
		p, err := newJWTProfile(cfg.KeyFile, u, cfg.HTTP)
		if err != nil {
			return nil, err
		}
		c.profile = p
	}
	return c, nil
}

// errUnreachable wraps failures to get any answer from ZITADEL.
var errUnreachable = source.Unreachable("zitadel")

// APIError is an answer other than 200 from ZITADEL (google.rpc.Status as its gateway writes it). Make one with
// apiError.
type APIError = source.APIError

// apiError is an APIError worded for ZITADEL.
func apiError(method, path string, status int) *APIError {
	return &APIError{Upstream: "zitadel", CodeName: "code", Hint: hint, Method: method, Path: path, Status: status}
}

// hint says what to check when ZITADEL answers status.
func hint(status int) string {
	switch status {
	case http.StatusUnauthorized:
		return "the token is invalid or expired"
	case http.StatusForbidden:
		return "the service account lacks a role: it needs IAM_OWNER_VIEWER, or ORG_OWNER_VIEWER on each --zitadel-orgs org"
	}
	return ""
}

// Object states deact mirrors, from the enum names of ZITADEL's protos.
const (
	StateActive   = "active"
	StateInactive = "inactive"
	StateRemoved  = "removed"
)

// Org is one org as listed.
type Org struct {
	ID       string
	Name     string
	State    string
	Sequence uint64
	Changed  time.Time // details.changeDate
}

// Project is one project as listed.
type Project struct {
	ID, OrgID, Name, State string
	Sequence               uint64
	Changed                time.Time
}

// App is one app as listed; ClientID is empty for SAML apps.
type App struct {
	ID, ProjectID, OrgID, Name, State, ClientID string
	Sequence                                    uint64
	Changed                                     time.Time
}

// wire types (zitadel.v1 ListQuery, ListDetails, ObjectDetails; org/project/app v1 messages)
type (
	listQuery struct {
		Offset string `json:"offset"` // uint64 as a string, as protojson writes it
		Limit  int    `json:"limit"`
		Asc    bool   `json:"asc"`
	}
	listRequest struct {
		Query listQuery `json:"query"`
	}
	objectDetails struct {
		Sequence      uint64String `json:"sequence"`
		ChangeDate    time.Time    `json:"changeDate"`
		ResourceOwner string       `json:"resourceOwner"`
	}
	listDetails struct {
		TotalResult uint64String `json:"totalResult"`
	}
	orgWire struct {
		ID      string        `json:"id"`
		Details objectDetails `json:"details"`
		State   string        `json:"state"`
		Name    string        `json:"name"`
	}
	domainWire struct {
		DomainName string `json:"domainName"`
	}
	projectWire struct {
		ID      string        `json:"id"`
		Details objectDetails `json:"details"`
		Name    string        `json:"name"`
		State   string        `json:"state"`
	}
	clientConfigWire struct {
		ClientID string `json:"clientId"`
	}
	appWire struct {
		ID         string            `json:"id"`
		Details    objectDetails     `json:"details"`
		State      string            `json:"state"`
		Name       string            `json:"name"`
		OIDCConfig *clientConfigWire `json:"oidcConfig"`
		APIConfig  *clientConfigWire `json:"apiConfig"`
	}
)

// uint64String decodes a protojson uint64: a string of digits, or (leniently) a JSON number.
type uint64String uint64

func (u *uint64String) UnmarshalJSON(b []byte) error {
	s := strings.Trim(string(b), `"`)
	if s == "" || s == "null" {
		*u = 0
		return nil
	}
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return fmt.Errorf("not a uint64: %s", b)
	}
	*u = uint64String(v)
	return nil
}

// stateOf maps ZITADEL's enum name (ORG_STATE_ACTIVE, PROJECT_STATE_INACTIVE, APP_STATE_REMOVED, ...) to a
// mirrored state. Unknown or unspecified values are an error: they are never taken for active.
func stateOf(prefix, v string) (string, error) {
	switch strings.TrimPrefix(v, prefix) {
	case "ACTIVE":
		return StateActive, nil
	case "INACTIVE":
		return StateInactive, nil
	case "REMOVED":
		return StateRemoved, nil
	}
	return "", fmt.Errorf("unknown state %q", v)
}

// ListOrgs lists every org (admin API, needs IAM_OWNER_VIEWER), page by page, oldest first.
func (c *Client) ListOrgs(ctx context.Context) ([]Org, error) {
	var out []Org
	err := listAll(ctx, c, "/admin/v1/orgs/_search", "", func(o orgWire) error {
		st, err := stateOf("ORG_STATE_", o.State)
		if err != nil {
			return fmt.Errorf("org %s: %w", o.ID, err)
		}
		out = append(out, Org{ID: o.ID, Name: o.Name, State: st, Sequence: uint64(o.Details.Sequence), Changed: o.Details.ChangeDate})
		return nil
	})
	return out, err
}

// GetOrg reads one org (management API, needs ORG_OWNER_VIEWER there). A removed org is ErrNotFound.
func (c *Client) GetOrg(ctx context.Context, orgID string) (Org, error) {
	var resp struct {
		Org orgWire `json:"org"`
	}
	if err := c.do(ctx, http.MethodGet, "/management/v1/orgs/me", orgID, nil, &resp); err != nil {
		return Org{}, err
	}
	st, err := stateOf("ORG_STATE_", resp.Org.State)
	if err != nil {
		return Org{}, fmt.Errorf("org %s: %w", orgID, err)
	}
	if resp.Org.ID != orgID {
		return Org{}, fmt.Errorf("zitadel answered org %q for org %q", resp.Org.ID, orgID)
	}
	return Org{ID: orgID, Name: resp.Org.Name, State: st, Sequence: uint64(resp.Org.Details.Sequence), Changed: resp.Org.Details.ChangeDate}, nil
}

// ListDomains lists an org's domain names.
func (c *Client) ListDomains(ctx context.Context, orgID string) ([]string, error) {
	var out []string
	err := listAll(ctx, c, "/management/v1/orgs/me/domains/_search", orgID, func(d domainWire) error {
		out = append(out, d.DomainName)
		return nil
	})
	return out, err
}

// ListProjects lists the projects an org owns.
func (c *Client) ListProjects(ctx context.Context, orgID string) ([]Project, error) {
	var out []Project
	err := listAll(ctx, c, "/management/v1/projects/_search", orgID, func(p projectWire) error {
		st, err := stateOf("PROJECT_STATE_", p.State)
		if err != nil {
			return fmt.Errorf("project %s: %w", p.ID, err)
		}
		if p.Details.ResourceOwner != "" && p.Details.ResourceOwner != orgID {
			return nil // a granted project of another org: its owner's listing has it
		}
		out = append(out, Project{ID: p.ID, OrgID: orgID, Name: p.Name, State: st, Sequence: uint64(p.Details.Sequence), Changed: p.Details.ChangeDate})
		return nil
	})
	return out, err
}

// ListApps lists a project's apps with their OIDC or API client ID.
func (c *Client) ListApps(ctx context.Context, orgID, projectID string) ([]App, error) {
	var out []App
	err := listAll(ctx, c, "/management/v1/projects/"+url.PathEscape(projectID)+"/apps/_search", orgID, func(a appWire) error {
		st, err := stateOf("APP_STATE_", a.State)
		if err != nil {
			return fmt.Errorf("app %s: %w", a.ID, err)
		}
		app := App{ID: a.ID, ProjectID: projectID, OrgID: orgID, Name: a.Name, State: st, Sequence: uint64(a.Details.Sequence), Changed: a.Details.ChangeDate}
		switch {
		case a.OIDCConfig != nil:
			app.ClientID = a.OIDCConfig.ClientID
		case a.APIConfig != nil:
			app.ClientID = a.APIConfig.ClientID
		}
		out = append(out, app)
		return nil
	})
	return out, err
}

// listAll pages through a v1 _search endpoint in ascending order until it has totalResult items or a short page.
func listAll[T any](ctx context.Context, c *Client, path, orgID string, each func(T) error) error {
	var offset uint64
	for {
		var resp struct {
			Details listDetails `json:"details"`
			Result  []T         `json:"result"`
		}
		req := listRequest{Query: listQuery{Offset: strconv.FormatUint(offset, 10), Limit: c.pageSize, Asc: true}}
		if err := c.do(ctx, http.MethodPost, path, orgID, req, &resp); err != nil {
			return err
		}
		for _, it := range resp.Result {
			if err := each(it); err != nil {
				return err
			}
		}
		offset += uint64(len(resp.Result))
		total := uint64(resp.Details.TotalResult)
		if len(resp.Result) == 0 || offset >= total {
			if offset < total {
				return fmt.Errorf("zitadel %s: listing ended at %d of %d results", path, offset, total)
			}
			return nil
		}
	}
}

// maxAnswer bounds one list answer (1000 apps with long names fit many times over).
const maxAnswer = 64 << 20

func (c *Client) do(ctx context.Context, method, path, orgID string, body, out any) error {
	var payload []byte
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		payload = b
	}
	err := c.once(ctx, method, path, orgID, payload, out)
	var ae *APIError
	if c.profile != nil && errors.As(err, &ae) && ae.Status == http.StatusUnauthorized {
		// The access token expired or was revoked: exchange a new assertion once.
		c.profile.forget()
		err = c.once(ctx, method, path, orgID, payload, out)
	}
	return err
}

func (c *Client) once(ctx context.Context, method, path, orgID string, payload []byte, out any) error {
	req, err := source.NewRequest(ctx, method, c.base, path, payload, "application/json")
	if err != nil {
		return err
	}
	token := c.token
	if c.profile != nil {
		if token, err = c.profile.bearer(ctx); err != nil {
			return err
		}
	}
	req.Header.Set("Authorization", "Bearer "+token)
	if orgID != "" {
		req.Header.Set("x-zitadel-orgid", orgID)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("%w: %s %s: %w", errUnreachable, method, path, err)
	}
	defer resp.Body.Close()
	b, err := source.ReadAnswer(resp.Body, maxAnswer)
	var large *source.AnswerTooLargeError
	switch {
	case errors.As(err, &large):
		return fmt.Errorf("zitadel %s %s: %w", method, path, err)
	case err != nil:
		return fmt.Errorf("zitadel %s %s: reading the answer: %w", method, path, err)
	}
	if resp.StatusCode != http.StatusOK {
		e := apiError(method, path, resp.StatusCode)
		var st struct {
			Code    int    `json:"code"`
			Message string `json:"message"`
		}
		if json.Unmarshal(b, &st) == nil {
			e.Code, e.Message = st.Code, st.Message
		} else {
			e.Message = string(b[:min(len(b), source.MaxMessage)]) // Error makes it printable
		}
		return e
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("zitadel %s %s: unreadable answer: %w", method, path, err)
	}
	return nil
}
