package commvault

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/deact/deact/source"
)

// Client reads Commvault's REST web service (the organization APIs) with a token from POST /Login or a fixed
// one. It is safe for concurrent use; concurrent requests that meet an expired token share one new login.
type Client struct {
	cfg  ClientConfig
	base *url.URL

	mu      sync.Mutex
	token   string    // the Authtoken header value, "QSDK …"
	gotAt   time.Time // when token was obtained
	version uint64    // bumped at every new token, so concurrent 401s log in once
}

// ClientConfig configures a Client. Zero values take the defaults in brackets.
type ClientConfig struct {
	// URL is the web service root, e.g. https://cv.example.com/webconsole/api (the same root as the
	// Command Center's API explorer); requests go to URL + "/Organization" and so on.
	URL string
	// User and Password log in with POST /Login (the password is sent base64-encoded, as Commvault wants).
	User, Password string
	// Token is a fixed Authtoken ("QSDK …"; the prefix is added when missing) used instead of a login. With
	// TokenFile set, the file is read again after a 401, so an operator can replace an expired token without a
	// restart.
	Token     string
	TokenFile string
	// RenewAfter is the age at which a login token is replaced before use [20m]: Commvault's tokens expire after
	// 30 minutes of inactivity (POST Login documentation), and a younger token was used less than that long ago.
	RenewAfter time.Duration
	// XML asks for application/xml answers (Accept); JSON otherwise. Answers are parsed by their Content-Type.
	XML bool
	// Timeout bounds each request, the reading of its answer included [30s].
	Timeout   time.Duration
	MaxAnswer int64        // bytes of one answer [16 MiB]; larger answers are an error
	HTTP      *http.Client // [a pooled client; Timeout applies on top]
	Now       func() time.Time
}

