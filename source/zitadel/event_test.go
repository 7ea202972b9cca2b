package zitadel

import (
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/deact/deact/source/zitadel/zitadeltest"
	"github.com/deact/deact/state"
)

var testNow = time.Unix(1_800_000_000, 0)

func TestVerify(t *testing.T) {
	body := []byte(`{"aggregateID":"1","event_type":"org.deactivated"}`)
	ts := strconv.FormatInt(testNow.Unix(), 10)
	good := zitadeltest.Sign(testNow, body, "key-b")
	goodSig := strings.TrimPrefix(good, "t="+ts+",")
	v, err := NewVerifier([]string{"key-a", "key-b"}, func() time.Time { return testNow })
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		header string
		body   []byte
		want   error
	}{
		{"signed with the second key", good, body, nil},
		{"rotation: two v1, one unknown", zitadeltest.Sign(testNow, body, "old-key", "key-a"), body, nil},
		{"v0 and garbage v1 ignored", "t=" + ts + ",v0=abc,v1=zz," + goodSig, body, nil},
		{"299 s old", zitadeltest.Sign(testNow.Add(-299*time.Second), body, "key-a"), body, nil},
		{"missing", "", body, ErrNotSigned},
		{"wrong key", zitadeltest.Sign(testNow, body, "key-c"), body, ErrBadSignature},
		{"body changed after signing", good, []byte(`{"aggregateID":"2","event_type":"org.deactivated"}`), ErrBadSignature},
		{"body with a trailing newline", good, append(append([]byte{}, body...), '\n'), ErrBadSignature},
		{"stale", zitadeltest.Sign(testNow.Add(-301*time.Second), body, "key-a"), body, ErrStale},
		{"from the future", zitadeltest.Sign(testNow.Add(301*time.Second), body, "key-a"), body, ErrStale},
		{"timestamp changed", strings.Replace(good, "t="+ts, "t="+strconv.FormatInt(testNow.Unix()-1, 10), 1), body, ErrBadSignature},
		{"no timestamp", goodSig, body, ErrBadHeader},
		{"two timestamps", "t=" + ts + "," + good, body, ErrBadHeader},
		{"signed timestamp", "t=+" + ts + "," + goodSig, body, ErrBadHeader},
		{"no v1", "t=" + ts, body, ErrBadSignature},
		{"truncated v1", good[:len(good)-2], body, ErrBadSignature},
		{"upper-case hex of the right MAC", "t=" + ts + ",v1=" + strings.ToUpper(strings.TrimPrefix(goodSig, "v1=")), body, nil},
		{"part without =", "t=" + ts + ",x," + goodSig, body, ErrBadHeader},
		{"too many v1", "t=" + ts + strings.Repeat(",v1="+strings.Repeat("00", 32), 17), body, ErrBadHeader},
		{"huge header", "t=" + ts + ",v1=" + strings.Repeat("a", 5000), body, ErrBadHeader},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := v.Verify(tc.header, tc.body); !errors.Is(err, tc.want) {
				t.Errorf("Verify = %v, want %v", err, tc.want)
			}
		})
	}
}

