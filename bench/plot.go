package bench

import (
	"fmt"
	"path/filepath"
	"slices"

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
			[]namedTimeline{{"writes", r.Admin.Timeline}})
		if err != nil {
			return err
		}
		if err := save(p, "admin-latency.png"); err != nil {
			return err
		}
	}
	return nil
}

type namedTimeline struct {
	name string
	tl   []Window
}

func checkPlot(c *CheckReport) (*plot.Plot, error) {
	var tls []namedTimeline
	for _, r := range c.Runs {
		tls = append(tls, namedTimeline{r.Name, r.Timeline})
	}
	title := fmt.Sprintf("check (%s, %s loop, %d workers): latency per second", c.Transport, c.Loop, c.Workers)
	if c.Loop == "open" {
		title = fmt.Sprintf("check (%s, open loop %.0f/s, from intended send time): latency per second", c.Transport, c.Rate)
	}
	return timelinePlot(title, tls)
}

// timelinePlot draws p50 (solid), p99 (dashed) and, for up to 3 timelines, p99.9 (dotted) per window of each
// timeline, on a log scale.
func timelinePlot(title string, tls []namedTimeline) (*plot.Plot, error) {
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = "seconds since the run started"
	p.Y.Label.Text = "latency (ms, log scale)"
	p.Y.Scale = plot.LogScale{}
	p.Y.Tick.Marker = plot.LogTicks{Prec: -1}
	p.Legend.Top = true
	p.Legend.TextStyle.Font.Size = vg.Points(8)
	p.Add(plotter.NewGrid())
	maxY := 0.0
	type quantile struct {
		name string
		v    func(Window) float64
	}
	qs := []quantile{{"p50", func(w Window) float64 { return w.P50Ms }}, {"p99", func(w Window) float64 { return w.P99Ms }}}
	if len(tls) <= 3 {
		qs = append(qs, quantile{"p99.9", func(w Window) float64 { return w.P999Ms }})
	}
	for i, t := range tls {
		for j, q := range qs {
			var xys plotter.XYs
			for _, w := range t.tl {
				if w.Count > 0 && q.v(w) > 0 {
					xys = append(xys, plotter.XY{X: w.AtS + 0.5, Y: q.v(w)})
					maxY = max(maxY, q.v(w))
				}
			}
			if len(xys) == 0 {
				continue
			}
			l, err := plotter.NewLine(xys)
			if err != nil {
				return nil, err
			}
			l.Color = plotutil.Color(i)
			l.Dashes = plotutil.Dashes(j)
			l.Width = vg.Points(1.2)
			p.Add(l)
			p.Legend.Add(t.name+" "+q.name, l)
		}
	}
	if maxY > 0 {
		p.Y.Max = maxY * 20 // room above the lines for the legend (log scale)
	}
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
