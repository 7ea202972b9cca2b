package admin_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/deact/deact/state"
)

// The token of the Commvault documentation's sample request.
const seedToken = "38568012f4d1e8ee1841d283a47aa3ba78e124ea58354b5fc60f4dab8a63347d05cf5552484dafda3bfa4c5db84e580b1cb37bcf8e65b39f7f8549a443e6f78a2c7be3f31b3d845e24776c835e498e8e883bb40c46bd15af4f40ca94e823acedcdd4e9659e74b34a07a85c4586cd2ed914b6dce015874783ef768fda78183a4208930954a377f66eb56c8b92cexampl4s437a19317ca6ce7f3233d5a01aca35dbad93468b833f2cf71010809006a937670adce711ca8be46638e8"

// The sample request body and response of the Commvault documentation, byte for byte.
const (
	seedRequestBody = `<Api_DeactivateOrganizationRequest> <deactivateOptions disableLogin="0" disableBackup="1" disableRestore="0"/>
</Api_DeactivateOrganizationRequest>`
	seedResponse = `<?xml version="1.0" encoding="UTF-8" standalone="no" ?>
<Api_DeactivateOrganizationResponse> <processinginstructioninfo> <attributes name="exitval" value="0"/> </processinginstructioninfo> <response errorCode="0"> <entity GUID="" _type_="61" providerDomainName="mycompany" providerId="1"/> </response>
</Api_DeactivateOrganizationResponse>`
)

func cvError(code int, msg string) string {
	return `<?xml version="1.0" encoding="UTF-8" standalone="no" ?>` + "\n" + fmt.Sprintf(`<App_GenericResp errorCode="%d" errorMessage="%s"/>`, code, msg)
}