func TestParseDelivery(t *testing.T) {
	fake := zitadeltest.New()
	defer fake.Close()
	orgID, _ := fake.AddOrg("acme", "acme.example")
	projID, _ := fake.AddProject(orgID, "shop")
	appID, clientID, appEvents := fake.AddApp(projID, "web", zitadeltest.OIDC)
	for _, tc := range []struct {
		name string
		body []byte
		want Intent
		err  bool
	}{
		{"org deactivated", fake.SetOrgState(orgID, zitadeltest.Inactive).Body(),
			Intent{Kind: state.MirrorOrg, act: actDeactivate, ID: orgID, OrgID: orgID}, false},
		{"project removed", fake.RemoveProject(projID).Body(),
			Intent{Kind: state.MirrorProject, act: actRemove, ID: projID, OrgID: orgID}, false},
		{"app deactivated", fake.SetAppState(appID, zitadeltest.Inactive).Body(),
			Intent{Kind: state.MirrorApp, act: actDeactivate, ID: appID, ProjectID: projID, OrgID: orgID}, false},
		{"oidc config added", appEvents[1].Body(),
			Intent{Kind: state.MirrorApp, act: actClient, ID: appID, ProjectID: projID, OrgID: orgID, ClientID: clientID}, false},
		{"ignored type", fake.Touch(orgID).Body(), Intent{Type: "org.member.added"}, false},
		{"ignored type with odd fields", []byte(`{"event_type":"user.added","sequence":"x"}`), Intent{Type: "user.added"}, false},
		{"payload inline", []byte(`{"aggregateID":"5","aggregateType":"project","resourceOwner":"4","sequence":3,"event_type":"project.application.removed","event_payload":{"appId":"6"}}`),
			Intent{Kind: state.MirrorApp, act: actRemove, ID: "6", ProjectID: "5", OrgID: "4", Sequence: 3}, false},
		{"not json", []byte(`{"aggregateID":`), Intent{}, true},
		{"two objects", []byte(`{"event_type":"user.added"}{}`), Intent{}, true},
		{"no sequence", []byte(`{"aggregateID":"1","aggregateType":"org","event_type":"org.deactivated"}`), Intent{}, true},
		{"org event on a project aggregate", []byte(`{"aggregateID":"1","aggregateType":"project","sequence":2,"event_type":"org.deactivated"}`), Intent{}, true},
		{"org id with a slash", []byte(`{"aggregateID":"1/../2","aggregateType":"org","sequence":2,"event_type":"org.deactivated"}`), Intent{}, true},
		{"org event owned by another org", []byte(`{"aggregateID":"1","aggregateType":"org","resourceOwner":"2","sequence":2,"event_type":"org.deactivated"}`), Intent{}, true},
		{"project without owner", []byte(`{"aggregateID":"1","aggregateType":"project","sequence":2,"event_type":"project.deactivated"}`), Intent{}, true},
		{"app without payload", []byte(`{"aggregateID":"1","aggregateType":"project","resourceOwner":"4","sequence":2,"event_type":"project.application.deactivated"}`), Intent{}, true},
		{"app payload not base64", []byte(`{"aggregateID":"1","aggregateType":"project","resourceOwner":"4","sequence":2,"event_type":"project.application.deactivated","event_payload":"%%%"}`), Intent{}, true},
		{"client config without client id", []byte(`{"aggregateID":"1","aggregateType":"project","resourceOwner":"4","sequence":2,"event_type":"project.application.config.api.added","event_payload":{"appId":"6"}}`), Intent{}, true},
		{"bad created_at", []byte(`{"aggregateID":"1","aggregateType":"org","sequence":2,"event_type":"org.deactivated","created_at":"yesterday"}`), Intent{}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseDelivery(tc.body)
			if tc.err {
				if !errors.Is(err, ErrMalformed) {
					t.Fatalf("err = %v, want ErrMalformed", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got.CreatedAt = time.Time{}
			if tc.want.Type == "" {
				tc.want.Type = got.Type
			}
			if tc.want.Sequence == 0 {
				tc.want.Sequence = got.Sequence
			}
			if got != tc.want {
				t.Errorf("got %+v\nwant %+v", got, tc.want)
			}
			if !got.Ignored() && got.Sequence == 0 {
				t.Error("no sequence")
			}
		})
	}
}

func TestClientJWTProfile(t *testing.T) {
	fake := zitadeltest.New()
	defer fake.Close()
	fake.AddOrg("A")
	key := fake.ServiceAccountKey()
	c, err := NewClient(ClientConfig{URL: fake.URL, KeyFile: key})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	if orgs, err := c.ListOrgs(ctx); err != nil || len(orgs) != 1 {
		t.Fatalf("ListOrgs = %v, %v", orgs, err)
	}
	// The access token is revoked: the client exchanges a new assertion and goes on.
	fake.RevokeIssued()
	if orgs, err := c.ListOrgs(ctx); err != nil || len(orgs) != 1 {
		t.Fatalf("ListOrgs after revocation = %v, %v", orgs, err)
	}
	// A key ZITADEL does not know: the grant is refused, a clear error.
	other := zitadeltest.New()
	defer other.Close()
	c2, err := NewClient(ClientConfig{URL: fake.URL, KeyFile: other.ServiceAccountKey()})
	if err != nil {
		t.Fatal(err)
	}
	var ae *APIError
	if _, err := c2.ListOrgs(ctx); !errors.As(err, &ae) || ae.Path != "/oauth/v2/token" || !strings.Contains(err.Error(), "invalid_grant") {
		t.Errorf("unknown key: %v", err)
	}
	for _, bad := range []string{`{}`, `{"type":"serviceaccount","keyId":"1","userId":"2","key":"nope"}`, `not json`} {
		if _, err := NewClient(ClientConfig{URL: fake.URL, KeyFile: []byte(bad)}); err == nil {
			t.Errorf("key file %s accepted", bad)
		}
	}
	if _, err := NewClient(ClientConfig{URL: fake.URL, KeyFile: key, Token: "x"}); err == nil {
		t.Error("both a token and a key file accepted")
	}
}
