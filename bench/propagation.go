package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	"github.com/deact/deact/admin/adminapi"
	"github.com/deact/deact/state"
)

// PropagationConfig configures the propagation benchmark. Zero values take the defaults in brackets.
type PropagationConfig struct {
	// Deployment is the deact under test (admin URL and token, gateways' ext_authz addresses); nil starts the
	// local cluster in Dir, with the deactd binary Deactd [built from ./cmd/deactd].
	Deployment *Deployment
	Dir        string
	Deactd     string

	// API the writes go through: APINative (/v1/orgs/{id}/deactivate, every op) or APIZitadel
	// (/management/v1/orgs/me/_deactivate, login and token) [native].
	API         string
	Iterations  int           // writes: deactivations and reactivations alternately [200]
	MaxDuration time.Duration // bound on the whole run [2m]
	// PollInterval is the pause between a node's checks [200µs]; negative polls in a tight loop. On a small
	// machine three tight loops take the CPU etcd needs and slow the very propagation they measure (on 2 cores:
	// p99 12 ms tight, 4 ms with 200 µs pauses); the pause costs 0.2 ms of resolution.
	PollInterval time.Duration
	NodeTimeout  time.Duration // how long a node may take to flip before the iteration counts as failed [5s]
	RunID        string        // prefix of the org's ID [random]
	Progress     io.Writer
}

// APIs of the propagation benchmark's writes.
const (
	APINative  = "native"
	APIZitadel = "zitadel"
)

// PropagationReport is the time from an admin write to each node answering accordingly.
//
// Times are taken at the answer of each node's first check that shows the new state (an upper bound; the
// resolution is one check's round trip, see PollRTT, plus the pause between checks). "From write" starts when deactbench sends the admin
// request, "from ack" when the admin's answer (sent after every node confirmed) arrives; a node that flips
// before the ack counts 0 from the ack.
type PropagationReport struct {
	Deployment  string            `json:"deployment"`
	API         string            `json:"api"`
	Nodes       int               `json:"nodes"`
	Iterations  int               `json:"iterations"`
	Completed   int               `json:"completed"`
	FromWrite   Percentiles       `json:"fromWrite"` // all nodes: the slowest node of each write
	FromAck     Percentiles       `json:"fromAck"`
	PerNode     []NodePropagation `json:"perNode"`
	AdminAck    Percentiles       `json:"adminAck"`    // write sent → admin's answer
	ConfirmWait Percentiles       `json:"confirmWait"` // X-Deact-Confirm-Wait-Ms as the admin reported it
	PollRTT     Percentiles       `json:"pollRtt"`
	// Bracket is the measurement's own resolution for the slowest node of each write: from the sending of its last
	// check that showed the old state to the answer of its first that showed the new one. The flip happened inside
	// it, and FromWrite counts its end.
	Bracket     Percentiles `json:"bracket"`
	PollPauseMs float64     `json:"pollPauseMs"` // pause between a node's checks
	// StaleAfterAck counts checks sent after the admin acknowledged a write as confirmed by every node that
	// still answered the old state: the confirmation would have been wrong. Must be 0.
	StaleAfterAck int      `json:"staleAfterAck"`
	Unconfirmed   int      `json:"unconfirmed"` // admin answers not confirmed by every node
	Failed        int      `json:"failed"`      // writes that failed or nodes that never flipped
	GoalP99Ms     float64  `json:"goalP99Ms"`
	Examples      []string `json:"examples,omitempty"`

	// Floor is etcd's own propagation in the same run (needs the deployment's etcd endpoints): before each admin
	// write, while the nodes are polled as for the write, a raw put of a key no gateway watches, until its watch
	// event reached every one of Nodes watchers (a client of its own each, as each gateway has). FloorAck is
	// the put's own answer.
	Floor    Percentiles `json:"floor"`
	FloorAck Percentiles `json:"floorAck"`
	// Stages of each admin write as a watcher of etcd saw them, from the write's sending: the written record's
	// event (the admin's transaction committed), and every node's record showing the write applied (only
	// for writes whose gateways reported through their records, the fallback; gateways on report streams to
	// the admin nodes do not rewrite them, and Reported is then empty).
	Committed Percentiles `json:"committed"`
	Reported  Percentiles `json:"reported"`
	// Ratios of p99s to the floor's p99: every node denies (FromWrite), the admin's confirmed answer (AdminAck).
	DeniedVsFloorP99 float64 `json:"deniedVsFloorP99,omitempty"`
	AnswerVsFloorP99 float64 `json:"answerVsFloorP99,omitempty"`
	DeniedVsFloorP50 float64 `json:"deniedVsFloorP50,omitempty"`
	AnswerVsFloorP50 float64 `json:"answerVsFloorP50,omitempty"`

	// Raw samples in milliseconds (from write), for the CDF plot.
	SamplesMs        []float64   `json:"samplesMs"`
	PerNodeSamplesMs [][]float64 `json:"perNodeSamplesMs"`
}

