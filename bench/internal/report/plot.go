package report

import (
	"fmt"
	"image/color"
	"os"
	"slices"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

var (
	baselineColor  = color.RGBA{R: 150, G: 150, B: 150, A: 255}
	candidateColor = color.RGBA{R: 31, G: 119, B: 180, A: 255}
	p99Color       = color.RGBA{R: 255, G: 127, B: 14, A: 255}
)

// WritePNG draws one panel per suite (throughput per case, grey for baselines, each candidate
// labelled with its ratio) and one of the broker latencies, stacked, into path.
func (res *Results) WritePNG(path, title string) error {
	var panels []*plot.Plot
	var heights []int
	for _, suite := range res.suites() {
		rows := res.rowsOf(suite)
		p, err := res.throughputPanel(suite, rows)
		if err != nil {
			return err
		}
		panels = append(panels, p)
		heights = append(heights, len(rows))
		var timed []Row
		for _, r := range rows {
			if r.P99 > 0 {
				timed = append(timed, r)
			}
		}
		if len(timed) > 0 {
			lp, err := latencyPanel(suite, timed)
			if err != nil {
				return err
			}
			panels = append(panels, lp)
			heights = append(heights, len(timed)*2)
		}
	}
	if len(panels) == 0 {
		return fmt.Errorf("report: nothing to plot")
	}
	panels[0].Title.Text = title + "\n" + panels[0].Title.Text
	rowHeight := vg.Points(16)
	total := vg.Length(0)
	for _, h := range heights {
		total += vg.Length(h)*rowHeight + vg.Points(90)
	}
	img := vgimg.New(vg.Points(900), total)
	dc := draw.New(img)
	top := dc.Max.Y
	for i, p := range panels {
		h := vg.Length(heights[i])*rowHeight + vg.Points(90)
		c := draw.Crop(dc, 0, 0, top-h-dc.Min.Y, top-dc.Max.Y)
		p.Draw(c)
		top -= h
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(f); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}

func (res *Results) suites() []string {
	var out []string
	seen := map[string]bool{}
	for _, r := range res.Rows {
		if !seen[r.Suite] {
			seen[r.Suite] = true
			out = append(out, r.Suite)
		}
	}
	return out
}

func (res *Results) rowsOf(suite string) []Row {
	var out []Row
	for _, r := range res.Rows {
		if r.Suite == suite {
			out = append(out, r)
		}
	}
	return out
}

func (res *Results) throughputPanel(suite string, rows []Row) (*plot.Plot, error) {
	p := plot.New()
	p.Title.Text = suite + ": messages per second (median; label: ratio to baseline)"
	p.X.Label.Text = "msgs/s"
	labels := make([]string, len(rows))
	var base, cand plotter.Values
	var basePos, candPos []float64
	var texts plotter.XYLabels
	for i, r := range rows {
		// Top to bottom in table order: the plot's y axis grows upwards.
		y := float64(len(rows) - 1 - i)
		labels[len(rows)-1-i] = r.Case
		isBase := r.Baseline == ""
		if isBase {
			base = append(base, r.Median())
			basePos = append(basePos, y)
		} else {
			cand = append(cand, r.Median())
			candPos = append(candPos, y)
		}
		if q := res.RatioOf(r); q.OK {
			texts.XYs = append(texts.XYs, plotter.XY{X: r.Median(), Y: y})
			texts.Labels = append(texts.Labels, fmt.Sprintf(" %.2fx", q.Median))
		}
	}
	for _, s := range []struct {
		v   plotter.Values
		pos []float64
		c   color.Color
	}{{base, basePos, baselineColor}, {cand, candPos, candidateColor}} {
		if len(s.v) == 0 {
			continue
		}
		b, err := newBars(s.v, s.pos, s.c)
		if err != nil {
			return nil, err
		}
		p.Add(b...)
	}
	if err := addLabels(p, texts); err != nil {
		return nil, err
	}
	p.NominalY(labels...)
	p.X.Min = 0
	p.X.Max *= 1.15 // room for the labels
	return p, nil
}

// addLabels adds texts to p, if there are any.
func addLabels(p *plot.Plot, texts plotter.XYLabels) error {
	if len(texts.Labels) == 0 {
		return nil
	}
	l, err := plotter.NewLabels(texts)
	if err != nil {
		return err
	}
	p.Add(l)
	return nil
}

// newBars draws one horizontal bar per value at its own y position (BarChart places bars at
// consecutive positions, so each bar is its own chart at an offset).
func newBars(vals plotter.Values, pos []float64, c color.Color) ([]plot.Plotter, error) {
	var out []plot.Plotter
	for i, v := range vals {
		b, err := plotter.NewBarChart(plotter.Values{v}, vg.Points(11))
		if err != nil {
			return nil, err
		}
		b.Horizontal = true
		b.XMin = pos[i]
		b.Color = c
		b.LineStyle.Width = 0
		out = append(out, b)
	}
	return out, nil
}

func latencyPanel(suite string, rows []Row) (*plot.Plot, error) {
	p := plot.New()
	p.Title.Text = suite + ": latency from born timestamp to commit (p50 blue, p99 orange)"
	p.X.Label.Text = "ms"
	labels := make([]string, len(rows))
	var p50, p99 plotter.Values
	var pos50, pos99 []float64
	for i, r := range rows {
		y := float64(len(rows) - 1 - i)
		labels[len(rows)-1-i] = r.Case
		p50 = append(p50, msf(r.P50))
		p99 = append(p99, msf(r.P99))
		pos50 = append(pos50, y+0.18)
		pos99 = append(pos99, y-0.18)
	}
	// A consumer that collapses (seconds where the others take milliseconds) would flatten every
	// other bar to nothing: bars beyond the scale end there, labelled with their value.
	scale := latencyScale(append(slices.Clone(p50), p99...))
	var texts plotter.XYLabels
	for _, s := range []struct {
		v   plotter.Values
		pos []float64
		c   color.Color
	}{{p50, pos50, candidateColor}, {p99, pos99, p99Color}} {
		for i, v := range s.v {
			if v > scale {
				s.v[i] = scale
				texts.XYs = append(texts.XYs, plotter.XY{X: scale, Y: s.pos[i]})
				texts.Labels = append(texts.Labels, fmt.Sprintf(" %.0f ms, off scale", v))
			}
		}
		b, err := newBars(s.v, s.pos, s.c)
		if err != nil {
			return nil, err
		}
		for _, x := range b {
			x.(*plotter.BarChart).Width = vg.Points(6)
		}
		p.Add(b...)
	}
	if err := addLabels(p, texts); err != nil {
		return nil, err
	}
	p.NominalY(labels...)
	p.X.Min = 0
	p.X.Max = scale * 1.3 // room for the labels
	return p, nil
}

// latencyScale is where the latency axis ends: the largest value that is no more than ten times
// the median of all of them.
func latencyScale(ms []float64) float64 {
	sorted := slices.Sorted(slices.Values(ms))
	limit := 10 * sorted[len(sorted)/2]
	scale := 0.0
	for _, v := range sorted {
		if v <= limit || limit == 0 {
			scale = v
		}
	}
	if scale == 0 {
		return 1
	}
	return scale
}

func msf(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
