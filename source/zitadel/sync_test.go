package zitadel

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/deact/deact/internal/wait"
	"github.com/deact/deact/source"
	"github.com/deact/deact/source/zitadel/zitadeltest"
	"github.com/deact/deact/state"
	"github.com/deact/deact/state/etcdtest"
	"go.uber.org/goleak"
)

// TestMain fails the package if a test leaves a goroutine of ours running.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, etcdtest.LeakOptions()...)
}

const testKey = "signing-key-1"

// env is a fake ZITADEL, a real etcd with a store, a reconciler reading the fake and a webhook writing the store.
type env struct {
	t     *testing.T
	fake  *zitadeltest.Server
	store *state.Store
	rec   *Reconciler
	hook  *httptest.Server
	now   time.Time
}

func newEnv(t *testing.T, mod func(*ReconcilerConfig)) *env {
	t.Helper()
	e := &env{t: t, fake: zitadeltest.New()}
	t.Cleanup(e.fake.Close)
	srv := etcdtest.Start(t)
	e.store = state.NewStore(etcdtest.Client(t, srv.Endpoints()))
	c, err := NewClient(ClientConfig{URL: e.fake.URL, Token: e.fake.Token, PageSize: 7})
	if err != nil {
		t.Fatal(err)
	}
	cfg := ReconcilerConfig{Client: c, Store: e.store, RemoveGrace: time.Nanosecond, Logger: slog.New(slog.DiscardHandler)}
	if mod != nil {
		mod(&cfg)
	}
	if e.rec, err = NewReconciler(cfg); err != nil {
		t.Fatal(err)
	}
	v, err := NewVerifier([]string{testKey}, nil)
	if err != nil {
		t.Fatal(err)
	}
	hook, err := NewWebhook(WebhookConfig{Store: e.store, Verifier: v, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	e.hook = httptest.NewServer(hook)
	t.Cleanup(e.hook.Close)
	return e
}

func (e *env) reconcile() SyncStats {
	e.t.Helper()
	st, err := e.rec.Reconcile(context.Background())
	if err != nil {
		e.t.Fatalf("reconcile: %v", err)
	}
	return st
}

// deliver posts an event as ZITADEL would, signed now with testKey, and returns the status and body.
func (e *env) deliver(ev zitadeltest.Event) (int, string) {
	e.t.Helper()
	return e.post(ev.Body(), zitadeltest.Sign(time.Now(), ev.Body(), testKey))
}

func (e *env) post(body []byte, sig string) (int, string) {
	e.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, e.hook.URL+WebhookPath, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if sig != "" {
		req.Header.Set(SignatureHeader, sig)
	}
	a := wait.Response(e.t, http.DefaultClient, req)
	return a.Status, a.Body
}

// mirror returns the mirrored records by kind/id (apps by project/app) and the highest ModRevision among them.
func (e *env) mirror() (map[string]state.MirrorRecord, int64) {
	e.t.Helper()
	out := map[string]state.MirrorRecord{}
	var maxRev int64
	err := e.store.ListMirror(context.Background(), SourceName, 0, func(r state.MirrorRecord, rev int64) error {
		id := r.ID
		if r.Kind == state.MirrorApp {
			id = r.ProjectID + "/" + r.ID
		}
		out[r.Kind.String()+"/"+id] = r
		maxRev = max(maxRev, rev)
		return nil
	})
	if err != nil {
		e.t.Fatal(err)
	}
	return out, maxRev
}

func (e *env) record(kind state.MirrorKind, id string) state.MirrorRecord {
	e.t.Helper()
	m, _ := e.mirror()
	r, ok := m[kind.String()+"/"+id]
	if !ok {
		e.t.Fatalf("no mirrored %s %s", kind, id)
	}
	return r
}

func TestReconcileMirrorsAndNeverRewritesUnchanged(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	orgA, _ := e.fake.AddOrg("A", "a.example", "Login.A.example")
	orgB, _ := e.fake.AddOrg("B")
	p1, _ := e.fake.AddProject(orgA, "shop")
	web, webClient, _ := e.fake.AddApp(p1, "web", zitadeltest.OIDC)
	api, apiClient, _ := e.fake.AddApp(p1, "api", zitadeltest.API)
	saml, _, _ := e.fake.AddApp(p1, "saml", zitadeltest.SAML)
	for i := range 20 { // more than a page of 7
		e.fake.AddApp(p1, "bulk-"+string(rune('a'+i)), zitadeltest.OIDC)
	}
	p2, _ := e.fake.AddProject(orgB, "crm")
	e.fake.SetOrgState(orgB, zitadeltest.Inactive)
	e.fake.SetProjectState(p2, zitadeltest.Inactive)
	e.fake.SetAppState(api, zitadeltest.Inactive)

	st := e.reconcile()
	if st.Orgs != 2 || st.Projects != 2 || st.Apps != 23 || st.Written != 27 {
		t.Fatalf("first sync: %+v", st)
	}
	a := e.record(state.MirrorOrg, orgA)
	if a.Disabled != 0 || strings.Join(a.Domains, ",") != "a.example,login.a.example" || a.Name != "A" {
		t.Errorf("org A = %+v", a)
	}
	if b := e.record(state.MirrorOrg, orgB); b.Disabled != state.OpLogin|state.OpToken {
		t.Errorf("org B = %+v, want login and token disabled", b)
	}
	if p := e.record(state.MirrorProject, p2); !p.Deactivated || p.OrgID != orgB {
		t.Errorf("project 2 = %+v", p)
	}
	if w := e.record(state.MirrorApp, p1+"/"+web); w.Deactivated || strings.Join(w.ClientIDs, ",") != webClient || w.OrgID != orgA || w.Sequence == 0 {
		t.Errorf("web app = %+v", w)
	}
	if x := e.record(state.MirrorApp, p1+"/"+api); !x.Deactivated || strings.Join(x.ClientIDs, ",") != apiClient {
		t.Errorf("api app = %+v", x)
	}
	if s := e.record(state.MirrorApp, p1+"/"+saml); len(s.ClientIDs) != 0 {
		t.Errorf("saml app = %+v", s)
	}

	_, rev := e.mirror()
	st = e.reconcile()
	if st.Written != 0 || st.Unchanged != 27 {
		t.Fatalf("second sync of an unchanged ZITADEL: %+v", st)
	}
	if _, rev2 := e.mirror(); rev2 != rev {
		t.Errorf("unchanged sync rewrote records: revision %d → %d", rev, rev2)
	}
}

func TestReconcileRepairsMissedEvents(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	org, _ := e.fake.AddOrg("A", "a.example")
	keep, _ := e.fake.AddOrg("B")
	e.fake.AddOrg("C")
	p, _ := e.fake.AddProject(org, "shop")
	app, _, _ := e.fake.AddApp(p, "web", zitadeltest.OIDC)
	gone, goneClient, _ := e.fake.AddApp(p, "old", zitadeltest.OIDC)
	e.reconcile()

	// Events that are never delivered.
	e.fake.SetOrgState(org, zitadeltest.Inactive)
	e.fake.SetAppState(app, zitadeltest.Inactive)
	e.fake.RemoveApp(gone)
	e.fake.AddDomain(keep, "b.example")
	st := e.reconcile()
	if st.Written != 4 || st.Removed != 1 {
		t.Fatalf("repair sync: %+v", st)
	}
	if o := e.record(state.MirrorOrg, org); o.Disabled != state.OpLogin|state.OpToken {
		t.Errorf("org = %+v", o)
	}
	if a := e.record(state.MirrorApp, p+"/"+app); !a.Deactivated {
		t.Errorf("app = %+v", a)
	}
	if g := e.record(state.MirrorApp, p+"/"+gone); !g.Removed || g.RemovedAt.IsZero() || strings.Join(g.ClientIDs, ",") != goneClient {
		t.Errorf("removed app = %+v, want a tombstone that keeps its client id", g)
	}
	if b := e.record(state.MirrorOrg, keep); strings.Join(b.Domains, ",") != "b.example" {
		t.Errorf("org B = %+v, want the new domain", b)
	}
	// The tombstone stays a tombstone: a later listing without the app changes nothing.
	if st := e.reconcile(); st.Written != 0 {
		t.Errorf("third sync: %+v", st)
	}
}

func TestReconcileRefusesAMassRemovalAndFailures(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	var orgs []string
	for i := range 12 {
		id, _ := e.fake.AddOrg("org" + string(rune('a'+i)))
		orgs = append(orgs, id)
	}
	e.reconcile()
	_, rev := e.mirror()
	for _, tc := range []struct {
		name  string
		setup func()
		undo  func()
		want  string
	}{
		{"401", func() { e.fake.Fail(401) }, func() { e.fake.Fail(0) }, "HTTP 401"},
		{"403", func() { e.fake.Fail(403) }, func() { e.fake.Fail(0) }, "lacks a role"},
		{"503", func() { e.fake.Fail(503) }, func() { e.fake.Fail(0) }, "HTTP 503"},
		{"403 on one org's projects", func() { e.fake.Forbid(orgs[2]) }, func() { e.fake.Forbid("") }, "HTTP 403"},
	} {
		tc.setup()
		_, err := e.rec.Reconcile(context.Background())
		tc.undo()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want %q", tc.name, err, tc.want)
		}
		if _, rev2 := e.mirror(); rev2 != rev {
			t.Errorf("%s: a failed sync wrote", tc.name)
		}
	}
	for _, id := range orgs[:7] {
		e.fake.RemoveOrg(id)
	}
	_, err := e.rec.Reconcile(context.Background())
	if !errors.Is(err, source.ErrSuspiciousListing) {
		t.Fatalf("7 of 12 orgs vanishing: err = %v", err)
	}
	if _, rev2 := e.mirror(); rev2 != rev {
		t.Error("a refused sync wrote")
	}
	// ZITADEL unreachable.
	e.fake.Close()
	if _, err := e.rec.Reconcile(context.Background()); err == nil || !strings.Contains(err.Error(), "unreachable") {
		t.Errorf("closed server: err = %v", err)
	}
}

func TestReconcileOrgsFilter(t *testing.T) {
	t.Parallel()
	var only string
	e := newEnv(t, func(c *ReconcilerConfig) { c.Orgs = []string{"000"} }) // replaced below
	only, _ = e.fake.AddOrg("followed", "f.example")
	other, _ := e.fake.AddOrg("other")
	e.fake.AddProject(only, "p")
	e.rec.cfg.Orgs = []string{only}
	st := e.reconcile()
	if st.Orgs != 1 || st.Projects != 1 {
		t.Fatalf("sync: %+v", st)
	}
	if m, _ := e.mirror(); len(m) != 2 {
		t.Errorf("mirror holds %d records, want the org and its project", len(m))
	}
	if m, _ := e.mirror(); m["org/"+other].ID != "" {
		t.Error("an org outside --zitadel-orgs was mirrored")
	}
	// The only followed org vanishing looks like lost permissions: refused, nothing removed.
	e.fake.RemoveOrg(only)
	if _, err := e.rec.Reconcile(context.Background()); !errors.Is(err, source.ErrSuspiciousListing) {
		t.Errorf("the only org vanishing: err = %v", err)
	}
	if m, _ := e.mirror(); m["org/"+only].Removed {
		t.Error("a refused listing removed the org")
	}
}

func TestWebhookAppliesEventsInAnyOrder(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	org, _ := e.fake.AddOrg("A", "a.example")
	p, _ := e.fake.AddProject(org, "shop")
	app, client, _ := e.fake.AddApp(p, "web", zitadeltest.OIDC)
	e.reconcile()

	deact := e.fake.SetOrgState(org, zitadeltest.Inactive)
	if code, body := e.deliver(deact); code != 200 || !strings.Contains(body, `"applied"`) {
		t.Fatalf("deactivation: %d %s", code, body)
	}
	o := e.record(state.MirrorOrg, org)
	if o.Disabled != state.OpLogin|state.OpToken || strings.Join(o.Domains, ",") != "a.example" || o.Sequence != deact.Sequence {
		t.Fatalf("org after the event = %+v (domains must survive a partial event)", o)
	}
	// A replay changes nothing.
	_, rev := e.mirror()
	if code, body := e.deliver(deact); code != 200 || !strings.Contains(body, `"unchanged"`) {
		t.Errorf("replay: %d %s", code, body)
	}
	// Reactivation, then the deactivation again (late), then a listing: ZITADEL's state is active.
	react := e.fake.SetOrgState(org, zitadeltest.Active)
	if code, _ := e.deliver(react); code != 200 {
		t.Fatal(code)
	}
	if code, body := e.deliver(deact); code != 200 || !strings.Contains(body, `"stale"`) {
		t.Errorf("late deactivation: %d %s", code, body)
	}
	if o := e.record(state.MirrorOrg, org); o.Disabled != 0 {
		t.Errorf("late deactivation won: %+v", o)
	}
	_, rev2 := e.mirror()
	if rev2 == rev {
		t.Error("reactivation not written")
	}

	// App events live on the project aggregate; out of order there too.
	d1 := e.fake.SetAppState(app, zitadeltest.Inactive)
	r1 := e.fake.SetAppState(app, zitadeltest.Active)
	d2 := e.fake.SetAppState(app, zitadeltest.Inactive)
	for _, ev := range []zitadeltest.Event{d2, r1, d1} {
		if code, body := e.deliver(ev); code != 200 {
			t.Fatalf("%s: %d %s", ev.EventType, code, body)
		}
	}
	if a := e.record(state.MirrorApp, p+"/"+app); !a.Deactivated || a.Sequence != d2.Sequence || strings.Join(a.ClientIDs, ",") != client {
		t.Errorf("app = %+v, want deactivated at %d with its client id", a, d2.Sequence)
	}
	// The listing lags (the projection has not reduced d2 yet if it said less): the mirror keeps the event.
	if st := e.reconcile(); st.Written != 0 {
		t.Errorf("reconcile after events: %+v", st)
	}

	// A new app is known by its client id from the config event, before any reconcile.
	app2, client2, evs := e.fake.AddApp(p, "new", zitadeltest.API)
	for _, ev := range evs {
		if code, body := e.deliver(ev); code != 200 {
			t.Fatalf("%s: %d %s", ev.EventType, code, body)
		}
	}
	if a := e.record(state.MirrorApp, p+"/"+app2); strings.Join(a.ClientIDs, ",") != client2 || a.OrgID != org || a.Deactivated {
		t.Errorf("new app = %+v", a)
	}
	// Removal: a tombstone, and a later reactivation event of the same aggregate cannot be older than it.
	rm := e.fake.RemoveApp(app2)
	if code, _ := e.deliver(rm); code != 200 {
		t.Fatal(code)
	}
	if a := e.record(state.MirrorApp, p+"/"+app2); !a.Removed || strings.Join(a.ClientIDs, ",") != client2 {
		t.Errorf("removed app = %+v", a)
	}
	if st := e.reconcile(); st.Written != 0 {
		t.Errorf("reconcile after the removal event: %+v", st)
	}
}

func TestWebhookRefusesWithNothingChanged(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	org, _ := e.fake.AddOrg("A")
	e.reconcile()
	_, rev := e.mirror()
	ev := e.fake.SetOrgState(org, zitadeltest.Inactive)
	body := ev.Body()
	tampered := bytes.Replace(body, []byte(`"org.deactivated"`), []byte(`"org.deactivated" `), 1)
	for _, tc := range []struct {
		name string
		body []byte
		sig  string
		want int
	}{
		{"no signature", body, "", 401},
		{"wrong key", body, zitadeltest.Sign(time.Now(), body, "other"), 401},
		{"stale timestamp", body, zitadeltest.Sign(time.Now().Add(-6*time.Minute), body, testKey), 401},
		{"body changed after signing", tampered, zitadeltest.Sign(time.Now(), body, testKey), 401},
		{"malformed but signed", []byte(`{"event_type":"org.deactivated","aggregateType":"org","aggregateID":"../x","sequence":99}`),
			zitadeltest.Sign(time.Now(), []byte(`{"event_type":"org.deactivated","aggregateType":"org","aggregateID":"../x","sequence":99}`), testKey), 400},
		{"signature of another delivery", e.fake.Touch(org).Body(), zitadeltest.Sign(time.Now(), e.fake.Touch(org).Body(), testKey), 401},
		{"too large", bytes.Repeat([]byte(" "), 2<<20), "", 413},
	} {
		if code, resp := e.post(tc.body, tc.sig); code != tc.want {
			t.Errorf("%s: %d %s, want %d", tc.name, code, resp, tc.want)
		}
	}
	// Several signature headers: refused, whichever is right.
	req, _ := http.NewRequest(http.MethodPost, e.hook.URL+WebhookPath, bytes.NewReader(body))
	req.Header.Add(SignatureHeader, zitadeltest.Sign(time.Now(), body, testKey))
	req.Header.Add(SignatureHeader, "t=1,v1=00")
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 401 {
		t.Errorf("two signature headers: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	if _, rev2 := e.mirror(); rev2 != rev {
		t.Fatal("a refused delivery changed the mirror")
	}
	if o := e.record(state.MirrorOrg, org); o.Disabled != 0 {
		t.Fatalf("org = %+v", o)
	}
	// An ignored type, signed: 200 and nothing changes.
	if code, resp := e.deliver(e.fake.Touch(org)); code != 200 || !strings.Contains(resp, "ignored") {
		t.Errorf("ignored type: %d %s", code, resp)
	}
	if code, _ := e.deliver(ev); code != 200 {
		t.Errorf("the real delivery: %d", code)
	}
}

func TestRunKeepsStateWhenZitadelFails(t *testing.T) {
	t.Parallel()
	reports := make(chan error, 100)
	e := newEnv(t, func(c *ReconcilerConfig) {
		c.Interval = 20 * time.Millisecond
		c.Report = func(_ SyncStats, err error) { reports <- err }
	})
	org, _ := e.fake.AddOrg("A")
	e.fake.SetOrgState(org, zitadeltest.Inactive)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- e.rec.Run(ctx) }()
	defer func() { cancel(); <-done }()
	waitReport := func(wantErr bool) error {
		deadline := time.After(10 * time.Second)
		for {
			select {
			case err := <-reports:
				if (err != nil) == wantErr {
					return err
				}
			case <-deadline:
				t.Fatalf("no report with error=%v", wantErr)
			}
		}
	}
	waitReport(false)
	e.fake.Fail(401)
	err := waitReport(true)
	var ae *APIError
	if !errors.As(err, &ae) || !ae.Unauthorized() {
		t.Errorf("reported %v, want a 401 APIError", err)
	}
	if o := e.record(state.MirrorOrg, org); o.Disabled == 0 {
		t.Error("a failing ZITADEL undid the mirrored deactivation")
	}
	e.fake.Fail(0)
	waitReport(false)
}

// TestReconcileRemovedOrgTakesItsAppsAlong: removing the one org that holds every project and app is one org of
// twelve, not "every app vanished": the org, its project and its apps become tombstones.
func TestReconcileRemovedOrgTakesItsAppsAlong(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	var owner string
	for i := range 12 {
		id, _ := e.fake.AddOrg("org" + string(rune('a'+i)))
		if i == 0 {
			owner = id
		}
	}
	p, _ := e.fake.AddProject(owner, "shop")
	app, client, _ := e.fake.AddApp(p, "web", zitadeltest.OIDC)
	e.reconcile()
	e.fake.RemoveOrg(owner)
	st := e.reconcile()
	if st.Removed != 3 {
		t.Fatalf("sync after the removal: %+v", st)
	}
	if a := e.record(state.MirrorApp, p+"/"+app); !a.Removed || strings.Join(a.ClientIDs, ",") != client {
		t.Errorf("app of the removed org = %+v", a)
	}
	if o := e.record(state.MirrorOrg, owner); !o.Removed {
		t.Errorf("removed org = %+v", o)
	}
}

// TestReconcileUndoesAGlitchTombstone: an org missing from one listing (no removal event) becomes a tombstone at
// its held sequence; the next listing that shows it again at that sequence brings it back.
func TestReconcileUndoesAGlitchTombstone(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	var orgs []string
	for i := range 12 {
		id, _ := e.fake.AddOrg("org"+string(rune('a'+i)), "d"+string(rune('a'+i))+".example")
		orgs = append(orgs, id)
	}
	e.reconcile()
	e.fake.Hide(orgs[3], true)
	if st := e.reconcile(); st.Removed != 1 {
		t.Fatalf("sync with the org missing: %+v", st)
	}
	if o := e.record(state.MirrorOrg, orgs[3]); !o.Removed {
		t.Fatalf("org = %+v, want a tombstone", o)
	}
	e.fake.Hide(orgs[3], false)
	if st := e.reconcile(); st.Written != 1 {
		t.Fatalf("sync with the org back: %+v", st)
	}
	if o := e.record(state.MirrorOrg, orgs[3]); o.Removed || strings.Join(o.Domains, ",") != "dd.example" {
		t.Errorf("org = %+v, want it live again with its domain", o)
	}
	// A removal ZITADEL reports is not undone by a lagging listing.
	rm := e.fake.RemoveOrg(orgs[4])
	if code, _ := e.deliver(rm); code != 200 {
		t.Fatal(code)
	}
	if o := e.record(state.MirrorOrg, orgs[4]); !o.Removed || o.Sequence != rm.Sequence {
		t.Fatalf("removed org = %+v", o)
	}
}

// TestWebhookAnswersWithinTheWriteTimeout: with etcd gone, a valid event is answered 503 within the write
// timeout (as the admin API answers without quorum), not held until ZITADEL's target gives up.
func TestWebhookAnswersWithinTheWriteTimeout(t *testing.T) {
	t.Parallel()
	fake := zitadeltest.New()
	t.Cleanup(fake.Close)
	srv := etcdtest.Start(t)
	store := state.NewStore(etcdtest.Client(t, srv.Endpoints()))
	v, err := NewVerifier([]string{testKey}, nil)
	if err != nil {
		t.Fatal(err)
	}
	hook, err := NewWebhook(WebhookConfig{Store: store, Verifier: v, WriteTimeout: 300 * time.Millisecond, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(hook)
	t.Cleanup(ts.Close)
	org, _ := fake.AddOrg("A")
	body := fake.SetOrgState(org, zitadeltest.Inactive).Body()
	srv.Close()
	req, _ := http.NewRequest(http.MethodPost, ts.URL+WebhookPath, bytes.NewReader(body))
	req.Header.Set(SignatureHeader, zitadeltest.Sign(time.Now(), body, testKey))
	start := time.Now()
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req) // without the bound the answer never comes
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if took := time.Since(start); resp.StatusCode != http.StatusServiceUnavailable || took > 5*time.Second {
		t.Fatalf("etcd gone: %d after %v, want 503 within the 300ms write timeout (and some slack)", resp.StatusCode, took)
	}
}

// TestWebhookRefusalsDoNotFloodTheLog: anyone who reaches the admin listener can send unsigned events; each is
// refused (401) and counted, but the warning is logged once per refusedLogEvery, and the next one says how many
// were not logged.
func TestWebhookRefusalsDoNotFloodTheLog(t *testing.T) {
	t.Parallel()
	srv := etcdtest.Start(t)
	v, err := NewVerifier([]string{testKey}, nil)
	if err != nil {
		t.Fatal(err)
	}
	var logs syncBuffer
	hook, err := NewWebhook(WebhookConfig{Store: state.NewStore(etcdtest.Client(t, srv.Endpoints())), Verifier: v,
		Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(hook)
	t.Cleanup(ts.Close)
	body := []byte(`{"event_type":"org.deactivated"}`)
	for i := range 50 {
		req, _ := http.NewRequest(http.MethodPost, ts.URL, bytes.NewReader(body))
		req.Header.Set(SignatureHeader, fmt.Sprintf("t=%d,v1=00", time.Now().Unix()))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("request %d: %d, want 401", i, resp.StatusCode)
		}
	}
	if n := strings.Count(logs.String(), "bad signature"); n != 1 {
		t.Fatalf("%d warnings for 50 refusals, want 1:\n%s", n, logs.String())
	}
	hook.refused.mu.Lock()
	hook.refused.last = time.Now().Add(-refusedLogEvery) // as if the quiet spell had passed
	hook.refused.mu.Unlock()
	req, _ := http.NewRequest(http.MethodPost, ts.URL, bytes.NewReader(body))
	if resp, err := http.DefaultClient.Do(req); err != nil {
		t.Fatal(err)
	} else {
		resp.Body.Close()
	}
	if !strings.Contains(logs.String(), "not_logged_since_last=49") {
		t.Fatalf("the next warning does not count the 49 not logged:\n%s", logs.String())
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }
