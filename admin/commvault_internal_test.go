package admin

import (
	"testing"

	"github.com/deact/deact/state"
)

var optionCases = []struct {
	name, contentType, body string
	ops                     state.Ops
	ok                      bool
}{
	{"seed", "application/xml", `<Api_DeactivateOrganizationRequest> <deactivateOptions disableLogin="0" disableBackup="1" disableRestore="0"/>
</Api_DeactivateOrganizationRequest>`, state.OpBackup, true},
	{"xml true", "application/xml; charset=utf-8", `<Api_DeactivateOrganizationRequest><deactivateOptions disableLogin="true" disableRestore="1"/></Api_DeactivateOrganizationRequest>`, state.OpLogin | state.OpToken | state.OpRestore, true},
	{"json bools", "application/json", `{"deactivateOptions":{"disableLogin":true,"disableBackup":false}}`, state.OpLogin | state.OpToken, true},
	{"json numbers", "application/json", `{"deactivateOptions":{"disableBackup":1,"disableRestore":1}}`, state.OpBackup | state.OpRestore, true},
	{"json strings", "", `{"deactivateOptions":{"disableRestore":"1"}}`, state.OpRestore, true},
	{"empty", "", ``, state.OpsAll, true},
	{"no options", "application/xml", `<Api_DeactivateOrganizationRequest/>`, state.OpsAll, true},
	{"all zero", "application/json", `{"deactivateOptions":{"disableLogin":0,"disableBackup":"0","disableRestore":false}}`, 0, false},
	{"dtd", "application/xml", `<!DOCTYPE a><Api_DeactivateOrganizationRequest/>`, 0, false},
	{"entity", "text/xml", `<!ENTITY x "y"><Api_DeactivateOrganizationRequest/>`, 0, false},
	{"bad value", "application/json", `{"deactivateOptions":{"disableLogin":2}}`, 0, false},
	{"html", "text/html", `<p/>`, 0, false},
}

func TestParseDeactivateOptions(t *testing.T) {
	for _, c := range optionCases {
		ops, err := parseDeactivateOptions(c.contentType, []byte(c.body))
		if (err == nil) != c.ok || ops != c.ops {
			t.Errorf("%s: got %v %v, want %v ok=%v", c.name, ops, err, c.ops, c.ok)
		}
	}
}

// FuzzParseDeactivateOptions: any body gives either ops or a classified client error, never a panic or an
// internal error.
func FuzzParseDeactivateOptions(f *testing.F) {
	for _, c := range optionCases {
		f.Add(c.contentType, []byte(c.body))
	}
	f.Fuzz(func(t *testing.T, contentType string, body []byte) {
		ops, err := parseDeactivateOptions(contentType, body)
		if err != nil {
			if e := classify(err); !e.clientFault() {
				t.Fatalf("server fault for a client's body: %v", err)
			}
			return
		}
		if ops == 0 || ops&^state.OpsAll != 0 {
			t.Fatalf("ops %v", ops)
		}
	})
}

func TestTokenHeaders(t *testing.T) {
	for _, c := range []struct{ authtoken, authorization, want string }{
		{"QSDK abc", "", "abc"},
		{"qsdk   abc ", "", "abc"},
		{"abc", "", "abc"},
		{"Bearer abc", "", "abc"},
		{"", "Bearer xyz", "xyz"},
		{"", "Basic xyz", ""},
		{"", "", ""},
	} {
		h := map[string][]string{}
		if c.authtoken != "" {
			h["Authtoken"] = []string{c.authtoken}
		}
		if c.authorization != "" {
			h["Authorization"] = []string{c.authorization}
		}
		if got := commvaultToken(h); got != c.want {
			t.Errorf("%+v: got %q", c, got)
		}
	}
}
