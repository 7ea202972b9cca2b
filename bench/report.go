package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"
)

// Report is everything one deactbench invocation measured; it is written as JSON and summarized for people.
type Report struct {
	Tool        string             `json:"tool"`
	Command     []string           `json:"command"`
	Started     time.Time          `json:"started"`
	TookS       float64            `json:"tookS"`
	Machine     Machine            `json:"machine"`
	Check       []*CheckReport     `json:"check,omitempty"`
	Propagation *PropagationReport `json:"propagation,omitempty"`
	Sync        *SyncReport        `json:"sync,omitempty"`
	Admin       *AdminReport       `json:"admin,omitempty"`
	Fleet       *FleetReport       `json:"fleet,omitempty"`
	Failures    []string           `json:"failures"` // empty when every correctness check passed
	Plots       []string           `json:"plots,omitempty"`
}

// Machine describes where the figures come from.
type Machine struct {
	NumCPU     int    `json:"numCpu"`
	GOMAXPROCS int    `json:"gomaxprocs"`
	Go         string `json:"go"`
	OS         string `json:"os"`
	// CPU is the processor's model name where the system says it (Linux: /proc/cpuinfo): a VM moved to another
	// host changes every absolute figure with no change in the code.
	CPU  string `json:"cpu,omitempty"`
	Note string `json:"note"`
}

