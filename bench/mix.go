package bench

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	mrand "math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
)

// kind is one sort of request in the mix, each shaped the way Envoy (gRPC) or nginx auth_request (HTTP) sends it
// for the ZITADEL and Commvault route presets.
type kind uint8

const (
	kindToken     kind = iota // ZITADEL token endpoint, client_credentials, client_id in the form body (gRPC) or Basic auth (HTTP)
	kindAuthorize             // ZITADEL authorize with the client_id and the org scope urn:zitadel:iam:org:id:{org}
	kindLogin                 // ZITADEL login UI with the x-zitadel-orgid header, op login by route fact
	kindBackup                // Commvault subclient backup, org by route fact (per-tenant host)
	kindRestore               // Commvault retrieveToClient, org by route fact
	kindAPI                   // ZITADEL management API with a JWT bearer naming org, client and project
	numKinds
)

var kindNames = [numKinds]string{"token", "authorize", "login", "backup", "restore", "api"}

func (k kind) String() string { return kindNames[k] }

// appsApply reports whether the request names an app whose deactivation denies it.
func (k kind) appsApply() bool { return k == kindToken || k == kindAuthorize || k == kindAPI }

// DefaultMix is the request mix when none is given: weights per kind.
const DefaultMix = "token=30,authorize=15,login=15,backup=10,restore=5,api=25"

// Mix is the weight of each kind of request.
type Mix [numKinds]int

// ParseMix reads "token=30,authorize=15,...": kinds token, authorize, login, backup, restore, api. Kinds left
// out get weight 0; at least one weight must be positive.
func ParseMix(s string) (Mix, error) {
	var m Mix
	total := 0
	for item := range strings.SplitSeq(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		name, w, ok := strings.Cut(item, "=")
		if !ok {
			return m, fmt.Errorf("mix %q: want kind=weight", item)
		}
		k := slices.Index(kindNames[:], strings.TrimSpace(name))
		if k < 0 {
			return m, fmt.Errorf("mix %q: unknown kind (want %s)", item, strings.Join(kindNames[:], ", "))
		}
		n, err := strconv.Atoi(strings.TrimSpace(w))
		if err != nil || n < 0 {
			return m, fmt.Errorf("mix %q: weight must be a whole number ≥ 0", item)
		}
		m[k] = n
		total += n
	}
	if total == 0 {
		return m, fmt.Errorf("mix %q: no positive weight", s)
	}
	return m, nil
}

func (m Mix) String() string {
	var parts []string
	for k, w := range m {
		if w > 0 {
			parts = append(parts, fmt.Sprintf("%s=%d", kind(k), w))
		}
	}
	return strings.Join(parts, ",")
}

// template is one prepared request with the subjects it names. Its messages are shared by every worker and
// never modified after the pool is built (gRPC marshals them concurrently, the HTTP transport only reads them).
type template struct {
	kind kind
	org  int // index into model.orgs
	app  int // index into model.apps, or -1
	grpc *authv3.CheckRequest
	// HTTP check form (nginx auth_request): method and headers; no body, as nginx does not forward it.
	header http.Header
}

// buildPool prepares n requests drawn from mix over the model's subjects.
func buildPool(m *model, mix Mix, n int, seed uint64) []*template {
	rng := mrand.New(mrand.NewPCG(seed, 0x706f6f6c))
	total := 0
	for _, w := range mix {
		total += w
	}
	jwts := map[int]string{}
	pool := make([]*template, n)
	for i := range pool {
		r := rng.IntN(total)
		var k kind
		for k = 0; k < numKinds; k++ {
			if r < mix[k] {
				break
			}
			r -= mix[k]
		}
		t := &template{kind: k, app: -1}
		if k.appsApply() && len(m.apps) > 0 {
			t.app = rng.IntN(len(m.apps))
			t.org = m.appOrg(t.app)
		} else {
			t.org = rng.IntN(len(m.orgs))
		}
		if k == kindAPI && t.app >= 0 {
			if _, ok := jwts[t.app]; !ok {
				jwts[t.app] = m.accessToken(t.app)
			}
		}
		t.grpc, t.header = m.requests(t, jwts[t.app])
		pool[i] = t
	}
	return pool
}