func TestCommvaultSeedRequest(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{nodes: 2})
	ctx := context.Background()
	if _, err := e.store.PutOrg(ctx, state.Org{ID: "1", Name: "mycompany"}, state.Change{Actor: "test"}); err != nil {
		t.Fatal(err)
	}
	e.token(seedToken, state.Token{Name: "commvault", HomeOrg: "1", Orgs: []string{"1"}, Role: state.RoleAdmin})

	// The documentation's request as it is on the wire (the documentation's "webservice" is /webconsole/api).
	r := e.raw("POST /webconsole/api/organization/1/action/deactivate HTTP/1.1\r\n" +
		"Host: client.mydomain.com\r\n" +
		"Accept: application/xml\r\n" +
		"Authtoken: QSDK " + seedToken + "\r\n" +
		"Content-type: application/xml\r\n" +
		fmt.Sprintf("Content-Length: %d\r\n", len(seedRequestBody)) +
		"Connection: close\r\n\r\n" + seedRequestBody)
	if r.status != 200 || r.body != seedResponse {
		t.Fatalf("got %d\n%s\nwant\n%s", r.status, r.body, seedResponse)
	}
	if r.header.Get("X-Deact-Confirmed") != "2/2" || !strings.HasPrefix(r.header.Get("Content-Type"), "application/xml") {
		t.Errorf("headers = %v", r.header)
	}
	v, err := e.store.GetOrg(ctx, "1")
	if err != nil || v.Record.Disabled != state.OpBackup {
		t.Fatalf("org after deactivate = %+v %v", v, err)
	}

	// The same request as JSON, with options as booleans, numbers and strings, answered in JSON.
	body := `{"deactivateOptions":{"disableLogin":true,"disableBackup":"1","disableRestore":0}}`
	r = e.do("POST", "/webconsole/api/organization/2/action/deactivate", body,
		"Authtoken: QSDK "+bootstrapToken, "Content-Type: application/json", "Accept: application/json")
	want := `{"processinginstructioninfo":{"attributes":[{"name":"exitval","value":"0"}]},"response":{"entity":{"GUID":"","_type_":61,"providerDomainName":"2","providerId":2},"errorCode":0}}`
	if r.status != 200 || r.body != want {
		t.Fatalf("JSON: %d %s", r.status, r.body)
	}
	if v, _ := e.store.GetOrg(ctx, "2"); v.Record.Disabled != state.OpLogin|state.OpToken|state.OpBackup {
		t.Errorf("org 2 disabled = %v", v.Record.Disabled)
	}

	// GET shows the options; paths are case-insensitive; every token form works.
	r = e.do("GET", "/WebConsole/API/Organization/1", "", "Authtoken: "+seedToken)
	wantGet := `<?xml version="1.0" encoding="UTF-8" standalone="no" ?>
<Api_GetOrganizationResponse> <organizationInfo> <organization connectName="mycompany"> <shortName id="1" domainName="mycompany"/> </organization> <organizationProperties> <deactivateOptions disableLogin="0" disableBackup="1" disableRestore="0"/> </organizationProperties> </organizationInfo>
</Api_GetOrganizationResponse>`
	if r.status != 200 || r.body != wantGet {
		t.Fatalf("GET: %d %s", r.status, r.body)
	}
	r = e.do("GET", "/commandcenter/api/organization/1", "", "Authtoken: Bearer "+seedToken, "Accept: application/json")
	if want := `{"organizationInfo":{"organization":{"connectName":"mycompany","shortName":{"domainName":"mycompany","id":1}},"organizationProperties":{"deactivateOptions":{"disableBackup":true,"disableLogin":false,"disableRestore":false}}}}`; r.status != 200 || r.body != want {
		t.Fatalf("GET JSON: %d %s", r.status, r.body)
	}

	// Changing the options of a deactivated org is a deactivation too; the same options again are refused.
	r = e.do("POST", "/CommandCenter/api/organization/1/action/DEACTIVATE", `<Api_DeactivateOrganizationRequest><deactivateOptions disableLogin="1" disableBackup="1" disableRestore="1"/></Api_DeactivateOrganizationRequest>`,
		"Authtoken: QSDK "+seedToken, "Content-Type: application/xml")
	if r.status != 200 || r.body != seedResponse {
		t.Fatalf("change options: %d %s", r.status, r.body)
	}
	r = e.do("POST", "/webconsole/api/organization/1/action/deactivate", `<Api_DeactivateOrganizationRequest><deactivateOptions disableLogin="1" disableBackup="1" disableRestore="1"/></Api_DeactivateOrganizationRequest>`,
		"Authtoken: QSDK "+seedToken, "Content-Type: application/xml")
	if want := cvError(4, "org 1: already deactivated"); r.status != 409 || r.body != want {
		t.Fatalf("same options: %d %s", r.status, r.body)
	}

	// Activate, then activate again.
	r = e.do("POST", "/webconsole/api/organization/1/action/activate", "", "Authtoken: QSDK "+seedToken)
	wantAct := strings.ReplaceAll(seedResponse, "Api_DeactivateOrganizationResponse", "Api_ActivateOrganizationResponse")
	if r.status != 200 || r.body != wantAct {
		t.Fatalf("activate: %d %s", r.status, r.body)
	}
	r = e.do("POST", "/webconsole/api/organization/1/action/activate", "", "Authtoken: QSDK "+seedToken, "Accept: application/json")
	if want := `{"errorCode":4,"errorMessage":"org 1: not deactivated"}`; r.status != 409 || r.body != want {
		t.Fatalf("second activate: %d %s", r.status, r.body)
	}
	// No options at all deactivates everything Commvault can switch off.
	r = e.do("POST", "/webconsole/api/organization/1/action/deactivate", "<Api_DeactivateOrganizationRequest/>", "Authtoken: QSDK "+seedToken, "Content-Type: application/xml")
	if v, _ := e.store.GetOrg(ctx, "1"); r.status != 200 || v.Record.Disabled != state.OpsAll {
		t.Fatalf("no options: %d %s; disabled %v", r.status, r.body, v.Record.Disabled)
	}
	if msgs := e.errors.take(); len(msgs) > 0 {
		t.Errorf("error-level logs: %q", msgs)
	}
}

