package commvault

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/deact/deact/source"
	"github.com/deact/deact/source/commvault/commvaulttest"
	"github.com/deact/deact/state"
	"github.com/deact/deact/state/etcdtest"
	"go.uber.org/goleak"
)

// TestMain fails the package if a test leaves a goroutine of ours running.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, etcdtest.LeakOptions()...)
}

// env is a fake Commvault, a real etcd with a store, and a poller reading the fake.
type env struct {
	t     *testing.T
	fake  *commvaulttest.Server
	store *state.Store
	cfg   ClientConfig
	poll  *Poller
}

func newEnv(t *testing.T, xml bool, mod func(*ClientConfig, *PollerConfig)) *env {
	t.Helper()
	e := &env{t: t, fake: commvaulttest.New()}
	t.Cleanup(e.fake.Close)
	srv := etcdtest.Start(t)
	e.store = state.NewStore(etcdtest.Client(t, srv.Endpoints()))
	e.cfg = ClientConfig{URL: e.fake.URL, User: e.fake.User, Password: e.fake.Password, XML: xml, Timeout: 2 * time.Second}
	pc := PollerConfig{Store: e.store, Interval: time.Minute, Logger: slog.New(slog.DiscardHandler)}
	if mod != nil {
		mod(&e.cfg, &pc)
	}
	c, err := NewClient(e.cfg)
	if err != nil {
		t.Fatal(err)
	}
	pc.Client = c
	if e.poll, err = NewPoller(pc); err != nil {
		t.Fatal(err)
	}
	return e
}

func (e *env) round() RoundStats {
	e.t.Helper()
	st, err := e.poll.Round(context.Background())
	if err != nil {
		e.t.Fatalf("round: %v", err)
	}
	return st
}

// held reads the mirrored organizations.
func (e *env) held() map[string]state.MirrorRecord {
	e.t.Helper()
	out := map[string]state.MirrorRecord{}
	if err := e.store.ListMirror(context.Background(), SourceName, state.MirrorOrg, func(r state.MirrorRecord, _ int64) error {
		out[r.ID] = r
		return nil
	}); err != nil {
		e.t.Fatal(err)
	}
	return out
}

var formats = []struct {
	name string
	xml  bool
}{{"json", false}, {"xml", true}}

// TestRoundMirrorsDeactivateOptionsAndDomains: deactivateOptions become the org's disabled ops, every domain name
// the API gives becomes an org domain, only what changed is written, and a vanished org becomes a tombstone.
func TestRoundMirrorsDeactivateOptionsAndDomains(t *testing.T) {
	for _, f := range formats {
		t.Run(f.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, f.xml, nil)
			acme := e.fake.AddOrg("Acme", "acme", "acme.example", "Acme-Mail.Example.")
			e.fake.Update(acme, func(o *commvaulttest.Org) { o.PrimaryDomain = "backup.acme.example" })
			beta := e.fake.AddOrg("Beta", "beta")
			gamma := e.fake.AddOrg("Gamma", "gamma")
			e.fake.Deactivate(beta, false, true, false) // backup only
			e.fake.Update(beta, func(o *commvaulttest.Org) { o.OptionsInProperties = true })
			e.fake.Deactivate(gamma, true, true, true)

			st := e.round()
			if st.Listed != 3 || st.Written != 3 || st.Failed != 0 || st.Records != 3 {
				t.Fatalf("first round: %+v", st)
			}
			h := e.held()
			if got := h[acme]; got.Disabled != 0 || !slices.Equal(got.Domains, []string{"acme", "acme-mail.example", "acme.example", "backup.acme.example"}) || got.Name != "Acme" {
				t.Errorf("acme: %+v", got)
			}
			if got := h[beta].Disabled; got != state.OpBackup {
				t.Errorf("beta disabled %v, want backup only", got)
			}
			if got := h[gamma].Disabled; got != state.OpsAll {
				t.Errorf("gamma disabled %v", got)
			}

			// Nothing changed: nothing is written.
			if st := e.round(); st.Written != 0 || st.Unchanged != 3 {
				t.Fatalf("unchanged round: %+v", st)
			}
			// Reactivation, and a restore-only deactivation.
			e.fake.Activate(beta)
			e.fake.Deactivate(acme, false, false, true)
			if st := e.round(); st.Written != 2 || st.Unchanged != 1 {
				t.Fatalf("round after changes: %+v", st)
			}
			h2 := e.held()
			if h2[beta].Disabled != 0 || h2[acme].Disabled != state.OpRestore || h2[beta].Sequence <= h[beta].Sequence {
				t.Errorf("after changes: beta %+v acme %+v", h2[beta], h2[acme])
			}
			// Gone from Commvault: a denying tombstone that keeps the domains.
			e.fake.Remove(acme)
			if st := e.round(); st.Removed != 1 || st.Tombstones != 1 {
				t.Fatalf("removal round: %+v", st)
			}
			if got := e.held()[acme]; !got.Removed || !got.Denies() || len(got.Domains) != 4 {
				t.Errorf("tombstone: %+v", got)
			}
		})
	}
}

