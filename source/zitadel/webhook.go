package zitadel

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/deact/deact/source"
	"github.com/deact/deact/state"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// WebhookPath is where the daemon serves the webhook on the admin listener; SourceWebhookPath is the same under
// the daemon's per-source prefix /v1/sources/{name}/.
const (
	WebhookPath       = "/sources/zitadel/events"
	SourceWebhookPath = "/v1/sources/" + SourceName + "/events"
)

// The fan-out confirmation headers, spelled as deact's admin API sends them.
const (
	HeaderConfirmed     = "X-Deact-Confirmed"       // "confirmed/total" gateway nodes that applied the change
	HeaderConfirmWaitMs = "X-Deact-Confirm-Wait-Ms" // how long the answer waited for them
	HeaderRevision      = "X-Deact-Revision"        // etcd revision of the write
)

// WebhookConfig configures a Webhook. Zero values take the defaults in brackets.
type WebhookConfig struct {
	Store    *state.Store
	Verifier *Verifier
	// Fanout, when set, is waited on after a write so the answer says how many gateway nodes applied it.
	Fanout         *state.Fanout
	ConfirmTimeout time.Duration // bound on that wait [2s]
	// WriteTimeout bounds the store write, which also fails at once on an etcd member without a leader; past it
	// the answer is 503 [5s, as the admin API's --write-timeout].
	WriteTimeout time.Duration
	Orgs         []string // only events of these orgs are applied; empty applies all
	MaxBody      int64    // largest body accepted [1 MiB]
	Logger       *slog.Logger
	Status       *source.Status // counts events (accepted, ignored, rejected); nil: none
	Now          func() time.Time
}

// Webhook is the target of a ZITADEL Actions v2 event execution. It answers:
//   - 401, with nothing changed, when ZITADEL-Signature is missing, malformed, stale or matches no key;
//   - 2xx for an event deact does not act on (so ZITADEL keeps delivering), and for one of an org it does not
//     follow;
//   - 400 for a verified body that is not a well-formed event of a type deact acts on (ZITADEL logs it);
//   - 200 once etcd committed the change, with the fan-out confirmation headers; 200 too for a replayed or older
//     event, which changes nothing;
//   - 503 when etcd is unavailable: ZITADEL may retry, and the next reconcile repairs what was lost.
//
// It is safe on every admin node at once: writes go through Store.ApplyMirror, whose sequence check keeps the
// newest state whoever writes.
type Webhook struct {
	cfg     WebhookConfig
	log     *slog.Logger
	refused refusedLog
}

// refusedLog limits the warnings for unauthenticated refusals to one per refusedLogEvery: anyone who can reach
// the admin listener can send them, and a log line per request would let them flood the log (the metric counts
// every one). The next warning after a quiet spell says how many were not logged.
type refusedLog struct {
	mu         sync.Mutex
	last       time.Time
	suppressed int
}

const refusedLogEvery = 10 * time.Second

func (l *refusedLog) warn(log *slog.Logger, msg string, args ...any) {
	l.mu.Lock()
	now := time.Now()
	if !l.last.IsZero() && now.Sub(l.last) < refusedLogEvery {
		l.suppressed++
		l.mu.Unlock()
		return
	}
	n := l.suppressed
	l.last, l.suppressed = now, 0
	l.mu.Unlock()
	if n > 0 {
		args = append(args, "not_logged_since_last", n)
	}
	log.Warn(msg, args...)
}

// NewWebhook validates cfg.
func NewWebhook(cfg WebhookConfig) (*Webhook, error) {
	if cfg.Store == nil || cfg.Verifier == nil {
		return nil, errors.New("zitadel webhook needs a store and a verifier")
	}
	if cfg.ConfirmTimeout == 0 {
		cfg.ConfirmTimeout = 2 * time.Second
	}
	if cfg.MaxBody <= 0 {
		cfg.MaxBody = 1 << 20
	}
	if cfg.WriteTimeout <= 0 {
		cfg.WriteTimeout = 5 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = func() time.Time { return time.Now().UTC() }
	}
	return &Webhook{cfg: cfg, log: cfg.Logger.With("source", SourceName)}, nil
}

type webhookAnswer struct {
	Result   string `json:"result"` // applied, unchanged, stale, ignored
	Event    string `json:"event,omitempty"`
	Revision int64  `json:"revision,omitempty"`
	Error    string `json:"error,omitempty"`
}

func answer(w http.ResponseWriter, status int, a webhookAnswer) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(a)
}