func TestCommvaultErrors(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	e.token(seedToken, state.Token{Name: "commvault", HomeOrg: "1", Orgs: []string{"1"}, Role: state.RoleAdmin})
	auth := "Authtoken: QSDK " + seedToken
	xmlCT := "Content-Type: application/xml"
	const path = "/webconsole/api/organization/1/action/deactivate"
	cases := []struct {
		name, method, path, body string
		headers                  []string
		status                   int
		want                     string
	}{
		{"no token", "POST", path, seedRequestBody, []string{xmlCT}, 401, cvError(5, "authentication required: send a token")},
		{"bad token", "POST", path, seedRequestBody, []string{xmlCT, "Authtoken: QSDK nope-nope-nope-nope"}, 401, cvError(5, "the token is not valid")},
		{"other org", "POST", "/webconsole/api/organization/2/action/deactivate", seedRequestBody, []string{xmlCT, auth}, 403, cvError(6, "the token may not act on org 2")},
		{"other org GET", "GET", "/webconsole/api/organization/2", "", []string{auth}, 403, cvError(6, "the token may not act on org 2")},
		{"unknown org GET", "GET", "/webconsole/api/organization/1", "", []string{auth}, 404, cvError(3, "organization 1: not found")},
		{"all options 0", "POST", path, `<Api_DeactivateOrganizationRequest><deactivateOptions disableLogin="0" disableBackup="0" disableRestore="0"/></Api_DeactivateOrganizationRequest>`,
			[]string{xmlCT, auth}, 400, cvError(2, "no deactivate option set: set disableLogin, disableBackup or disableRestore to 1 (to enable everything, activate)")},
		{"DTD", "POST", path, `<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><Api_DeactivateOrganizationRequest><deactivateOptions disableLogin="&e;"/></Api_DeactivateOrganizationRequest>`,
			[]string{xmlCT, auth}, 400, cvError(2, "XML with a document type declaration or entities is not accepted")},
		{"malformed XML", "POST", path, `<Api_DeactivateOrganizationRequest><deactivateOptions`, []string{xmlCT, auth}, 400, cvError(2, "malformed request body: XML syntax error on line 1: unexpected EOF")},
		{"wrong root", "POST", path, `<Other/>`, []string{xmlCT, auth}, 400, cvError(2, "malformed request body: expected element type &lt;Api_DeactivateOrganizationRequest&gt; but have &lt;Other&gt;")},
		{"bad option", "POST", path, `<Api_DeactivateOrganizationRequest><deactivateOptions disableLogin="yes"/></Api_DeactivateOrganizationRequest>`, []string{xmlCT, auth}, 400,
			cvError(2, "malformed request body: option value &#34;yes&#34; is not 0, 1, true or false")},
		{"malformed JSON", "POST", path, `{"deactivateOptions":`, []string{"Content-Type: application/json", auth}, 400, cvError(2, "malformed request body: JSON syntax error at byte 21")},
		{"unsupported type", "POST", path, `x`, []string{"Content-Type: text/html", auth}, 415, cvError(9, "Content-Type &#34;text/html&#34; is neither XML nor JSON")},
		{"too large", "POST", path, "<Api_DeactivateOrganizationRequest>" + strings.Repeat(" ", 70<<10) + "</Api_DeactivateOrganizationRequest>", []string{xmlCT, auth}, 413,
			cvError(7, "request body is larger than 65536 bytes")},
		{"escaped slash id", "POST", "/webconsole/api/organization/1%2F2/action/deactivate", seedRequestBody, []string{xmlCT, auth}, 400,
			cvError(2, "invalid id: organization id has a character outside [A-Za-z0-9._@:-] at byte 1")},
		{"dotdot id", "POST", "/webconsole/api/organization/../action/deactivate", seedRequestBody, []string{xmlCT, auth}, 400,
			cvError(2, "invalid id: organization id &#34;..&#34; is reserved")},
		{"NUL id", "GET", "/webconsole/api/organization/1%00", "", []string{auth}, 400,
			cvError(2, "invalid id: organization id has a character outside [A-Za-z0-9._@:-] at byte 1")},
		{"long id", "GET", "/webconsole/api/organization/" + strings.Repeat("1", 10<<10), "", []string{auth}, 400,
			cvError(2, "invalid id: organization id is longer than 200 bytes")},
		{"wrong method", "GET", path, "", []string{auth}, 405, cvError(11, "GET is not allowed here, use POST")},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := e.revision()
			r := e.do(c.method, c.path, c.body, c.headers...)
			if r.status != c.status || r.body != c.want {
				t.Errorf("got %d %s\nwant %d %s", r.status, r.body, c.status, c.want)
			}
			if after := e.revision(); after != before {
				t.Errorf("etcd revision moved %d -> %d", before, after)
			}
		})
	}
	if msgs := e.errors.take(); len(msgs) > 0 {
		t.Errorf("error-level logs: %q", msgs)
	}
}
