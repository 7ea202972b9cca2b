package commvault

import (
	"context"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/deact/deact/state"
)

// detailCases are answers to GET /Organization/{id} in the spellings Commvault's documentation and SDK show,
// and answers deact must refuse.
var detailCases = []struct {
	name    string
	xml     bool
	body    string
	ok      bool
	id      string
	domains []string
	ops     state.Ops
}{
	{"json booleans", false, `{"organizationInfo":{"organization":{"connectName":"A","shortName":{"id":12,"domainName":"acme"},
		"emailDomainNames":["acme.example"],"deactivateOptions":{"disableLogin":false,"disableBackup":true,"disableRestore":false}},
		"organizationProperties":{"primaryDomain":"p.acme.example"}}}`, true, "12", []string{"acme", "p.acme.example", "acme.example"}, state.OpBackup},
	{"json numbers and strings", false, `{"organizationInfo":{"organization":{"shortName":{"id":"12"},
		"deactivateOptions":{"disableLogin":1,"disableBackup":"0","disableRestore":"true"}}}}`, true, "12", nil, state.OpLogin | state.OpToken | state.OpRestore},
	{"json providerDomainName", false, `{"organizationInfo":{"organization":{"providerDomainName":"Acme.Example","shortName":{"id":12}}}}`,
		true, "12", []string{"Acme.Example"}, 0},
	{"json deactivated status without options", false, `{"organizationInfo":{"organization":{"shortName":{"id":12},"status":"Deactivated"}}}`,
		true, "12", nil, state.OpsAll},
	{"json active status", false, `{"organizationInfo":{"organization":{"shortName":{"id":12},"status":"ACTIVE"}}}`, true, "12", nil, 0},
	{"json unknown status", false, `{"organizationInfo":{"organization":{"shortName":{"id":12},"status":"Suspended"}}}`, false, "", nil, 0},
	{"json numeric status", false, `{"organizationInfo":{"organization":{"shortName":{"id":12},"status":2}}}`, false, "", nil, 0},
	{"json unknown flag", false, `{"organizationInfo":{"organization":{"shortName":{"id":12},"deactivateOptions":{"disableLogin":"yes"}}}}`, false, "", nil, 0},
	{"json no organizationInfo", false, `{"organization":{}}`, false, "", nil, 0},
	{"json errorCode in a 200", false, `{"errorCode":2,"errorMessage":"no permission"}`, false, "", nil, 0},
	{"json not an object", false, `[1,2]`, false, "", nil, 0},
	{"xml attributes", true, `<App_GetOrganizationInfoResponse><organizationInfo><organization connectName="A">
		<shortName id="12" domainName="acme"/><emailDomainNames>acme.example</emailDomainNames><emailDomainNames>b.example</emailDomainNames>
		<deactivateOptions disableLogin="1" disableBackup="0" disableRestore="0"/></organization>
		<organizationProperties primaryDomain="p.example"/></organizationInfo></App_GetOrganizationInfoResponse>`,
		true, "12", []string{"acme", "p.example", "acme.example", "b.example"}, state.OpLogin | state.OpToken},
	{"json options under organizationProperties", false, `{"organizationInfo":{"organization":{"shortName":{"id":12}},
		"organizationProperties":{"deactivateOptions":{"disableLogin":false,"disableBackup":true,"disableRestore":false}}}}`, true, "12", nil, state.OpBackup},
	{"json options in both places, agreeing", false, `{"organizationInfo":{"organization":{"shortName":{"id":12},"deactivateOptions":{"disableRestore":1}},
		"organizationProperties":{"deactivateOptions":{"disableRestore":true}}}}`, true, "12", nil, state.OpRestore},
	{"json options in both places, disagreeing", false, `{"organizationInfo":{"organization":{"shortName":{"id":12},"deactivateOptions":{"disableRestore":1}},
		"organizationProperties":{"deactivateOptions":{"disableBackup":true}}}}`, false, "", nil, 0},
	{"xml as deact's own Commvault API writes it", true, `<?xml version="1.0" encoding="UTF-8" standalone="no" ?>
<Api_GetOrganizationResponse> <organizationInfo> <organization connectName="mycompany"> <shortName id="1" domainName="mycompany"/> </organization> <organizationProperties> <deactivateOptions disableLogin="0" disableBackup="1" disableRestore="0"/> </organizationProperties> </organizationInfo>
</Api_GetOrganizationResponse>`, true, "1", []string{"mycompany"}, state.OpBackup},
	{"xml another root name", true, `<Response><organizationInfo><organization><shortName id="3"/>
		<deactivateOptions disableBackup="true"/></organization></organizationInfo></Response>`, true, "3", nil, state.OpBackup},
	{"xml elements", true, `<R><organizationInfo><organization><shortName id="3"/><deactivateOptions><disableLogin>0</disableLogin>
		<disableBackup>1</disableBackup></deactivateOptions></organization></organizationInfo></R>`, true, "3", nil, state.OpBackup},
	{"xml element unknown", true, `<R><organizationInfo><organization><shortName id="3"/><deactivateOptions><disableBackup>yes</disableBackup>
		</deactivateOptions></organization></organizationInfo></R>`, false, "", nil, 0},
	{"xml attribute and element disagree", true, `<R><organizationInfo><organization><shortName id="3"/><deactivateOptions disableBackup="0">
		<disableBackup>1</disableBackup></deactivateOptions></organization></organizationInfo></R>`, false, "", nil, 0},
	{"xml unknown flag", true, `<R><organizationInfo><organization><shortName id="3"/><deactivateOptions disableBackup="yes"/></organization></organizationInfo></R>`,
		false, "", nil, 0},
	{"xml undefined entity", true, `<R><organizationInfo><organization connectName="&evil;"><shortName id="3"/></organization></organizationInfo></R>`,
		false, "", nil, 0},
	{"xml external entity", true, `<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]>
		<R><organizationInfo><organization connectName="&x;"><shortName id="3"/></organization></organizationInfo></R>`, false, "", nil, 0},
	{"xml truncated", true, `<R><organizationInfo><organization><shortName id="3"/>`, false, "", nil, 0},
}

