package bench

import (
	"fmt"
	"path/filepath"
	"strconv"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
)

// PlotLags draws the distribution of the detection lags of each subject of the
// real-time phase, as cumulative curves on a log scale, into dir/lag.png. It returns
// the path, or "" when there is nothing to draw.
func (res *Results) PlotLags(dir string) (string, error) {
	var lines []any
	lo := 1e9
	for _, r := range res.Realtime {
		if len(r.Lags) == 0 {
			continue
		}
		// At most a thousand points a curve: the quantiles, evenly spaced.
		n := min(len(r.Lags), 1000)
		pts := make(plotter.XYs, n)
		for i := range pts {
			k := i * (len(r.Lags) - 1) / max(n-1, 1)
			pts[i].X = max(ms(r.Lags[k]), 0.001) // a log scale has no zero
			pts[i].Y = float64(k+1) / float64(len(r.Lags)) * 100
			lo = min(lo, pts[i].X)
		}
		lines = append(lines, fmt.Sprintf("%s (p50 %.2f, p99 %.2f ms)", names[r.Subject], ms(r.LagP50), ms(r.LagP99)), pts)
	}
	if len(lines) == 0 {
		return "", nil
	}
	p := plot.New()
	r0 := res.Realtime[0]
	p.Title.Text = fmt.Sprintf("Detection lag: %s live calls, %.0f events/s", thousands(int64(r0.Calls)), r0.EventsPerSec())
	p.X.Label.Text = "hang received - true deadline (ms, log scale)"
	p.Y.Label.Text = "% of hangs detected within"
	p.X.Scale, p.X.Tick.Marker = plot.LogScale{}, plot.LogTicks{Prec: -1}
	p.X.Min = lo
	p.Y.Min, p.Y.Max = 0, 100
	p.Add(plotter.NewGrid())
	p.Legend.Top, p.Legend.Left = false, false
	if err := plotutil.AddLines(p, lines...); err != nil {
		return "", fmt.Errorf("plot: %w", err)
	}
	path := filepath.Join(dir, "lag.png")
	if err := p.Save(8*vg.Inch, 5*vg.Inch, path); err != nil {
		return "", fmt.Errorf("plot: %w", err)
	}
	return path, nil
}

// thousands formats n with commas: 1,000,000.
func thousands(n int64) string {
	s := strconv.FormatInt(n, 10)
	for i := len(s) - 3; i > 0 && s[i-1] != '-'; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}
