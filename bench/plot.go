package bench

import (
	"fmt"
	"path/filepath"
	"slices"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
)

// WritePlots draws the report's plots as PNG files into dir and records their names in the report:
// latency percentiles over time for each check load (one line pair per run), the propagation CDF, and the
// admin write latency over time.
func (r *Report) WritePlots(dir string) error {
	save := func(p *plot.Plot, name string) error {
		path := filepath.Join(dir, name)
		if err := p.Save(22*vg.Centimeter, 13*vg.Centimeter, path); err != nil {
			return fmt.Errorf("plot %s: %w", name, err)
		}
		r.Plots = append(r.Plots, name)
		return nil
	}
	for _, c := range r.Check {
		p, err := checkPlot(c)
		if err != nil {
			return err
		}
		if err := save(p, fmt.Sprintf("check-%s-%s-latency.png", c.Transport, c.Loop)); err != nil {
			return err
		}
	}
	if r.Propagation != nil && len(r.Propagation.SamplesMs) > 0 {
		p, err := propagationPlot(r.Propagation)
		if err != nil {
			return err
		}
		if err := save(p, "propagation-cdf.png"); err != nil {
			return err
		}
	}
	if r.Admin != nil && len(r.Admin.Timeline) > 0 {
		p, err := timelinePlot(fmt.Sprintf("admin writes, %d writers: latency per second", r.Admin.Concurrency),
			"seconds since the run started", []namedTimeline{{name: "writes", tl: r.Admin.Timeline}})
		if err != nil {
			return err
		}
		if err := save(p, "admin-latency.png"); err != nil {
			return err
		}
	}
	return nil
}

// namedTimeline is a run's timeline placed at offset seconds on the plot's time axis; runs of the same group
// share a colour and one legend entry.
type namedTimeline struct {
	name   string
	group  int
	offset float64
	tl     []Window
}

func checkPlot(c *CheckReport) (*plot.Plot, error) {
	var tls []namedTimeline
	var first time.Time
	for i, r := range c.Runs {
		if i == 0 {
			first = r.Started
		}
		group, name := 1, "baseline"
		if r.Verified {
			group, name = 0, "deact"
		}
		tls = append(tls, namedTimeline{name: name, group: group, offset: r.Started.Sub(first).Seconds(), tl: r.Timeline})
	}
	title := fmt.Sprintf("check (%s, closed loop, %d workers): latency per second, runs in order", c.Transport, c.Workers)
	if c.Loop == "open" {
		title = fmt.Sprintf("check (%s, open loop %.0f/s, from intended send time): latency per second, runs in order", c.Transport, c.Rate)
	}
	return timelinePlot(title, "seconds since the first run started (gaps: warm-ups)", tls)
}

// timelinePlot draws p50 (solid), p99 (dashed) and p99.9 (dotted) per window of each timeline, on a log scale,
// one colour per group.
func timelinePlot(title, xlabel string, tls []namedTimeline) (*plot.Plot, error) {
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = xlabel
	p.Y.Label.Text = "latency (ms, log scale)"
	p.Y.Scale = plot.LogScale{}
	p.Y.Tick.Marker = plot.LogTicks{Prec: -1}
	p.Legend.Top = true
	p.Legend.TextStyle.Font.Size = vg.Points(8)
	p.Add(plotter.NewGrid())
	maxY := 0.0
	quantiles := []struct {
		name string
		v    func(Window) float64
	}{{"p50", func(w Window) float64 { return w.P50Ms }}, {"p99", func(w Window) float64 { return w.P99Ms }}, {"p99.9", func(w Window) float64 { return w.P999Ms }}}
	named := map[string]bool{}
	for _, t := range tls {
		for j, q := range quantiles {
			var xys plotter.XYs
			for _, w := range t.tl {
				if w.Count > 0 && q.v(w) > 0 {
					xys = append(xys, plotter.XY{X: t.offset + w.AtS + 0.5, Y: q.v(w)})
					maxY = max(maxY, q.v(w))
				}
			}
			if len(xys) == 0 {
				continue
			}
			l, pts, err := plotter.NewLinePoints(xys)
			if err != nil {
				return nil, err
			}
			l.Color, pts.Color = plotutil.Color(t.group), plotutil.Color(t.group)
			l.Dashes = plotutil.Dashes(j)
			l.Width = vg.Points(1.2)
			pts.Shape = plotutil.Shape(j)
			pts.Radius = vg.Points(2)
			p.Add(l, pts)
			if label := t.name + " " + q.name; !named[label] {
				named[label] = true
				p.Legend.Add(label, l, pts)
			}
		}
	}
	if maxY == 0 {
		// Nothing to draw (a run cut short): a log axis over no positive value makes gonum panic.
		p.Title.Text += " (no samples)"
		p.Y.Scale, p.Y.Tick.Marker = plot.LinearScale{}, plot.DefaultTicks{}
		p.Y.Min, p.Y.Max = 0, 1
		return p, nil
	}
	p.Y.Max = maxY * 20 // room above the lines for the legend (log scale)
	return p, nil
}

// propagationPlot draws the CDF of the time from write to flip, per node and for all nodes (the slowest).
func propagationPlot(r *PropagationReport) (*plot.Plot, error) {
	p := plot.New()
	p.Title.Text = fmt.Sprintf("propagation: admin write → check flips (%d writes, %d nodes)", r.Completed, r.Nodes)
	p.X.Label.Text = "ms since the write was sent"
	p.Y.Label.Text = "fraction of writes"
	p.Y.Min, p.Y.Max = 0, 1
	p.Legend.Top = false
	p.Legend.Left = false
	p.Legend.TextStyle.Font.Size = vg.Points(8)
	p.Add(plotter.NewGrid())
	series := []struct {
		name string
		ms   []float64
	}{{"all nodes (slowest)", r.SamplesMs}}
	for i, s := range r.PerNodeSamplesMs {
		series = append(series, struct {
			name string
			ms   []float64
		}{r.PerNode[i].Addr, s})
	}
	for i, s := range series {
		if len(s.ms) == 0 {
			continue
		}
		v := slices.Clone(s.ms)
		slices.Sort(v)
		xys := make(plotter.XYs, 0, 2*len(v))
		for k, x := range v {
			xys = append(xys, plotter.XY{X: x, Y: float64(k) / float64(len(v))}, plotter.XY{X: x, Y: float64(k+1) / float64(len(v))})
		}
		l, err := plotter.NewLine(xys)
		if err != nil {
			return nil, err
		}
		l.Color = plotutil.Color(i)
		l.Width = vg.Points(1.2)
		if i == 0 {
			l.Width = vg.Points(2)
		}
		p.Add(l)
		p.Legend.Add(s.name, l)
	}
	goal, err := plotter.NewLine(plotter.XYs{{X: r.GoalP99Ms, Y: 0}, {X: r.GoalP99Ms, Y: 1}})
	if err != nil {
		return nil, err
	}
	goal.Dashes = plotutil.Dashes(2)
	p.Add(goal)
	p.Legend.Add(fmt.Sprintf("goal p99 %.0f ms", r.GoalP99Ms), goal)
	p.X.Min, p.X.Max = 0, max(p.X.Max, 1.1*r.GoalP99Ms)
	return p, nil
}