// TestRoundRejectsUnknownFlagValues: an org whose deactivateOptions carry a value deact does not know keeps its
// last mirrored state, and the round reports it; the other orgs are written.
func TestRoundRejectsUnknownFlagValues(t *testing.T) {
	cases := []struct {
		name   string
		xml    bool
		raw    string
		accept bool
		want   state.Ops // disabled ops when accepted
	}{
		{"json true", false, `true`, true, state.OpBackup},
		{"json 1", false, `1`, true, state.OpBackup},
		{"json string 0", false, `"0"`, true, 0},
		{"json string false", false, `"false"`, true, 0},
		{"json null", false, `null`, true, 0},
		{"json yes", false, `"yes"`, false, 0},
		{"json 2", false, `2`, false, 0},
		{"json object", false, `{}`, false, 0},
		{"json empty array", false, `[]`, false, 0},
		{"xml 1", true, `1`, true, state.OpBackup},
		{"xml true", true, `true`, true, state.OpBackup},
		{"xml 0", true, `0`, true, 0},
		{"xml on", true, `on`, false, 0},
		{"xml -1", true, `-1`, false, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, tc.xml, nil)
			odd := e.fake.AddOrg("Odd", "odd")
			other := e.fake.AddOrg("Other", "other")
			e.fake.Deactivate(odd, true, false, false) // mirrored first as login-disabled
			e.round()
			e.fake.Update(odd, func(o *commvaulttest.Org) { o.Login, o.RawBackup = false, tc.raw })
			e.fake.Deactivate(other, false, false, true)
			st, err := e.poll.Round(context.Background())
			h := e.held()
			if h[other].Disabled != state.OpRestore {
				t.Errorf("the other org was not written: %+v", h[other])
			}
			if tc.accept {
				if err != nil || h[odd].Disabled != tc.want {
					t.Fatalf("accepted value: err %v, disabled %v, want %v", err, h[odd].Disabled, tc.want)
				}
				return
			}
			var pe *PartialError
			if !errors.As(err, &pe) || pe.Failed != 1 || st.Failed != 1 || !strings.Contains(err.Error(), "disableBackup") {
				t.Fatalf("refused value: err %v, stats %+v", err, st)
			}
			if h[odd].Disabled != state.OpLogin|state.OpToken || h[odd].Removed {
				t.Errorf("the odd org did not keep its last state: %+v", h[odd])
			}
			if ErrorClass(err) != "bad_response" {
				t.Errorf("class %q", ErrorClass(err))
			}
		})
	}
}