// NodePropagation is one node's propagation times.
type NodePropagation struct {
	Addr      string      `json:"addr"`
	FromWrite Percentiles `json:"fromWrite"`
	FromAck   Percentiles `json:"fromAck"`
}

// Propagation goals for 3 nodes on loopback: absolute, and as multiples of etcd's floor in the same run.
const (
	GoalPropagationP99Ms = 10
	GoalDeniedVsFloorP99 = 3 // every node denies, p99, over the floor's p99
	GoalAnswerVsFloorP99 = 5 // the admin's confirmed answer, p99, over the floor's p99
)

func (r *PropagationReport) err() error {
	var errs []error
	if r.StaleAfterAck > 0 {
		errs = append(errs, fmt.Errorf("%w: propagation: %d checks sent after a confirmed ack answered the old state", ErrCorrectness, r.StaleAfterAck))
	}
	if r.Failed > 0 {
		errs = append(errs, fmt.Errorf("%w: propagation: %d failed writes or nodes that never flipped", ErrCorrectness, r.Failed))
	}
	return errors.Join(errs...)
}

// poller checks one node in a loop for one write at a time.
type poller struct {
	s   sender
	t   *template
	rtt *hdrhistogram.Histogram
}

// pollJob asks a poller to confirm the old state, say so on armed, then check until the node answers want.
type pollJob struct {
	want     bool // deny
	interval time.Duration
	armed    chan<- error
	deadline time.Time
}

type pollResult struct {
	flipped time.Time // answer of the first check showing want
	lastOld time.Time // send time of the last check that showed the old state
	err     error
}

func (p *poller) poll(ctx context.Context, job pollJob) pollResult {
	ctx, cancel := context.WithDeadline(ctx, job.deadline)
	defer cancel()
	var r pollResult
	check := func() (deny bool, sent time.Time, err error) {
		sent = time.Now()
		deny, err = p.s.send(ctx, 0, p.t)
		_ = p.rtt.RecordValue(micros(time.Since(sent)))
		return deny, sent, err
	}
	// Arm: the node must show the old state first, or the flip would not be observed.
	for {
		deny, sent, err := check()
		if err == nil && deny != job.want {
			r.lastOld = sent
			break
		}
		if ctx.Err() != nil {
			job.armed <- fmt.Errorf("%s never showed the state before the write: %v", p.s.target(0), err)
			return pollResult{err: errors.New("not armed")}
		}
		time.Sleep(time.Millisecond)
	}
	job.armed <- nil
	for {
		deny, sent, err := check()
		switch {
		case err != nil:
			if ctx.Err() != nil {
				r.err = fmt.Errorf("%s did not answer %s within the bound: %v", p.s.target(0), verdict(job.want), err)
				return r
			}
		case deny == job.want:
			r.flipped = time.Now()
			return r
		default:
			r.lastOld = sent
		}
		if job.interval > 0 {
			time.Sleep(job.interval)
		}
	}
}

