package daemon

import (
	"strings"
	"testing"
	"time"
)

func TestZitadelConfigValidate(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		role NodeRole
		z    ZitadelConfig
		want string // "" = valid
	}{
		{"off", GatewayNode, ZitadelConfig{}, ""},
		{"pat", AdminNode, ZitadelConfig{URL: "https://z", TokenFile: "pat"}, ""},
		{"key file", AllInOne, ZitadelConfig{URL: "https://z", KeyFile: "key.json", SigningKeyFile: "keys"}, ""},
		{"events only", AdminNode, ZitadelConfig{SigningKeyFile: "keys"}, ""},
		{"gateway role", GatewayNode, ZitadelConfig{URL: "https://z", TokenFile: "pat"}, "--role all or admin"},
		{"no credentials", AdminNode, ZitadelConfig{URL: "https://z"}, "one of --zitadel-token-file"},
		{"both credentials", AdminNode, ZitadelConfig{URL: "https://z", TokenFile: "pat", KeyFile: "k"}, "one of --zitadel-token-file"},
		{"token without url", AdminNode, ZitadelConfig{TokenFile: "pat"}, "need --zitadel-url"},
		{"orgs without url", AdminNode, ZitadelConfig{Orgs: []string{"1"}}, "need --zitadel-url"},
		{"bad org id", AdminNode, ZitadelConfig{URL: "https://z", TokenFile: "pat", Orgs: []string{"1/2"}}, "--zitadel-orgs"},
		{"tiny interval", AdminNode, ZitadelConfig{URL: "https://z", TokenFile: "pat", SyncInterval: time.Millisecond}, "at least 100ms"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := Config{Role: tc.role, Zitadel: tc.z}
			err := c.Validate()
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("Validate = %v, want valid", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("Validate = %v, want %q", err, tc.want)
			}
		})
	}
}
