package admin_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/deact/deact/internal/wait"
	"github.com/deact/deact/state"
)

// TestAccountOwnerRace: writers of two orgs race to register one account, many at once, through the native
// API. The ownership check runs inside the store's transaction, so exactly one org owns the account: every
// write of that org is accepted, every write of the other is refused 403 and writes nothing, and the audit holds
// exactly the accepted writes, each for the winner, the first of them creating the record.
func TestAccountOwnerRace(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	tokens := map[string]string{
		"A": e.token("token-of-org-A-0123456", state.Token{Name: "a", HomeOrg: "A", Orgs: []string{"A"}, Role: state.RoleAdmin}),
		"B": e.token("token-of-org-B-0123456", state.Token{Name: "b", HomeOrg: "B", Orgs: []string{"B"}, Role: state.RoleAdmin}),
	}
	const perOrg = 16
	type answer struct {
		org    string
		status int
		body   string
		err    error
	}
	answers := make(chan answer, len(tokens)*perOrg)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for org, tok := range tokens {
		for range perOrg {
			wg.Go(func() {
				<-start
				req, err := http.NewRequest("PUT", e.url+"/v1/accounts/u?confirmTimeout=0", strings.NewReader(`{"orgId":"`+org+`"}`))
				if err != nil {
					answers <- answer{org: org, err: err}
					return
				}
				req.Header.Set("Authorization", "Bearer "+tok)
				a, err := wait.Send(e.http1, req)
				answers <- answer{org: org, status: a.Status, body: a.Body, err: err}
			})
		}
	}
	close(start)
	wg.Wait()
	close(answers)
	accepted := map[string]int{}
	refused := map[string]int{}
	for a := range answers {
		switch {
		case a.err != nil:
			t.Fatalf("org %s: %v", a.org, a.err)
		case a.status == http.StatusOK:
			accepted[a.org]++
		case a.status == http.StatusForbidden && strings.Contains(a.body, `"code":"permission_denied"`):
			refused[a.org]++
		default:
			t.Errorf("org %s: %d %s", a.org, a.status, a.body)
		}
	}
	if len(accepted) != 1 {
		t.Fatalf("accepted writes by org %v, want one org's only", accepted)
	}
	var winner string
	for org := range accepted {
		winner = org
	}
	if accepted[winner] != perOrg || refused[winner] != 0 {
		t.Errorf("the winner %s: %d accepted, %d refused, want all %d accepted", winner, accepted[winner], refused[winner], perOrg)
	}
	for org := range tokens {
		if org != winner && refused[org] != perOrg {
			t.Errorf("the loser %s: %d refused, want all %d", org, refused[org], perOrg)
		}
	}

	adm := bearer(bootstrapToken)
	var got state.Versioned[state.Account]
	if r := e.do("GET", "/v1/accounts/u", "", adm); r.status != http.StatusOK {
		t.Fatalf("get account: %d %s", r.status, r.body)
	} else {
		r.json(t, &got)
	}
	if got.Record.OrgID != winner {
		t.Errorf("account held by %q, the writes accepted were %s's", got.Record.OrgID, winner)
	}

	r := e.do("GET", "/v1/audit?limit=1000", "", adm)
	var audit struct{ Entries []state.AuditEntry }
	r.json(t, &audit)
	created := 0
	n := 0
	for _, en := range audit.Entries {
		if en.Key != state.AccountKey("u") {
			continue
		}
		n++
		var before, after state.Account
		if len(en.Before) == 0 {
			created++
		} else if err := json.Unmarshal(en.Before, &before); err != nil || before.OrgID != winner {
			t.Errorf("audit entry at %d: before %s", en.Revision, en.Before)
		}
		if err := json.Unmarshal(en.After, &after); err != nil || after.OrgID != winner || en.Action != "register account" {
			t.Errorf("audit entry at %d: %s after %s", en.Revision, en.Action, en.After)
		}
	}
	if n != perOrg || created != 1 {
		t.Errorf("audit: %d entries for the account (%d creating it), want %d (1)", n, created, perOrg)
	}
}
