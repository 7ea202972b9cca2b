package daemon_test

import (
	"testing"
	"time"

	"github.com/deact/deact/daemon"
)

func TestCommvaultConfigValidate(t *testing.T) {
	const u = "https://cv.example.com/webconsole/api"
	for name, tc := range map[string]struct {
		role string
		cv   daemon.CommvaultConfig
		ok   bool
	}{
		"login":                   {daemon.RoleAdmin, daemon.CommvaultConfig{URL: u, User: "u", PasswordFile: "p"}, true},
		"fixed token":             {daemon.RoleAll, daemon.CommvaultConfig{URL: u, TokenFile: "t", SyncInterval: time.Second}, true},
		"off":                     {daemon.RoleGateway, daemon.CommvaultConfig{}, true},
		"gateway":                 {daemon.RoleGateway, daemon.CommvaultConfig{URL: u, TokenFile: "t"}, false},
		"no credentials":          {daemon.RoleAll, daemon.CommvaultConfig{URL: u}, false},
		"both":                    {daemon.RoleAll, daemon.CommvaultConfig{URL: u, User: "u", PasswordFile: "p", TokenFile: "t"}, false},
		"user without a password": {daemon.RoleAll, daemon.CommvaultConfig{URL: u, User: "u"}, false},
		"flags without url":       {daemon.RoleAll, daemon.CommvaultConfig{User: "u", PasswordFile: "p"}, false},
		"tiny interval":           {daemon.RoleAll, daemon.CommvaultConfig{URL: u, TokenFile: "t", SyncInterval: time.Millisecond}, false},
		"negative concurrency":    {daemon.RoleAll, daemon.CommvaultConfig{URL: u, TokenFile: "t", Concurrency: -1}, false},
	} {
		c := daemon.Config{Role: tc.role, NodeID: "n", Commvault: tc.cv}
		if err := c.Validate(); (err == nil) != tc.ok {
			t.Errorf("%s: Validate() = %v", name, err)
		}
	}
}