// TestLoginTokenRenewal: the client logs in once, reuses the token, logs in again before the token is as old as
// RenewAfter, and after Commvault expired it (a 401: one new login, the request retried).
func TestLoginTokenRenewal(t *testing.T) {
	for _, f := range formats {
		t.Run(f.name, func(t *testing.T) {
			t.Parallel()
			now := time.Now()
			clock := func() time.Time { return now }
			e := newEnv(t, f.xml, func(c *ClientConfig, _ *PollerConfig) { c.Now, c.RenewAfter = clock, 10*time.Minute })
			e.fake.Populate(20)
			e.round()
			e.round()
			if n := e.fake.Logins(); n != 1 {
				t.Fatalf("logins after two rounds: %d", n)
			}
			now = now.Add(11 * time.Minute) // older than RenewAfter: renewed before use
			before := e.fake.Requests()
			e.round()
			if n := e.fake.Logins(); n != 2 {
				t.Fatalf("logins after renewal: %d", n)
			}
			if got := e.fake.Requests() - before; got != 1+1+20 { // login, list, details: no 401 on the way
				t.Errorf("requests in the renewing round: %d", got)
			}
			e.fake.ExpireTokens() // Commvault forgot every token: 401s, one login shared by all workers
			e.round()
			if n := e.fake.Logins(); n != 3 {
				t.Fatalf("logins after expiry: %d", n)
			}
			// Tokens that expire on their own while the round runs (a short lifetime on Commvault's side).
			e.fake.SetTokenTTL(50 * time.Millisecond)
			e.fake.ExpireTokens()
			e.fake.Latency(10 * time.Millisecond)
			if st := e.round(); st.Failed != 0 || st.Listed != 20 {
				t.Fatalf("round with short-lived tokens: %+v", st)
			}
		})
	}
}

// TestFixedTokenFile: a fixed token works; after Commvault expired it the file is read again once.
func TestFixedTokenFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	file := filepath.Join(dir, "token")
	fake := commvaulttest.New()
	t.Cleanup(fake.Close)
	// The file holds the token without its QSDK prefix; the client adds it.
	if err := os.WriteFile(file, []byte(strings.TrimPrefix(fake.Token(), "QSDK ")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tok, err := readSecret(file)
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, false, func(c *ClientConfig, _ *PollerConfig) {
		c.URL, c.User, c.Password, c.Token, c.TokenFile = fake.URL, "", "", tok, file
	})
	e.fake = fake
	fake.AddOrg("A", "a")
	e.round()
	fake.ExpireTokens()
	_, err = e.poll.Round(context.Background())
	var ae *APIError
	if !errors.As(err, &ae) || ae.Status != http.StatusUnauthorized || ErrorClass(err) != "unauthorized" {
		t.Fatalf("expired fixed token: %v", err)
	}
	if err := os.WriteFile(file, []byte(fake.Token()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if st := e.round(); st.Listed != 1 {
		t.Fatalf("after the file was replaced: %+v", st)
	}
	if fake.Logins() != 0 {
		t.Errorf("a fixed token logged in")
	}
}

// TestFailuresKeepMirroredState: wrong credentials, a 500 and a timeout from Commvault fail the round, write
// nothing, and show in the status; the next good round goes on.
func TestFailuresKeepMirroredState(t *testing.T) {
	cases := []struct {
		name   string
		inject func(*commvaulttest.Server)
		undo   func(*commvaulttest.Server)
		class  string
		msg    string
	}{
		{"wrong credentials", func(s *commvaulttest.Server) { s.Password = "changed"; s.ExpireTokens() },
			func(s *commvaulttest.Server) { s.Password = "secret" }, "unauthorized", "Invalid Username or Password"},
		{"500", func(s *commvaulttest.Server) { s.Fail(500) }, func(s *commvaulttest.Server) { s.Fail(0) }, "bad_response", "HTTP 500"},
		{"timeout", func(s *commvaulttest.Server) { s.Delay(5 * time.Second) }, func(s *commvaulttest.Server) { s.Delay(0) }, "unreachable", "unreachable"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, false, func(c *ClientConfig, _ *PollerConfig) { c.Timeout = 300 * time.Millisecond })
			status := source.NewStatus(source.StatusConfig{Store: e.store, Source: SourceName, Kind: "commvault", NodeID: "n"})
			ids := e.fake.Populate(12)
			e.fake.Deactivate(ids[0], false, true, false)
			st := e.round()
			Report(status, st, nil)
			before := e.held()

			tc.inject(e.fake)
			e.fake.Remove(ids[1]) // would be a tombstone, were the round to succeed
			e.fake.Activate(ids[0])
			st, err := e.poll.Round(context.Background())
			Report(status, st, err)
			if err == nil || st.Written != 0 {
				t.Fatalf("round under %s: err %v, stats %+v", tc.name, err, st)
			}
			if ErrorClass(err) != tc.class {
				t.Errorf("class %q, want %q (%v)", ErrorClass(err), tc.class, err)
			}
			after := e.held()
			for id, r := range before {
				if !sameOrg(r, after[id]) || r.Sequence != after[id].Sequence {
					t.Errorf("org %s changed under a failure: %+v → %+v", id, r, after[id])
				}
			}
			s := status.Get()
			if !strings.Contains(s.LastReconcileError, tc.msg) || s.ReconcileErrors != 1 || s.LastError == "" || s.Records != 12 {
				t.Errorf("status: %+v", s)
			}
			for _, secret := range []string{"secret", "changed", "QSDK"} {
				if strings.Contains(s.LastError, secret) {
					t.Errorf("the status leaks %q: %s", secret, s.LastError)
				}
			}

			tc.undo(e.fake)
			if st := e.round(); st.Written != 2 || st.Removed != 1 {
				t.Fatalf("round after recovery: %+v", st)
			}
		})
	}
}