// RunPropagation deactivates and reactivates one org through the admin API, Iterations times, and measures
// when each node's Check flips. It returns an error wrapping ErrCorrectness if a node answered the old state to
// a check sent after the admin confirmed the write, or never flipped.
func RunPropagation(ctx context.Context, cfg PropagationConfig) (*PropagationReport, error) {
	if cfg.Iterations <= 0 {
		cfg.Iterations = 200
	}
	switch cfg.API {
	case "", APINative:
		cfg.API = APINative
	case APIZitadel:
	default:
		return nil, fmt.Errorf("propagation: API %q: want %s or %s", cfg.API, APINative, APIZitadel)
	}
	if cfg.MaxDuration <= 0 {
		cfg.MaxDuration = 2 * time.Minute
	}
	if cfg.PollInterval == 0 {
		cfg.PollInterval = 200 * time.Microsecond
	}
	cfg.PollInterval = max(cfg.PollInterval, 0)
	if cfg.NodeTimeout <= 0 {
		cfg.NodeTimeout = 5 * time.Second
	}
	if cfg.RunID == "" {
		cfg.RunID = newRunID()
	}
	dep, done, err := deploymentOrLocal(ctx, cfg.Deployment, cfg.Dir, cfg.Deactd, "propagation", cfg.Progress)
	if err != nil {
		return nil, err
	}
	defer done()
	if len(dep.AuthzAddrs) == 0 {
		return nil, errors.New("propagation: no gateway ext_authz address")
	}
	ac, err := newAdminClient(dep.AdminURL, dep.AdminToken, 2, 2*time.Second)
	if err != nil {
		return nil, err
	}
	defer ac.Close()
	if err := waitNodes(ctx, ac, len(dep.AuthzAddrs)); err != nil {
		return nil, err
	}
	write := setOrg
	if cfg.API == APIZitadel {
		z := newZitadelWriter(dep.AdminURL, dep.AdminToken, 2*time.Second)
		defer z.close()
		write = func(ctx context.Context, _ *adminapi.Client, id string, deactivate bool) (adminapi.WriteResult, error) {
			return z.setOrg(ctx, id, deactivate)
		}
	}

	m := newModel(cfg.RunID+"-prop", 1, 0, 0, 1)
	var obs *etcdObserver
	if len(dep.EtcdEndpoints) > 0 {
		if obs, err = newEtcdObserver(ctx, dep.EtcdEndpoints, len(dep.AuthzAddrs), cfg.RunID, state.OrgKey(m.orgs[0].id)); err != nil {
			return nil, err
		}
		defer obs.close()
	}
	t := &template{kind: kindLogin, org: 0, app: -1}
	t.grpc, t.header = m.requests(t, "")
	var pollers []*poller
	for _, addr := range dep.AuthzAddrs {
		s, err := newGRPCSender([]string{addr}, 1)
		if err != nil {
			return nil, err
		}
		defer s.close()
		pollers = append(pollers, &poller{s: s, t: t, rtt: newTotalHist()})
	}

	n := len(pollers)
	rep := &PropagationReport{Deployment: dep.Desc, API: cfg.API, Nodes: n, Iterations: cfg.Iterations, GoalP99Ms: GoalPropagationP99Ms,
		PollPauseMs: float64(cfg.PollInterval.Microseconds()) / 1000}
	all, allAck := newSampleSet(cfg.Iterations), newSampleSet(0)
	ackTimes, waits, bracket := newSampleSet(0), newSampleSet(0), newSampleSet(0)
	floor, floorAck, committed, reported := newSampleSet(0), newSampleSet(0), newSampleSet(0), newSampleSet(0)
	perNode := make([]*sampleSet, n)
	perNodeAck := make([]*sampleSet, n)
	for i := range perNode {
		perNode[i], perNodeAck[i] = newSampleSet(cfg.Iterations), newSampleSet(0)
	}
	example := func(format string, args ...any) {
		if len(rep.Examples) < maxExamples {
			rep.Examples = append(rep.Examples, fmt.Sprintf(format, args...))
		}
	}

	ctx, cancel := context.WithTimeout(ctx, cfg.MaxDuration)
	defer cancel()
	lastProgress := time.Now()
	deactivated := false
	for it := 0; it < cfg.Iterations && ctx.Err() == nil; it++ {
		want := !deactivated
		armed := make(chan error, n)
		results := make([]pollResult, n)
		var wg sync.WaitGroup
		ictx, icancel := context.WithCancel(ctx)
		job := pollJob{want: want, interval: cfg.PollInterval, armed: armed, deadline: time.Now().Add(cfg.NodeTimeout + time.Second)}
		for i, p := range pollers {
			wg.Add(1)
			go func() { defer wg.Done(); results[i] = p.poll(ictx, job) }()
		}
		var armErr error
		for range n {
			if err := <-armed; err != nil {
				armErr = err
			}
		}
		if armErr != nil {
			icancel()
			wg.Wait()
			rep.Failed++
			example("write %d: %v", it, armErr)
			break
		}
		if obs != nil {
			// The floor under the same load as the write: the nodes are being polled meanwhile.
			f, err := obs.measureFloor(ctx, it, cfg.NodeTimeout)
			if err != nil {
				icancel()
				wg.Wait()
				rep.Failed++
				example("write %d: %v", it, err)
				break
			}
			floor.add(f.all)
			floorAck.add(f.ack)
		}
		start := time.Now()
		a, err := write(ctx, ac, m.orgs[0].id, want)
		ack := time.Now()
		if err != nil {
			icancel()
			wg.Wait()
			rep.Failed++
			example("write %d: %v", it, err)
			break
		}
		wg.Wait()
		icancel()
		if obs != nil {
			rev := a.Revision
			if rev == 0 {
				rep.Failed++
				example("write %d: no revision in the answer %+v", it, a)
				break
			}
			st, err := obs.stages(ctx, start, rev, n, cfg.NodeTimeout)
			if err != nil {
				rep.Failed++
				example("write %d: %v", it, err)
				break
			}
			committed.add(st.committed)
			if st.recorded {
				reported.add(st.reported)
			}
		}
		deactivated = want
		if !confirmedByAll(a.Confirmation) {
			rep.Unconfirmed++
			example("write %d confirmed by %d/%d nodes", it, a.Confirmation.Confirmed, a.Confirmation.Total)
		}
		ackTimes.add(ack.Sub(start))
		waits.add(time.Duration(a.Confirmation.WaitedMs * float64(time.Millisecond)))
		var slowest, slowestAck, slowestBracket time.Duration
		ok := true
		for i, r := range results {
			if r.err != nil {
				ok = false
				rep.Failed++
				example("write %d: %v", it, r.err)
				continue
			}
			if confirmedByAll(a.Confirmation) && r.lastOld.After(ack) {
				rep.StaleAfterAck++
				example("write %d: %s answered %s to a check sent %s after the confirmed ack", it, pollers[i].s.target(0),
					verdict(!want), r.lastOld.Sub(ack))
			}
			d, da := r.flipped.Sub(start), max(r.flipped.Sub(ack), 0)
			perNode[i].add(d)
			perNodeAck[i].add(da)
			if d > slowest {
				slowestBracket = r.flipped.Sub(r.lastOld)
			}
			slowest, slowestAck = max(slowest, d), max(slowestAck, da)
		}
		if ok {
			all.add(slowest)
			allAck.add(slowestAck)
			bracket.add(slowestBracket)
			rep.Completed++
		}
		if cfg.Progress != nil && time.Since(lastProgress) >= time.Second {
			lastProgress = time.Now()
			p := all.percentiles()
			fmt.Fprintf(cfg.Progress, "%-24s %4d/%d writes  all nodes p50 %6.2fms  p99 %6.2fms  max %6.2fms  stale-after-ack %d  failed %d\n",
				"propagation", it+1, cfg.Iterations, p.P50Ms, p.P99Ms, p.MaxMs, rep.StaleAfterAck, rep.Failed)
		}
	}
	rep.FromWrite, rep.FromAck = all.percentiles(), allAck.percentiles()
	rep.AdminAck, rep.ConfirmWait = ackTimes.percentiles(), waits.percentiles()
	rtt := newTotalHist()
	for i, p := range pollers {
		rtt.Merge(p.rtt)
		rep.PerNode = append(rep.PerNode, NodePropagation{Addr: p.s.target(0), FromWrite: perNode[i].percentiles(), FromAck: perNodeAck[i].percentiles()})
		rep.PerNodeSamplesMs = append(rep.PerNodeSamplesMs, msOf(perNode[i].samples()))
	}
	rep.PollRTT, rep.Bracket = percentilesOf(rtt), bracket.percentiles()
	rep.Floor, rep.FloorAck, rep.Committed, rep.Reported = floor.percentiles(), floorAck.percentiles(), committed.percentiles(), reported.percentiles()
	if f := rep.Floor; f.Count > 0 {
		rep.DeniedVsFloorP99, rep.AnswerVsFloorP99 = rep.FromWrite.P99Ms/f.P99Ms, rep.AdminAck.P99Ms/f.P99Ms
		rep.DeniedVsFloorP50, rep.AnswerVsFloorP50 = rep.FromWrite.P50Ms/f.P50Ms, rep.AdminAck.P50Ms/f.P50Ms
	}
	rep.SamplesMs = msOf(all.samples())
	if ctx.Err() != nil && rep.Completed < cfg.Iterations {
		example("stopped after %d of %d writes: %v", rep.Completed, cfg.Iterations, ctx.Err())
	}
	return rep, rep.err()
}

// writeRevision is the etcd revision a write's answer reports: the native API's revision, ZITADEL's
// details.sequence (a string, as uint64s are in ZITADEL's JSON); 0 if it has none.
func writeRevision(body []byte) int64 {
	var w struct {
		Revision int64 `json:"revision"`
		Details  struct {
			Sequence int64 `json:"sequence,string"`
		} `json:"details"`
	}
	if json.Unmarshal(body, &w) != nil {
		return 0
	}
	return max(w.Revision, w.Details.Sequence)
}

func msOf(ds []time.Duration) []float64 {
	out := make([]float64, len(ds))
	for i, d := range ds {
		out[i] = float64(d.Microseconds()) / 1000
	}
	return out
}