// NewClient validates cfg.
func NewClient(cfg ClientConfig) (*Client, error) {
	u, err := url.Parse(cfg.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil || u.RawQuery != "" {
		return nil, fmt.Errorf("commvault url %q: want http(s)://host[:port]/webservice-root, without credentials or query", cfg.URL)
	}
	u.Path = strings.TrimSuffix(u.Path, "/")
	login := cfg.User != "" || cfg.Password != ""
	fixed := cfg.Token != "" || cfg.TokenFile != ""
	switch {
	case login && fixed:
		return nil, errors.New("commvault: either a user and password or a token, not both")
	case login && (cfg.User == "" || cfg.Password == ""):
		return nil, errors.New("commvault: a login needs both a user and a password")
	case !login && !fixed:
		return nil, errors.New("commvault: no credentials (a user and password, or a token)")
	}
	if strings.ContainsAny(cfg.User, "\r\n") {
		return nil, errors.New("commvault: the user name contains a line break")
	}
	if cfg.RenewAfter <= 0 {
		cfg.RenewAfter = 20 * time.Minute
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 30 * time.Second
	}
	if cfg.MaxAnswer <= 0 {
		cfg.MaxAnswer = 16 << 20
	}
	if cfg.HTTP == nil {
		cfg.HTTP = &http.Client{Transport: source.NewTransport(cfg.Timeout)}
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	c := &Client{cfg: cfg, base: u}
	if cfg.Token != "" {
		t, err := authtoken(cfg.Token)
		if err != nil {
			return nil, err
		}
		c.token, c.gotAt = t, cfg.Now()
	}
	return c, nil
}

// authtoken checks a token and gives it the "QSDK " prefix Commvault's Authtoken header carries.
func authtoken(t string) (string, error) {
	t = strings.TrimSpace(t)
	if t == "" {
		return "", errors.New("commvault: the token is empty")
	}
	if len(t) > 8<<10 || strings.ContainsAny(t, "\r\n\t\x00") {
		return "", errors.New("commvault: the token has control characters or is longer than 8 KiB")
	}
	if !strings.HasPrefix(t, "QSDK ") {
		t = "QSDK " + t
	}
	return t, nil
}

// errUnreachable wraps failures to get any answer from Commvault (refused, reset, timed out).
var errUnreachable = source.Unreachable("commvault")

// APIError is an answer Commvault gave that is not a success: an HTTP status other than 200, or a 200 whose
// body carries a non-zero errorCode (Commvault reports many failures that way). Make one with apiError.
type APIError = source.APIError

// apiError is an APIError worded for Commvault.
func apiError(method, path string, status, code int, msg string) *APIError {
	return &APIError{Upstream: "commvault", CodeName: "errorCode", Hint: hint,
		Method: method, Path: path, Status: status, Code: code, Message: msg}
}

// hint says what to check when Commvault answers status.
func hint(status int) string {
	switch status {
	case http.StatusUnauthorized:
		return "the token is invalid or expired, or the login was refused"
	case http.StatusForbidden:
		return "the user lacks the permission to view organizations"
	}
	return ""
}

// login obtains a new token with POST /Login unless another goroutine already replaced the one seen (version).
func (c *Client) login(ctx context.Context, seen uint64) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.version != seen && c.token != "" {
		return nil // someone else renewed it meanwhile
	}
	if c.cfg.User == "" {
		if c.cfg.TokenFile == "" {
			return nil // a fixed token cannot be renewed; the caller reports the 401
		}
		b, err := readSecret(c.cfg.TokenFile)
		if err != nil {
			return fmt.Errorf("commvault: re-reading the token file: %w", err)
		}
		t, err := authtoken(b)
		if err != nil {
			return err
		}
		c.token, c.gotAt = t, c.cfg.Now()
		c.version++
		return nil
	}
	body, _ := json.Marshal(map[string]string{
		"username": c.cfg.User,
		"password": base64.StdEncoding.EncodeToString([]byte(c.cfg.Password)),
	})
	var resp loginAnswer
	if err := c.send(ctx, http.MethodPost, "/Login", "", body, &resp); err != nil {
		return err
	}
	if resp.Token == "" {
		msg, code := "no token in the answer", 0
		if len(resp.Errors) > 0 {
			msg, code = resp.Errors[0].Message, resp.Errors[0].Code
		}
		// Commvault answers a refused login with 200 and an errList; it is a 401 for what it means.
		return apiError(http.MethodPost, "/Login", http.StatusUnauthorized, code, msg)
	}
	t, err := authtoken(resp.Token)
	if err != nil {
		return fmt.Errorf("commvault POST /Login: %w", err)
	}
	c.token, c.gotAt = t, c.cfg.Now()
	c.version++
	return nil
}

// current returns the token to use and its version, logging in first when there is none or it is old.
func (c *Client) current(ctx context.Context) (string, uint64, error) {
	c.mu.Lock()
	t, v, age := c.token, c.version, c.cfg.Now().Sub(c.gotAt)
	c.mu.Unlock()
	if t == "" || (c.cfg.User != "" && age >= c.cfg.RenewAfter) {
		if err := c.login(ctx, v); err != nil {
			return "", 0, err
		}
		c.mu.Lock()
		t, v = c.token, c.version
		c.mu.Unlock()
	}
	return t, v, nil
}

// get reads path into out (a JSON or XML answer type); a 401 renews the token once and retries.
func (c *Client) get(ctx context.Context, path string, out answer) error {
	for attempt := 0; ; attempt++ {
		tok, v, err := c.current(ctx)
		if err != nil {
			return err
		}
		err = c.send(ctx, http.MethodGet, path, tok, nil, out)
		var ae *APIError
		if attempt == 0 && errors.As(err, &ae) && ae.Status == http.StatusUnauthorized && (c.cfg.User != "" || c.cfg.TokenFile != "") {
			if lerr := c.login(ctx, v); lerr != nil {
				return lerr
			}
			continue
		}
		return err
	}
}

// answer is a decoded Commvault answer: it can say it carries an error (errorCode ≠ 0).
type answer interface {
	apiError() (code int, msg string)
}

// send makes one request and decodes a 200 answer into out by its Content-Type.
func (c *Client) send(ctx context.Context, method, path, token string, body []byte, out answer) error {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	accept := "application/json"
	if c.cfg.XML {
		accept = "application/xml"
	}
	req, err := source.NewRequest(ctx, method, c.base, path, body, accept)
	if err != nil {
		return err
	}
	if token != "" {
		req.Header.Set("Authtoken", token)
	}
	resp, err := c.cfg.HTTP.Do(req)
	if err != nil {
		// url.Error names the URL, which carries no credential (they travel in headers and the body).
		return fmt.Errorf("%w: %s %s: %w", errUnreachable, method, path, err)
	}
	defer resp.Body.Close()
	b, err := source.ReadAnswer(resp.Body, c.cfg.MaxAnswer)
	var large *source.AnswerTooLargeError
	switch {
	case errors.As(err, &large):
		return fmt.Errorf("commvault %s %s: %w", method, path, err)
	case err != nil:
		return fmt.Errorf("%w: %s %s: reading the answer: %w", errUnreachable, method, path, err)
	}
	xmlAnswer := isXML(resp.Header.Get("Content-Type"))
	if resp.StatusCode != http.StatusOK {
		e := apiError(method, path, resp.StatusCode, 0, "")
		var g genericAnswer
		if decode(b, xmlAnswer, &g) == nil && g.Message != "" {
			e.Code, e.Message = g.Code, g.Message
		} else {
			e.Message = printable(b, 200)
		}
		return e
	}
	if err := decode(b, xmlAnswer, out); err != nil {
		return fmt.Errorf("commvault %s %s: unreadable answer: %w", method, path, err)
	}
	if code, msg := out.apiError(); code != 0 {
		return apiError(method, path, resp.StatusCode, code, msg)
	}
	return nil
}

func isXML(contentType string) bool {
	ct := strings.ToLower(strings.TrimSpace(strings.SplitN(contentType, ";", 2)[0]))
	return ct == "application/xml" || ct == "text/xml" || strings.HasSuffix(ct, "+xml")
}

// printable is the start of an answer for an error message, without control characters.
func printable(b []byte, n int) string { return source.Printable(string(b[:min(len(b), n)]), n) }

// ListOrgs lists every organization the user can see (GET /Organization).
func (c *Client) ListOrgs(ctx context.Context) ([]Listed, error) {
	var a listAnswer
	if err := c.get(ctx, "/Organization", &a); err != nil {
		return nil, err
	}
	return a.orgs()
}

// GetOrg reads one organization's details (GET /Organization/{id}). An answer deact cannot map (an unknown
// deactivateOptions value, a status it does not know, another organization's ID) is an error: the caller keeps
// the organization's last mirrored state.
func (c *Client) GetOrg(ctx context.Context, id string) (Org, error) {
	var a detailsAnswer
	if err := c.get(ctx, "/Organization/"+url.PathEscape(id), &a); err != nil {
		return Org{}, err
	}
	o, err := a.org()
	if err != nil {
		return Org{}, fmt.Errorf("commvault organization %s: %w", id, err)
	}
	if o.ID != "" && o.ID != id {
		return Org{}, fmt.Errorf("commvault answered organization %q for organization %q", o.ID, id)
	}
	o.ID = id
	return o, nil
}
