package bench

import (
	"testing"
	"time"
)

// TestModelExpect: the expected answer follows the deactivated orgs and apps, is ambiguous while a write is in
// flight and for requests sent before its confirmation, and certain again afterwards.
func TestModelExpect(t *testing.T) {
	m := newModel("t", 10, 10, 0.3, 7)
	offOrgs, offApps := m.counts()
	if offOrgs != 3 || offApps != 3 {
		t.Fatalf("deactivated %d orgs and %d apps, want 3 and 3", offOrgs, offApps)
	}
	pool := buildPool(m, Mix{1, 1, 1, 1, 1, 1}, 500, 1)
	now := time.Now()
	for _, tpl := range pool {
		deny, amb := m.expect(tpl, now)
		want := m.orgs[tpl.org].state.Load().deactivated ||
			(tpl.app >= 0 && tpl.kind.appsApply() && m.apps[tpl.app].state.Load().deactivated)
		if amb || deny != want {
			t.Fatalf("%s org %d app %d: expect deny=%v ambiguous=%v, want deny=%v", tpl.kind, tpl.org, tpl.app, deny, amb, want)
		}
		if tpl.app >= 0 && m.appOrg(tpl.app) != tpl.org {
			t.Fatalf("app %d is in org %d, template says %d", tpl.app, m.appOrg(tpl.app), tpl.org)
		}
	}

	// An active org with no app: login request.
	org := -1
	for i := range m.orgs {
		if !m.orgs[i].state.Load().deactivated {
			org = i
			break
		}
	}
	login := &template{kind: kindLogin, org: org, app: -1}
	sentBefore := time.Now()
	m.begin(org)
	if _, amb := m.expect(login, time.Now()); !amb {
		t.Fatal("a write in flight must make the answer ambiguous")
	}
	confirmed := time.Now().Add(time.Millisecond)
	m.commit(org, true, confirmed)
	if _, amb := m.expect(login, sentBefore); !amb {
		t.Fatal("a request sent before the confirmation may see either state")
	}
	if deny, amb := m.expect(login, confirmed.Add(time.Nanosecond)); amb || !deny {
		t.Fatalf("after the confirmation: deny=%v ambiguous=%v, want a certain deny", deny, amb)
	}
}

// TestParseMix covers the mix syntax.
func TestParseMix(t *testing.T) {
	m, err := ParseMix(DefaultMix)
	if err != nil || m.String() != DefaultMix {
		t.Fatalf("ParseMix(%q) = %v, %v", DefaultMix, m, err)
	}
	for _, bad := range []string{"", "token", "token=x", "nope=1", "token=0", "token=-1"} {
		if _, err := ParseMix(bad); err == nil {
			t.Errorf("ParseMix(%q) accepted", bad)
		}
	}
}

// TestLoopbackOnly: load goes to loopback addresses only.
func TestLoopbackOnly(t *testing.T) {
	for addr, ok := range map[string]bool{"127.0.0.1:1": true, "[::1]:1": true, "localhost:1": true, "127.8.9.1:1": true,
		"10.0.0.1:1": false, "192.168.1.1:1": false, "example.com:1": false, "8.8.8.8:53": false, "nonsense": false} {
		if err := checkLoopback(addr); (err == nil) != ok {
			t.Errorf("checkLoopback(%q) = %v", addr, err)
		}
	}
}

// TestWritePlotsOfARunCutShort: a run that ended before any sample (every window empty, or only zero latencies)
// still gets its plots; a log axis over no positive value used to panic inside gonum.
func TestWritePlotsOfARunCutShort(t *testing.T) {
	for _, tc := range []struct {
		name string
		tl   []Window
	}{
		{"empty windows", []Window{{AtS: 0}, {AtS: 1}}},
		{"zero latencies", []Window{{AtS: 0, Count: 3}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := &Report{Admin: &AdminReport{Concurrency: 1, Timeline: tc.tl}}
			if err := r.WritePlots(t.TempDir()); err != nil {
				t.Fatal(err)
			}
			if len(r.Plots) != 1 {
				t.Fatalf("plots = %v, want the admin one", r.Plots)
			}
		})
	}
}
