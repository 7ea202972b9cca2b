package zitadel

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/deact/deact/source/zitadel/zitadeltest"
	"github.com/deact/deact/state"
	"github.com/deact/deact/state/etcdtest"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// FuzzWebhook drives the event endpoint with arbitrary bodies and signature headers, against a real etcd. A
// fuzzed header is used as given; when sign is set the body is signed correctly instead, so the parser and the
// write path behind the signature are fuzzed too. Invariants: no 5xx but the 503 of an unavailable store, never a
// panic; a delivery that is not correctly signed changes nothing; 200 only for what verified.
func FuzzWebhook(f *testing.F) {
	fake := zitadeltest.New()
	defer fake.Close()
	org, _ := fake.AddOrg("A", "a.example")
	p, _ := fake.AddProject(org, "shop")
	app, _, evs := fake.AddApp(p, "web", zitadeltest.OIDC)
	seeds := append(evs, fake.SetOrgState(org, zitadeltest.Inactive), fake.SetProjectState(p, zitadeltest.Inactive),
		fake.SetAppState(app, zitadeltest.Inactive), fake.RemoveApp(app), fake.RemoveOrg(org), fake.Touch(org))
	now := time.Unix(1_800_000_000, 0)
	for _, ev := range seeds {
		f.Add(ev.Body(), zitadeltest.Sign(now, ev.Body(), testKey), false)
		f.Add(ev.Body(), "", true)
	}
	f.Add([]byte(`{"event_type":"org.deactivated","aggregateType":"org","aggregateID":"1","sequence":1}`), "t=1800000000,v1=00", false)
	f.Add([]byte(`{"event_type":"project.application.config.oidc.added","aggregateType":"project","aggregateID":"1","resourceOwner":"2","sequence":3,"event_payload":"eyJhcHBJZCI6IjMiLCJjbGllbnRJZCI6IjNAeCJ9"}`), "", true)
	f.Add([]byte(`{"event_type":"org.removed","aggregateType":"org","aggregateID":"1","sequence":18446744073709551615}`), "", true)
	f.Add([]byte(`[]`), "t=,v1=", false)

	srv := etcdtest.Start(f)
	store := state.NewStore(etcdtest.Client(f, srv.Endpoints()))
	cli := etcdtest.Client(f, srv.Endpoints())
	v, _ := NewVerifier([]string{testKey}, func() time.Time { return now })
	hook, err := NewWebhook(WebhookConfig{Store: store, Verifier: v, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, body []byte, sig string, sign bool) {
		if sign {
			sig = zitadeltest.Sign(now, body, testKey)
		}
		before := mirrorRevision(t, store)
		req := httptest.NewRequest(http.MethodPost, WebhookPath, bytes.NewReader(body))
		if sig != "" {
			req.Header.Set(SignatureHeader, sig)
		}
		w := httptest.NewRecorder()
		hook.ServeHTTP(w, req)
		verified := (&Verifier{keys: [][]byte{[]byte(testKey)}, now: func() time.Time { return now }}).Verify(sig, body) == nil
		switch {
		case w.Code >= 500 && w.Code != http.StatusServiceUnavailable:
			t.Fatalf("status %d for %q", w.Code, body)
		case !verified && w.Code != http.StatusUnauthorized && w.Code != http.StatusRequestEntityTooLarge:
			t.Fatalf("unverified delivery answered %d", w.Code)
		case verified && w.Code == http.StatusUnauthorized:
			t.Fatalf("verified delivery refused: %s", w.Body)
		}
		if !verified || w.Code != http.StatusOK {
			if after := mirrorRevision(t, store); after != before {
				t.Fatalf("a refused delivery (%d) changed the mirror: %d → %d", w.Code, before, after)
			}
		}
		var a webhookAnswer
		if err := json.Unmarshal(w.Body.Bytes(), &a); err != nil {
			t.Fatalf("answer is not JSON: %q", w.Body)
		}
		if w.Code == http.StatusOK && a.Result == "applied" && w.Header().Get(HeaderRevision) != strconv.FormatInt(a.Revision, 10) {
			t.Fatalf("revision header %q, body %d", w.Header().Get(HeaderRevision), a.Revision)
		}
		// Each input starts from an empty mirror: the same input gives the same path, which the fuzzer's
		// minimization relies on.
		if _, err := cli.Delete(context.Background(), state.MirrorPrefix, clientv3.WithPrefix()); err != nil {
			t.Fatal(err)
		}
	})
}

// mirrorRevision is the highest ModRevision among the mirrored records (0 when none).
func mirrorRevision(t *testing.T, s *state.Store) int64 {
	var rev int64
	if err := s.ListMirror(context.Background(), SourceName, 0, func(_ state.MirrorRecord, r int64) error {
		rev = max(rev, r)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return rev
}