// TestSlowDetails: one organization whose details time out keeps its last state while the others are written;
// details that all time out (Commvault hung after the listing) fail the round without waiting for each one.
func TestSlowDetails(t *testing.T) {
	t.Parallel()
	e := newEnv(t, false, func(c *ClientConfig, _ *PollerConfig) { c.Timeout = 200 * time.Millisecond })
	ids := e.fake.Populate(40)
	e.fake.Deactivate(ids[3], false, true, false)
	e.round()
	e.fake.Update(ids[3], func(o *commvaulttest.Org) { o.Slow, o.Backup = 5*time.Second, false })
	e.fake.Deactivate(ids[4], true, false, false)
	st, err := e.poll.Round(context.Background())
	var pe *PartialError
	if !errors.As(err, &pe) || st.Failed != 1 || st.Written != 1 {
		t.Fatalf("one slow org: err %v, stats %+v", err, st)
	}
	if h := e.held(); h[ids[3]].Disabled != state.OpBackup || h[ids[4]].Disabled != state.OpLogin|state.OpToken {
		t.Errorf("held: slow %+v, other %+v", h[ids[3]], h[ids[4]])
	}
	e.fake.Latency(5 * time.Second)
	before := e.fake.DetailRequests()
	st, err = e.poll.Round(context.Background())
	if err == nil || errors.As(err, &pe) || ErrorClass(err) != "unreachable" || st.Written != 0 {
		t.Fatalf("every detail hangs: err %v, stats %+v", err, st)
	}
	if n := e.fake.DetailRequests() - before; n >= 40 {
		t.Errorf("the hung round asked for all %d details: it did not stop once Commvault stopped answering", n)
	}
}

// TestTenThousandOrgsWithinOneInterval: one round over 10⁴ organizations ends within the default interval and
// never has more detail requests in flight than the configured concurrency (the fake counts them).
func TestTenThousandOrgsWithinOneInterval(t *testing.T) {
	t.Parallel()
	const n, conc = 10_000, 8
	e := newEnv(t, false, func(_ *ClientConfig, p *PollerConfig) { p.Concurrency = conc })
	ids := e.fake.Populate(n)
	e.fake.Latency(time.Millisecond) // so that requests overlap and the bound is exercised
	first := e.round()
	if st := first; st.Listed != n || st.Written != n || st.Failed != 0 {
		t.Fatalf("first round: %+v", st)
	}
	if got := e.fake.MaxInFlight(); got > conc || got < 2 {
		t.Errorf("at most %d detail requests at once were seen, want ≤ %d (and concurrent)", got, conc)
	}
	if first.Duration >= e.poll.cfg.Interval {
		t.Errorf("a round over %d organizations took %v, longer than the interval %v", n, first.Duration, e.poll.cfg.Interval)
	}
	e.fake.ResetMaxInFlight()
	e.fake.Deactivate(ids[n/2], false, true, false)
	st := e.round()
	if st.Written != 1 || st.Unchanged != n-1 || e.fake.MaxInFlight() > conc {
		t.Fatalf("second round: %+v, max in flight %d", st, e.fake.MaxInFlight())
	}
	t.Logf("10⁴ organizations: first round %v, second %v", first.Duration, st.Duration)
}

// TestSlowOlderRoundNeverOverwrites: a round that started earlier and writes later (an old leader's, slowed
// down) carries the smaller sequence: where a newer round wrote, it changes nothing.
func TestSlowOlderRoundNeverOverwrites(t *testing.T) {
	t.Parallel()
	e := newEnv(t, false, nil)
	org := e.fake.AddOrg("A", "a")
	e.round() // mirrored active
	slow, err := NewPoller(e.poll.cfg)
	if err != nil {
		t.Fatal(err)
	}
	e.fake.Deactivate(org, true, false, false)
	release := e.fake.Stall()
	t.Cleanup(release)
	type result struct {
		st  RoundStats
		err error
	}
	done := make(chan result, 1)
	seen := e.fake.DetailRequests()
	go func() { st, err := slow.Round(context.Background()); done <- result{st, err} }()
	for e.fake.DetailRequests() == seen { // the slow round has read "login disabled"
		time.Sleep(time.Millisecond)
	}
	e.fake.Deactivate(org, false, true, false)
	newer := e.round() // reads "backup disabled" and writes it first
	release()
	r := <-done
	if r.err != nil {
		t.Fatal(r.err)
	}
	if r.st.Sequence >= newer.Sequence || r.st.Stale != 1 || r.st.Written != 0 {
		t.Fatalf("slow round %+v, newer round %+v", r.st, newer)
	}
	if got := e.held()[org]; got.Disabled != state.OpBackup || got.Sequence != newer.Sequence {
		t.Fatalf("held %+v, want the newer round's", got)
	}
}

// TestRunReportsEveryRound: Run polls on its interval and reports rounds, their lag and errors.
func TestRunReportsEveryRound(t *testing.T) {
	t.Parallel()
	reports := make(chan error, 100)
	e := newEnv(t, true, func(_ *ClientConfig, p *PollerConfig) {
		p.Interval = 100 * time.Millisecond
		p.Report = func(_ RoundStats, err error) { reports <- err }
	})
	e.fake.AddOrg("A", "a")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.poll.Run(ctx) }()
	for range 3 {
		if err := <-reports; err != nil {
			t.Fatal(err)
		}
	}
	e.fake.Fail(http.StatusServiceUnavailable)
	for err := range reports {
		if err != nil {
			break
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestNewClientRefusesBadConfig(t *testing.T) {
	cases := []struct {
		name string
		cfg  ClientConfig
	}{
		{"no credentials", ClientConfig{URL: "https://cv.example/webconsole/api"}},
		{"both", ClientConfig{URL: "https://cv.example/api", User: "u", Password: "p", Token: "QSDK x"}},
		{"user without password", ClientConfig{URL: "https://cv.example/api", User: "u"}},
		{"credentials in url", ClientConfig{URL: "https://u:p@cv.example/api", Token: "t"}},
		{"not http", ClientConfig{URL: "ftp://cv.example/api", Token: "t"}},
		{"token with a line break", ClientConfig{URL: "https://cv.example/api", Token: "QSDK a\nb"}},
	}
	for _, tc := range cases {
		if _, err := NewClient(tc.cfg); err == nil {
			t.Errorf("%s: accepted", tc.name)
		}
	}
}