// cpuModel is the first "model name" of /proc/cpuinfo, or "" where there is none.
func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return ""
	}
	for line := range strings.Lines(string(b)) {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// NewReport starts a report for the command line args.
func NewReport(args []string) *Report {
	return &Report{
		Tool: "deactbench", Command: args, Started: time.Now(), Failures: []string{},
		Machine: Machine{
			NumCPU: runtime.NumCPU(), GOMAXPROCS: runtime.GOMAXPROCS(0), Go: runtime.Version(), OS: runtime.GOOS + "/" + runtime.GOARCH,
			CPU: cpuModel(),
			Note: fmt.Sprintf("load generator, deact, the null baseline and etcd share this machine's %d CPUs (in-process mode: one Go runtime, GOMAXPROCS=%d; process mode: one process each); "+
				"absolute figures are this machine's, compare ratios from one run", runtime.NumCPU(), runtime.GOMAXPROCS(0)),
		},
	}
}

// Fail records a failure (a mode's error).
func (r *Report) Fail(mode string, err error) {
	if err != nil {
		r.Failures = append(r.Failures, mode+": "+err.Error())
	}
}

// WriteJSON writes the report to path, indented.
func (r *Report) WriteJSON(path string) error {
	r.TookS = time.Since(r.Started).Seconds()
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	if dir := filepath.Dir(path); dir != "" {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// WriteSummary writes the human-readable summary.
func (r *Report) WriteSummary(w io.Writer) {
	fmt.Fprintf(w, "deactbench %s, %s, %s", r.Started.Format(time.RFC3339), r.Machine.OS, r.Machine.Go)
	if r.Machine.CPU != "" {
		fmt.Fprintf(w, ", %d × %s", r.Machine.NumCPU, r.Machine.CPU)
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "note: %s\n", r.Machine.Note)
	for _, c := range r.Check {
		c.writeSummary(w)
	}
	if p := r.Propagation; p != nil {
		p.writeSummary(w)
	}
	if s := r.Sync; s != nil {
		s.writeSummary(w)
	}
	if a := r.Admin; a != nil {
		a.writeSummary(w)
	}
	if f := r.Fleet; f != nil {
		f.writeSummary(w)
	}
	if len(r.Plots) > 0 {
		fmt.Fprintf(w, "\nplots: %s\n", strings.Join(r.Plots, ", "))
	}
	if len(r.Failures) == 0 {
		fmt.Fprintln(w, "\ncorrectness: every answer matched the known state")
	} else {
		fmt.Fprintln(w, "\nFAILED:")
		for _, f := range r.Failures {
			fmt.Fprintf(w, "  %s\n", f)
		}
	}
}

func ms(v float64) string {
	switch {
	case v <= 0.001:
		return "0" // histograms hold 1 µs at least; propagation records a flip before the ack as 0
	case v >= 100:
		return fmt.Sprintf("%.0fms", v)
	case v >= 10:
		return fmt.Sprintf("%.1fms", v)
	}
	return fmt.Sprintf("%.3fms", v)
}

func (c *CheckReport) writeSummary(w io.Writer) {
	load := fmt.Sprintf("closed loop, %d workers", c.Workers)
	if c.Loop == "open" {
		load = fmt.Sprintf("open loop at %.0f/s (latency from the intended send time), up to %d in flight", c.Rate, c.Workers)
	}
	fmt.Fprintf(w, "\ncheck (%s): %s over %d connections, %.0fs per run; %s\n", c.Transport, load, c.Conns, c.DurationS, c.Deployment)
	fmt.Fprintf(w, "  state: %d orgs (%d deactivated), %d apps (%d deactivated); mix %s\n", c.Orgs, c.DeactivatedOrgs, c.Apps, c.DeactivatedApps, c.Mix)
	switch c.Servers {
	case ServersProcess:
		fmt.Fprintf(w, "  servers: process mode, each server in a child process of its own (own Go runtime and GC); the load generator is this process\n")
	case ServersInProcess:
		fmt.Fprintf(w, "  servers: in-process mode, the null server shares the load generator's process (one Go runtime and GC)\n")
	default:
		fmt.Fprintf(w, "  servers: deact given by address\n")
	}
	if c.Baseline != "" {
		fmt.Fprintf(w, "  baseline: %s\n", c.Baseline)
	}
	if c.Pinning != "" {
		fmt.Fprintf(w, "  pinned: %s\n", c.Pinning)
	}
	srvCPU := false
	for _, r := range c.Runs {
		srvCPU = srvCPU || r.ServerCPUPerReqUs > 0
	}
	srvHead := ""
	if srvCPU {
		srvHead = fmt.Sprintf(" %9s", "srv cpu")
	}
	fmt.Fprintf(w, "  %-16s %9s %9s %9s %9s %9s %9s %7s %7s %7s %8s%s %15s\n", "run", "answers/s", "p50", "p90", "p99", "p99.9", "max", "denied", "wrong", "errors", "cpu/req", srvHead, "cores")
	for _, r := range c.Runs {
		denied := "-"
		if r.Requests > 0 {
			denied = fmt.Sprintf("%.1f%%", 100*float64(r.Denied)/float64(r.Requests))
		}
		wrong := "-"
		if r.Verified {
			wrong = fmt.Sprint(r.WrongAllows + r.WrongDenies + r.Warmup.WrongAllows + r.Warmup.WrongDenies)
		}
		l := r.Latency
		cores := fmt.Sprintf("%.2f", r.Cores)
		srvCol := ""
		if srvCPU {
			cores += fmt.Sprintf("+%.2f", r.ServerCores)
			srvCol = fmt.Sprintf(" %7.1fµs", r.ServerCPUPerReqUs)
		}
		if r.OtherCores >= 0 {
			cores += fmt.Sprintf("+%.2f", r.OtherCores)
		}
		fmt.Fprintf(w, "  %-16s %9.0f %9s %9s %9s %9s %9s %7s %7s %7d %6.1fµs%s %15s\n", r.Name, r.Throughput, ms(l.P50Ms), ms(l.P90Ms), ms(l.P99Ms), ms(l.P999Ms), ms(l.MaxMs),
			denied, wrong, r.Errors+r.Warmup.Errors, r.CPUPerReqUs, srvCol, cores)
		if r.Service != nil {
			s := r.Service
			fmt.Fprintf(w, "  %-16s %9s %9s %9s %9s %9s %9s   (service time, not corrected)\n", "", "", ms(s.P50Ms), ms(s.P90Ms), ms(s.P99Ms), ms(s.P999Ms), ms(s.MaxMs))
		}
		if ch := r.Churn; ch != nil {
			fmt.Fprintf(w, "  %-16s churn: %d org flips (%d unconfirmed, %d failed), confirm wait p99 %s; %d answers in write windows not judged\n",
				"", ch.Flips, ch.Unconfirmed, ch.Failed, ms(ch.ConfirmWait.P99Ms), r.Ambiguous)
		}
		for _, e := range r.Examples {
			fmt.Fprintf(w, "  %-16s ! %s\n", "", e)
		}
	}
	if rt := c.Ratio; rt != nil {
		goal := "met"
		if rt.Throughput < GoalThroughputRatio {
			goal = "NOT met"
		}
		if c.Loop == "open" {
			goal = "open loop: throughput is the offered rate; latency ratios are the point"
		}
		rounds := ""
		if len(rt.PerRound) > 1 {
			rounds = fmt.Sprintf(" (median of %d rounds:", len(rt.PerRound))
			for _, v := range rt.PerRound {
				rounds += fmt.Sprintf(" %.3f", v)
			}
			rounds += ")"
		}
		srvRatio := ""
		if rt.ServerCPUPerReq > 0 {
			srvRatio = fmt.Sprintf(", server CPU per answer %.2f×", rt.ServerCPUPerReq)
		}
		fmt.Fprintf(w, "  deact/baseline: throughput %.3f×%s (goal ≥ %.1f×: %s), p50 %.2f×, p99 %.2f×, CPU per answer %.2f×%s\n",
			rt.Throughput, rounds, GoalThroughputRatio, goal, rt.P50, rt.P99, rt.CPUPerReq, srvRatio)
		other := 0.0
		for _, r := range c.Runs {
			other = max(other, r.OtherCores)
		}
		fmt.Fprintf(w, "  baseline last/first throughput %.2f; other processes used up to %.2f cores during a run\n", rt.Drift, other)
		if rt.Drift < 0.9 || rt.Drift > 1.1 || other > 0.2 {
			fmt.Fprintln(w, "  WARNING: the machine's other load changed during the runs: the ratios are unreliable; rerun when it is quiet")
		}
		if srvCPU {
			fmt.Fprintln(w, "  cpu/req: the load generator's CPU per answer; srv cpu: the server process's own CPU per answer; cores: load generator + server + other processes")
		} else {
			fmt.Fprintln(w, "  cpu/req and cores: this process (load generator + in-process server), + other processes on the machine")
		}
	}
}

func (p *PropagationReport) writeSummary(w io.Writer) {
	goal := "met"
	if p.FromWrite.P99Ms > p.GoalP99Ms {
		goal = "NOT met"
	}
	fmt.Fprintf(w, "\npropagation: %d/%d writes (deactivate/reactivate one org, %s API) on %s\n", p.Completed, p.Iterations, p.API, p.Deployment)
	fmt.Fprintf(w, "  %-22s %9s %9s %9s %9s\n", "", "p50", "p90", "p99", "max")
	row := func(name string, q Percentiles) {
		fmt.Fprintf(w, "  %-22s %9s %9s %9s %9s\n", name, ms(q.P50Ms), ms(q.P90Ms), ms(q.P99Ms), ms(q.MaxMs))
	}
	row("all nodes, from write", p.FromWrite)
	for _, n := range p.PerNode {
		row("  "+n.Addr, n.FromWrite)
	}
	row("all nodes, from ack", p.FromAck)
	for _, n := range p.PerNode {
		row("  "+n.Addr, n.FromAck)
	}
	row("admin ack (write→answer)", p.AdminAck)
	row("admin confirm wait", p.ConfirmWait)
	row(fmt.Sprintf("poll RTT (+%gms pause)", p.PollPauseMs), p.PollRTT)
	row("flip bracket (slowest)", p.Bracket)
	if p.Floor.Count > 0 {
		row("write→committed (watch)", p.Committed)
		if p.Reported.Count > 0 {
			row("write→all nodes' records", p.Reported) // gateways on report streams write none per change
		}
		row(fmt.Sprintf("etcd floor: put→watch×%d", p.Nodes), p.Floor)
		row("etcd floor: put→ack", p.FloorAck)
		met := func(r, goal float64) string {
			if r <= goal {
				return "met"
			}
			return "NOT met"
		}
		fmt.Fprintf(w, "  over the etcd floor (same run): all nodes deny p99 %.1f× (p50 %.1f×; goal ≤ %d×: %s), confirmed answer p99 %.1f× (p50 %.1f×; goal ≤ %d×: %s)\n",
			p.DeniedVsFloorP99, p.DeniedVsFloorP50, GoalDeniedVsFloorP99, met(p.DeniedVsFloorP99, GoalDeniedVsFloorP99),
			p.AnswerVsFloorP99, p.AnswerVsFloorP50, GoalAnswerVsFloorP99, met(p.AnswerVsFloorP99, GoalAnswerVsFloorP99))
	} else {
		fmt.Fprintln(w, "  etcd floor: not measured (the deployment's etcd endpoints are not known: --etcd-endpoints)")
	}
	fmt.Fprintf(w, "  goal p99 ≤ %.0fms from write on all nodes: %s; stale answers after a confirmed ack: %d; unconfirmed: %d; failed: %d\n",
		p.GoalP99Ms, goal, p.StaleAfterAck, p.Unconfirmed, p.Failed)
	for _, e := range p.Examples {
		fmt.Fprintf(w, "  ! %s\n", e)
	}
}

func (s *SyncReport) writeSummary(w io.Writer) {
	fmt.Fprintf(w, "\nsync: %d records (%d orgs + domains, %d apps + client IDs) loaded in %.1fs (%.0f/s, fsync off)\n",
		s.Records, s.Orgs, s.Apps, s.LoadS, s.LoadPerS)
	fmt.Fprintf(w, "  fresh deactd --role gateway (child process %s): listening after %.2fs, ready after %.2fs; RSS %.0f MiB (peak %.0f MiB)\n",
		filepath.Base(s.Deactd), s.ListeningS, s.ReadyS, s.RSSMiB, s.PeakRSSMiB)
	if s.SettleS > 0 {
		fmt.Fprintf(w, "  RSS %.0fs after ready: %.0f MiB", s.SettleS, s.SettledMiB)
	}
	fmt.Fprintf(w, "; Go heap in use %.0f MiB (/metrics)\n", s.HeapInuseMiB)
	fmt.Fprintf(w, "  applied revision %d of %d; spot checks %d, wrong %d\n", s.Applied, s.Revision, s.SpotChecks, s.WrongChecks)
	for _, e := range s.Examples {
		fmt.Fprintf(w, "  ! %s\n", e)
	}
}

func (a *AdminReport) writeSummary(w io.Writer) {
	fmt.Fprintf(w, "\nadmin: %d concurrent writers, %.0fs, native API, each write waits for %d/%d confirmation; %s\n",
		a.Concurrency, a.DurationS, a.ExpectNodes, a.ExpectNodes, a.Deployment)
	fmt.Fprintf(w, "  %d writes: %.0f writes/s (%.0f deactivations/s), latency p50 %s p99 %s max %s; confirm wait p50 %s p99 %s\n",
		a.Writes, a.WritesPerS, a.DeactPerS, ms(a.Latency.P50Ms), ms(a.Latency.P99Ms), ms(a.Latency.MaxMs), ms(a.ConfirmWait.P50Ms), ms(a.ConfirmWait.P99Ms))
	fmt.Fprintf(w, "  not %d/%d confirmed: %d; failed: %d\n", a.ExpectNodes, a.ExpectNodes, a.NotConfirmed, a.Errors)
	if len(a.EtcdPerWrite) > 0 {
		keys := slices.Sorted(maps.Keys(a.EtcdPerWrite))
		parts := make([]string, 0, len(keys))
		for _, k := range keys {
			parts = append(parts, fmt.Sprintf("%s %.2f", k, a.EtcdPerWrite[k]))
		}
		fmt.Fprintf(w, "  etcd per write (all members, every client): %s\n", strings.Join(parts, ", "))
	}
	for _, e := range a.Examples {
		fmt.Fprintf(w, "  ! %s\n", e)
	}
}
