package zitadel

import (
	"context"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// KeyFile is a ZITADEL service account key as the console downloads it (JSON type "serviceaccount"): the
// JWT-profile grant signs an assertion with it and exchanges it for an access token.
type KeyFile struct {
	Type   string `json:"type"`
	KeyID  string `json:"keyId"`
	Key    string `json:"key"` // PEM RSA private key
	UserID string `json:"userId"`
}

// jwtScope asks for an access token whose audience includes ZITADEL's own APIs.
const jwtScope = "openid urn:zitadel:iam:org:project:id:zitadel:aud"

// jwtProfile obtains and caches access tokens with the JWT-profile grant (RFC 7523), as ZITADEL documents for
// service accounts: an RS256 assertion with iss = sub = the user ID, aud = ZITADEL's issuer URL, exchanged at
// /oauth/v2/token. Safe for concurrent use.
type jwtProfile struct {
	kf       KeyFile
	key      *rsa.PrivateKey
	issuer   string
	tokenURL string
	http     *http.Client

	mu     sync.Mutex
	token  string
	expiry time.Time
}

func newJWTProfile(b []byte, base *url.URL, hc *http.Client) (*jwtProfile, error) {
	var kf KeyFile
	if err := json.Unmarshal(b, &kf); err != nil {
		return nil, fmt.Errorf("zitadel key file: %w", err)
	}
	if kf.Type != "serviceaccount" || kf.KeyID == "" || kf.UserID == "" {
		return nil, errors.New(`zitadel key file: want a service account key ({"type":"serviceaccount","keyId","key","userId"})`)
	}
	block, _ := pem.Decode([]byte(kf.Key))
	if block == nil {
		return nil, errors.New("zitadel key file: no PEM key")
	}
	var key *rsa.PrivateKey
	if k, err := x509.ParsePKCS1PrivateKey(block.Bytes); err == nil {
		key = k
	} else if k8, err8 := x509.ParsePKCS8PrivateKey(block.Bytes); err8 == nil {
		rk, ok := k8.(*rsa.PrivateKey)
		if !ok {
			return nil, errors.New("zitadel key file: not an RSA key")
		}
		key = rk
	} else {
		return nil, fmt.Errorf("zitadel key file: %w", err)
	}
	u := *base
	u.Path += "/oauth/v2/token"
	return &jwtProfile{kf: kf, key: key, issuer: base.String(), tokenURL: u.String(), http: hc}, nil
}

// bearer returns a valid access token, exchanging a new assertion a minute before the cached one expires.
func (p *jwtProfile) bearer(ctx context.Context) (string, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.token != "" && time.Now().Before(p.expiry.Add(-time.Minute)) {
		return p.token, nil
	}
	now := time.Now()
	t := jwt.NewWithClaims(jwt.SigningMethodRS256, jwt.RegisteredClaims{
		Issuer: p.kf.UserID, Subject: p.kf.UserID, Audience: jwt.ClaimStrings{p.issuer},
		IssuedAt: jwt.NewNumericDate(now), ExpiresAt: jwt.NewNumericDate(now.Add(time.Hour)),
	})
	t.Header["kid"] = p.kf.KeyID
	assertion, err := t.SignedString(p.key)
	if err != nil {
		return "", err
	}
	form := url.Values{"grant_type": {"urn:ietf:params:oauth:grant-type:jwt-bearer"}, "scope": {jwtScope}, "assertion": {assertion}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.tokenURL, strings.NewReader(form.Encode()))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := p.http.Do(req)
	if err != nil {
		return "", fmt.Errorf("%w: token exchange: %w", errUnreachable, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK {
		var oe struct {
			Error string `json:"error"`
			Desc  string `json:"error_description"`
		}
		_ = json.Unmarshal(b, &oe)
		e := apiError(http.MethodPost, "/oauth/v2/token", resp.StatusCode)
		e.Message = strings.TrimSpace(oe.Error + " " + oe.Desc)
		return "", e
	}
	var tr struct {
		AccessToken string `json:"access_token"`
		ExpiresIn   int64  `json:"expires_in"`
	}
	if err := json.Unmarshal(b, &tr); err != nil || tr.AccessToken == "" {
		return "", fmt.Errorf("zitadel token exchange: unreadable answer")
	}
	p.token, p.expiry = tr.AccessToken, now.Add(time.Duration(max(tr.ExpiresIn, 60))*time.Second)
	return p.token, nil
}

// forget drops the cached token (ZITADEL refused it), so the next call exchanges a new one.
func (p *jwtProfile) forget() {
	p.mu.Lock()
	p.token = ""
	p.mu.Unlock()
}
