package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"sync/atomic"
	"time"

	"github.com/deact/deact/admin/adminapi"
)

// model is what the load generator knows of deact's state: which of its orgs and apps are deactivated, and
// since when. Every answer is compared with it. Safe for concurrent use: readers load immutable states, and
// each subject has at most one writer at a time (the churner).
//
// IDs carry a per-run prefix, so runs against a shared deployment do not collide:
// org {run}-o{i} (domain o{i}.{run}.bench.example), project {run}-p{j}, app {run}-a{j} with client ID
// {run}-a{j}@{run}-p{j}. App j belongs to org j mod orgs, through its own project.
type model struct {
	run  string
	orgs []subject
	apps []subject
}

// subject is one org or app and its state.
type subject struct {
	id    string
	state atomic.Pointer[subjectState]
}

// subjectState is immutable once published.
type subjectState struct {
	deactivated bool
	// pending is set from the start of a write until every node confirmed it: the expected answer is either.
	pending bool
	// changed is when the last write was confirmed (zero for the initial state): a request sent before it may
	// have been answered from the state before the write.
	changed time.Time
}

// newModel makes orgs and apps with a share deactivated, chosen at random with seed: whole orgs (every op), and
// apps among those of active orgs.
func newModel(run string, orgs, apps int, share float64, seed uint64) *model {
	m := &model{run: run, orgs: make([]subject, orgs), apps: make([]subject, apps)}
	rng := rand.New(rand.NewPCG(seed, 0x6465616374))
	offOrgs := map[int]bool{}
	for _, i := range rng.Perm(orgs)[:int(share*float64(orgs))] {
		offOrgs[i] = true
	}
	for i := range m.orgs {
		m.orgs[i].id = m.orgID(i)
		m.orgs[i].state.Store(&subjectState{deactivated: offOrgs[i]})
	}
	var candidates []int
	for j := range m.apps {
		m.apps[j].id = m.appID(j)
		m.apps[j].state.Store(&subjectState{})
		if !offOrgs[m.appOrg(j)] {
			candidates = append(candidates, j)
		}
	}
	rng.Shuffle(len(candidates), func(a, b int) { candidates[a], candidates[b] = candidates[b], candidates[a] })
	for _, j := range candidates[:min(len(candidates), int(share*float64(apps)))] {
		m.apps[j].state.Store(&subjectState{deactivated: true})
	}
	return m
}

func (m *model) orgID(i int) string     { return fmt.Sprintf("%s-o%d", m.run, i) }
func (m *model) domain(i int) string    { return fmt.Sprintf("o%d.%s.bench.example", i, m.run) }
func (m *model) projectID(j int) string { return fmt.Sprintf("%s-p%d", m.run, j) }
func (m *model) appID(j int) string     { return fmt.Sprintf("%s-a%d", m.run, j) }
func (m *model) clientID(j int) string  { return m.appID(j) + "@" + m.projectID(j) }
func (m *model) appOrg(j int) int       { return j % len(m.orgs) }

// counts returns how many orgs and apps are deactivated now.
func (m *model) counts() (orgs, apps int) {
	for i := range m.orgs {
		if m.orgs[i].state.Load().deactivated {
			orgs++
		}
	}
	for j := range m.apps {
		if m.apps[j].state.Load().deactivated {
			apps++
		}
	}
	return orgs, apps
}

// expect says what deact must answer to t sent at sent: deny, or ambiguous when a write to one of its subjects
// was in flight (started but not confirmed by every node) at any time since sent. Deny is certain when any
// subject is certainly deactivated.
func (m *model) expect(t *template, sent time.Time) (deny, ambiguous bool) {
	look := func(s *subject) (off, amb bool) {
		st := s.state.Load()
		return st.deactivated, st.pending || st.changed.After(sent)
	}
	off, amb := look(&m.orgs[t.org])
	if off && !amb {
		return true, false
	}
	if t.app >= 0 && t.kind.appsApply() {
		aoff, aamb := look(&m.apps[t.app])
		if aoff && !aamb {
			return true, false
		}
		off, amb = off || aoff, amb || aamb
	}
	if amb {
		return false, true
	}
	return off, false
}

// begin marks org i as being written (the answer is ambiguous from now on) and returns its current state.
func (m *model) begin(i int) *subjectState {
	s := &m.orgs[i]
	cur := s.state.Load()
	s.state.Store(&subjectState{deactivated: cur.deactivated, pending: true, changed: cur.changed})
	return cur
}

// commit records the confirmed outcome of a write to org i: from now on the expected answer is certain again
// for requests sent after now.
func (m *model) commit(i int, deactivated bool, now time.Time) {
	m.orgs[i].state.Store(&subjectState{deactivated: deactivated, changed: now})
}

// register writes the model's orgs (with domains), a project per app and the apps (with client IDs) in their
// current states through the admin API's import, in chunks.
func register(ctx context.Context, ac *adminapi.Client, m *model) (records int, _ error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	flush := func() error {
		if buf.Len() == 0 {
			return nil
		}
		res, err := ac.Import(ctx, bytes.NewReader(buf.Bytes()), adminapi.ImportOptions{})
		buf.Reset()
		records += res.Records
		if err != nil {
			return fmt.Errorf("import: %w", err)
		}
		return nil
	}
	for i := range m.orgs {
		off := m.orgs[i].state.Load().deactivated
		_ = enc.Encode(map[string]any{"org": map[string]any{
			"id": m.orgs[i].id, "name": m.orgs[i].id, "domains": []string{m.domain(i)},
			"state": stateWord(off), "disableLogin": off, "disableToken": off, "disableBackup": off, "disableRestore": off,
		}})
		if buf.Len() > 1<<20 {
			if err := flush(); err != nil {
				return records, err
			}
		}
	}
	for j := range m.apps {
		org := m.orgs[m.appOrg(j)].id
		_ = enc.Encode(map[string]any{"project": map[string]any{"id": m.projectID(j), "orgId": org, "state": "active"}})
		_ = enc.Encode(map[string]any{"app": map[string]any{
			"id": m.appID(j), "projectId": m.projectID(j), "orgId": org, "clientIds": []string{m.clientID(j)},
			"state": stateWord(m.apps[j].state.Load().deactivated),
		}})
		if buf.Len() > 1<<20 {
			if err := flush(); err != nil {
				return records, err
			}
		}
	}
	return records, flush()
}

func stateWord(deactivated bool) string {
	if deactivated {
		return "deactivated"
	}
	return "active"
}