func (h *Webhook) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		answer(w, http.StatusMethodNotAllowed, webhookAnswer{Error: "POST only"})
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, h.cfg.MaxBody))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			answer(w, http.StatusRequestEntityTooLarge, webhookAnswer{Error: fmt.Sprintf("body larger than %d bytes", h.cfg.MaxBody)})
			return
		}
		answer(w, http.StatusBadRequest, webhookAnswer{Error: "reading the body failed"})
		return
	}
	// Several ZITADEL-Signature headers are refused rather than one of them chosen.
	sigs := r.Header.Values(SignatureHeader)
	if len(sigs) > 1 {
		h.refused.warn(h.log, "zitadel event refused: several signature headers", "remote", r.RemoteAddr)
		h.count("", source.EventRejected, time.Time{})
		answer(w, http.StatusUnauthorized, webhookAnswer{Error: "several " + SignatureHeader + " headers"})
		return
	}
	sig := ""
	if len(sigs) == 1 {
		sig = sigs[0]
	}
	if err := h.cfg.Verifier.Verify(sig, body); err != nil {
		h.refused.warn(h.log, "zitadel event refused: bad signature", "err", err, "remote", r.RemoteAddr)
		h.count("", source.EventRejected, time.Time{})
		answer(w, http.StatusUnauthorized, webhookAnswer{Error: err.Error()})
		return
	}
	in, err := ParseDelivery(body)
	if err != nil {
		h.log.Warn("zitadel event refused: malformed", "err", err, "event", in.Type)
		h.count(in.Type, source.EventRejected, time.Time{})
		answer(w, http.StatusBadRequest, webhookAnswer{Event: in.Type, Error: err.Error()})
		return
	}
	if in.Ignored() || (len(h.cfg.Orgs) > 0 && !slices.Contains(h.cfg.Orgs, in.OrgID)) {
		h.log.Debug("zitadel event ignored", "event", in.Type)
		h.count(in.Type, source.EventIgnored, in.CreatedAt)
		answer(w, http.StatusOK, webhookAnswer{Result: "ignored", Event: in.Type})
		return
	}
	actx, cancel := context.WithTimeout(clientv3.WithRequireLeader(r.Context()), h.cfg.WriteTimeout)
	res, err := h.Apply(actx, in)
	cancel()
	if err != nil {
		h.log.Error("zitadel event not applied", "event", in.Type, "id", in.ID, "sequence", in.Sequence, "err", err)
		answer(w, http.StatusServiceUnavailable, webhookAnswer{Event: in.Type, Error: "the change could not be stored; the next reconcile repairs it"})
		return
	}
	a := webhookAnswer{Result: res.result, Event: in.Type, Revision: res.revision}
	if res.result == "applied" {
		h.count(in.Type, source.EventAccepted, in.CreatedAt)
		w.Header().Set(HeaderRevision, strconv.FormatInt(res.revision, 10))
		if h.cfg.Fanout != nil {
			c := h.confirm(r.Context(), res.revision)
			w.Header().Set(HeaderConfirmed, fmt.Sprintf("%d/%d", c.Confirmed, c.Total))
			w.Header().Set(HeaderConfirmWaitMs, strconv.FormatFloat(c.WaitedMs, 'f', -1, 64))
			h.log.Info("zitadel event applied", "event", in.Type, "id", in.ID, "org", in.OrgID, "sequence", in.Sequence,
				"revision", res.revision, "confirmed", c.Confirmed, "total", c.Total, "waited_ms", c.WaitedMs)
		}
	} else {
		h.count(in.Type, source.EventIgnored, in.CreatedAt)
		h.log.Debug("zitadel event changed nothing", "event", in.Type, "id", in.ID, "sequence", in.Sequence, "result", res.result)
	}
	answer(w, http.StatusOK, a)
}

func (h *Webhook) count(typ string, r source.EventResult, created time.Time) {
	if h.cfg.Status != nil {
		h.cfg.Status.Event(typ, r, created)
	}
}

func (h *Webhook) confirm(ctx context.Context, rev int64) state.Confirmation {
	wctx, cancel := context.WithTimeout(ctx, h.cfg.ConfirmTimeout)
	defer cancel()
	c, err := h.cfg.Fanout.WaitApplied(wctx, rev)
	if err != nil && ctx.Err() == nil {
		h.log.Info("zitadel event not confirmed by every node in time", "revision", rev, "confirmed", c.Confirmed,
			"total", c.Total, "pending", c.Pending)
	}
	return c
}

type applied struct {
	result   string
	revision int64
}

// Apply writes what an event says to its mirrored record, as a partial record: the state the event sets and its
// sequence; ApplyMirror keeps the stored names, client IDs and domains, and writes nothing unless the event is
// newer than the record (a replay is unchanged, an older event stale).
func (h *Webhook) Apply(ctx context.Context, in Intent) (applied, error) {
	rec := state.MirrorRecord{Source: SourceName, Kind: in.Kind, ID: in.ID, ProjectID: in.ProjectID, OrgID: in.OrgID,
		Sequence: in.Sequence, ChangedAt: in.CreatedAt, Partial: true}
	if in.Kind == state.MirrorOrg {
		rec.OrgID = ""
	}
	if rec.ChangedAt.IsZero() {
		rec.ChangedAt = h.cfg.Now()
	}
	switch in.act {
	case actDeactivate:
		if in.Kind == state.MirrorOrg {
			rec.Disabled = state.OpLogin | state.OpToken
		} else {
			rec.Deactivated = true
		}
	case actReactivate:
	case actRemove:
		rec.Removed, rec.RemovedAt = true, h.cfg.Now()
	case actClient:
		// ClientIDs replace the stored ones: ZITADEL gives an app one OIDC or API config, and its client ID is
		// fixed from then on.
		rec.ClientIDs = []string{in.ClientID}
	case actAppAdded:
	}
	res, err := h.cfg.Store.ApplyMirror(ctx, []state.MirrorRecord{rec}, state.Change{Actor: "source:" + SourceName, Reason: in.Type})
	if err != nil {
		return applied{}, err
	}
	switch {
	case res.Written > 0:
		return applied{result: "applied", revision: res.Revision}, nil
	case res.Stale > 0:
		return applied{result: "stale"}, nil
	}
	return applied{result: "unchanged"}, nil
}