func TestDetailAnswers(t *testing.T) {
	for _, tc := range detailCases {
		t.Run(tc.name, func(t *testing.T) {
			var a detailsAnswer
			err := decode([]byte(tc.body), tc.xml, &a)
			var o Org
			if err == nil {
				if code, msg := a.apiError(); code != 0 {
					err = &APIError{Status: 200, Code: code, Message: msg}
				} else {
					o, err = a.org()
				}
			}
			if (err == nil) != tc.ok {
				t.Fatalf("err = %v, want ok %v", err, tc.ok)
			}
			if !tc.ok {
				return
			}
			if o.ID != tc.id || o.Disabled != tc.ops || !slices.Equal(o.Domains, tc.domains) {
				t.Errorf("got %+v", o)
			}
		})
	}
}

// FuzzDetailAnswer: no answer makes the mapping panic, and what it maps names only the ops Commvault has.
func FuzzDetailAnswer(f *testing.F) {
	for _, tc := range detailCases {
		f.Add([]byte(tc.body), tc.xml)
	}
	f.Add([]byte(`{"token":"QSDK 38568","userName":"admin"}`), false)
	f.Add([]byte(`<DM2ContentIndexing_CheckCredentialResp token="QSDK 1" userName="a"/>`), true)
	f.Add([]byte(`{"errList":[{"errorCode":5,"errLogMessage":"Invalid Username or Password"}]}`), false)
	f.Fuzz(func(t *testing.T, body []byte, isXML bool) {
		var a detailsAnswer
		if decode(body, isXML, &a) != nil {
			return
		}
		o, err := a.org()
		if err == nil && (o.Disabled&^state.OpsAll != 0 || (o.Disabled&state.OpLogin != 0) != (o.Disabled&state.OpToken != 0)) {
			t.Fatalf("ops %v from %q", o.Disabled, body)
		}
		var la loginAnswer
		if decode(body, isXML, &la) == nil && la.Token != "" {
			if tok, err := authtoken(la.Token); err == nil && (!strings.HasPrefix(tok, "QSDK ") || strings.ContainsAny(tok, "\r\n")) {
				t.Fatalf("token %q would go into a header", tok)
			}
		}
		var l listAnswer
		if decode(body, isXML, &l) == nil {
			if orgs, err := l.orgs(); err == nil {
				for _, o := range orgs {
					if state.ValidateID("org", o.ID) != nil {
						t.Fatalf("listed an invalid id %q", o.ID)
					}
				}
			}
		}
	})
}

// TestListAnswers: the listing's IDs are checked before they become keys; a duplicate is an error.
func TestListAnswers(t *testing.T) {
	for _, tc := range []struct {
		name string
		xml  bool
		body string
		ok   bool
		n    int
	}{
		{"json", false, `{"providers":[{"connectName":"A","shortName":{"id":1,"domainName":"a"}},{"connectName":"B","providerDomainName":"b.example","shortName":{"id":2}}]}`, true, 2},
		{"json empty", false, `{"providers":[]}`, true, 0},
		{"json no providers", false, `{}`, true, 0},
		{"xml", true, `<X><providers connectName="A"><shortName id="1" domainName="a"/></providers></X>`, true, 1},
		{"json id with a slash", false, `{"providers":[{"shortName":{"id":"1/../2"}}]}`, false, 0},
		{"json no id", false, `{"providers":[{"connectName":"A"}]}`, false, 0},
		{"json duplicate", false, `{"providers":[{"shortName":{"id":1}},{"shortName":{"id":1}}]}`, false, 0},
		{"json id an object", false, `{"providers":[{"shortName":{"id":{}}}]}`, false, 0},
	} {
		var a listAnswer
		err := decode([]byte(tc.body), tc.xml, &a)
		var orgs []Listed
		if err == nil {
			orgs, err = a.orgs()
		}
		if (err == nil) != tc.ok || len(orgs) != tc.n {
			t.Errorf("%s: %d orgs, err %v", tc.name, len(orgs), err)
		}
	}
}

// TestAnswerBounds: an answer larger than MaxAnswer, and one that never ends, are errors, not memory or a hang.
func TestAnswerBounds(t *testing.T) {
	big := `{"providers":[` + strings.Repeat(`{"shortName":{"id":1}},`, 10000) + `{"shortName":{"id":2}}]}`
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if strings.HasSuffix(r.URL.Path, "/Organization") {
			_, _ = w.Write([]byte(big))
			return
		}
		w.(http.Flusher).Flush()
		<-r.Context().Done() // a detail answer that never ends
	}))
	defer srv.Close()
	c, err := NewClient(ClientConfig{URL: srv.URL, Token: "QSDK t", MaxAnswer: 64 << 10, Timeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.ListOrgs(context.Background()); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("oversized answer: %v", err)
	}
	t0 := time.Now()
	if _, err := c.GetOrg(context.Background(), "1"); err == nil || time.Since(t0) > 5*time.Second {
		t.Errorf("endless answer: %v after %v", err, time.Since(t0))
	}
}