// requests builds the gRPC CheckRequest and the HTTP check headers of t.
func (m *model) requests(t *template, jwt string) (*authv3.CheckRequest, http.Header) {
	org := m.orgs[t.org].id
	var client, project string
	if t.app >= 0 {
		client, project = m.clientID(t.app), m.projectID(t.app)
	}
	var (
		method, path, body string
		headers            = map[string]string{"user-agent": "deactbench", "x-request-id": "bench"}
		ext                map[string]string
		hh                 = http.Header{}
	)
	switch t.kind {
	case kindToken:
		method, path = "POST", "/oauth/v2/token"
		headers["content-type"] = "application/x-www-form-urlencoded"
		if client != "" {
			body = "grant_type=client_credentials&client_id=" + url.QueryEscape(client) + "&client_secret=s3cret&scope=openid"
			basic := base64.StdEncoding.EncodeToString([]byte(url.QueryEscape(client) + ":s3cret"))
			hh.Set("Authorization", "Basic "+basic)
		} else {
			// No app registered: the org scope names the subject.
			body = "grant_type=client_credentials&scope=" + url.QueryEscape("openid urn:zitadel:iam:org:id:"+org)
			path += "?scope=" + url.QueryEscape("openid urn:zitadel:iam:org:id:"+org)
		}
	case kindAuthorize:
		method = "GET"
		q := url.Values{"response_type": {"code"}, "redirect_uri": {"https://app.bench.example/cb"},
			"scope": {"openid profile urn:zitadel:iam:org:id:" + org}}
		if client != "" {
			q.Set("client_id", client)
		}
		path = "/oauth/v2/authorize?" + q.Encode()
		headers["accept"] = "text/html"
	case kindLogin:
		method, path = "POST", "/ui/login/loginname"
		headers["x-zitadel-orgid"] = org
		headers["content-type"] = "application/x-www-form-urlencoded"
		ext = map[string]string{"op": "login"}
		hh.Set("X-Deact-Op", "login")
	case kindBackup:
		method, path = "POST", "/webconsole/api/Subclient/12/action/backup?backupLevel=Incremental"
		headers["accept"] = "application/json"
		headers["authtoken"] = "QSDK 3856801"
		ext = map[string]string{"org_id": org}
		hh.Set("X-Deact-Org-Id", org)
	case kindRestore:
		method, path = "POST", "/webconsole/api/retrieveToClient"
		headers["accept"] = "application/json"
		headers["authtoken"] = "QSDK 3856801"
		ext = map[string]string{"org_id": org}
		hh.Set("X-Deact-Org-Id", org)
	case kindAPI:
		method = "GET"
		if jwt != "" {
			path = "/management/v1/projects/" + project
			headers["authorization"] = "Bearer " + jwt
		} else {
			// No app registered: an API call for the org, chosen by header.
			path = "/management/v1/projects"
			headers["x-zitadel-orgid"] = org
		}
		headers["accept"] = "application/json"
	}
	headers[":method"], headers[":path"], headers[":authority"] = method, path, "id.bench.example"
	for k, v := range headers {
		if !strings.HasPrefix(k, ":") {
			hh.Set(k, v)
		}
	}
	hh.Set("X-Original-Method", method)
	hh.Set("X-Original-URI", path)
	cr := &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Source:      &authv3.AttributeContext_Peer{Address: socketAddress("192.0.2.7", 51234)},
		Destination: &authv3.AttributeContext_Peer{Address: socketAddress("192.0.2.1", 443)},
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Id: "bench", Method: method, Path: path, Host: "id.bench.example", Scheme: "https", Protocol: "HTTP/1.1",
			Headers: headers, Body: body, Size: int64(len(body)),
		}},
		ContextExtensions: ext,
	}}
	return cr, hh
}

func socketAddress(ip string, port uint32) *corev3.Address {
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Address: ip, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port},
	}}}
}

// accessToken is a ZITADEL-shaped access token (JWS compact form) for a user of app j's org through app j.
// deact reads the payload without verifying the signature (the upstream verifies it), so the signature is
// random bytes of an RS256 signature's length.
func (m *model) accessToken(j int) string {
	now := time.Now()
	claims := map[string]any{
		"iss": "https://id.bench.example", "sub": fmt.Sprintf("%s-u%d", m.run, j),
		"aud": []string{m.projectID(j), m.clientID(j)}, "azp": m.clientID(j), "client_id": m.clientID(j),
		"iat": now.Unix(), "exp": now.Add(24 * time.Hour).Unix(), "jti": strconv.Itoa(j),
		"urn:zitadel:iam:user:resourceowner:id": m.orgs[m.appOrg(j)].id,
	}
	payload, _ := json.Marshal(claims)
	sig := make([]byte, 256)
	_, _ = rand.Read(sig)
	enc := base64.RawURLEncoding
	return enc.EncodeToString([]byte(`{"alg":"RS256","kid":"bench","typ":"JWT"}`)) + "." + enc.EncodeToString(payload) + "." + enc.EncodeToString(sig)
}
