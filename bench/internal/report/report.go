// Package report gathers the measurements of every suite into one table: on the terminal, as a
// Markdown results file with the machine they came from, and as a PNG plot.
package report

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/txconsume/txconsume/bench/internal/benchenv"
)

// Row is one measured case: a throughput per repetition and, where measured, latencies.
type Row struct {
	// Suite groups rows in the table and the plot ("broker", "database", "dedup table").
	Suite string
	// Case names what ran, unique within the suite ("hot / exactly-once batch 16").
	Case string
	// Baseline is the Case of the row in the same suite that this one is compared with; "" for none.
	Baseline string
	// Rates holds messages per second, one per repetition, in the order they ran. Candidates and
	// baselines run interleaved, so Rates[i] of both were measured side by side.
	Rates []float64
	// P50 and P99 are latencies (born timestamp to commit, for the broker suite); 0: not measured.
	P50, P99 time.Duration
	// Note is a short remark shown beside the numbers (duplicates applied, retries, ...).
	Note string
}

// Median returns the median rate.
func (r Row) Median() float64 { return median(r.Rates) }

// Results is everything one run measured.
type Results struct {
	Machine benchenv.Machine
	Rows    []Row
	// Notes are printed under the table: what ran, what loaded the machine.
	Notes []string
}

// Add appends rows.
func (res *Results) Add(rows ...Row) { res.Rows = append(res.Rows, rows...) }

// Find returns the row of suite and case.
func (res *Results) Find(suite, name string) (Row, bool) {
	for _, r := range res.Rows {
		if r.Suite == suite && r.Case == name {
			return r, true
		}
	}
	return Row{}, false
}

// Ratio is a candidate's throughput over its baseline's: the median of the per-repetition ratios
// and their range.
type Ratio struct {
	Median, Min, Max float64
	OK               bool
}

// RatioOf compares r with its baseline.
func (res *Results) RatioOf(r Row) Ratio {
	if r.Baseline == "" {
		return Ratio{}
	}
	b, ok := res.Find(r.Suite, r.Baseline)
	if !ok || len(b.Rates) == 0 || len(r.Rates) == 0 {
		return Ratio{}
	}
	var ratios []float64
	if len(b.Rates) == len(r.Rates) {
		for i := range r.Rates {
			if b.Rates[i] > 0 {
				ratios = append(ratios, r.Rates[i]/b.Rates[i])
			}
		}
	} else if m := b.Median(); m > 0 {
		for _, x := range r.Rates {
			ratios = append(ratios, x/m)
		}
	}
	if len(ratios) == 0 {
		return Ratio{}
	}
	return Ratio{Median: median(ratios), Min: slices.Min(ratios), Max: slices.Max(ratios), OK: true}
}

func (q Ratio) String() string {
	if !q.OK {
		return ""
	}
	if q.Min == q.Max {
		return fmt.Sprintf("%.2fx", q.Median)
	}
	return fmt.Sprintf("%.2fx (%.2f-%.2f)", q.Median, q.Min, q.Max)
}

// WriteTable prints the table for a terminal: cases left-aligned, numbers right-aligned.
func (res *Results) WriteTable(w io.Writer) {
	width := 0
	for _, r := range res.Rows {
		width = max(width, len(r.Case))
	}
	suite := ""
	for _, r := range res.Rows {
		if r.Suite != suite {
			suite = r.Suite
			fmt.Fprintf(w, "\n%-*s %8s %13s  %-16s %19s %8s %8s  %s\n", width, strings.ToUpper(suite),
				"msgs/s", "range", "vs", "ratio (range)", "p50 ms", "p99 ms", "note")
		}
		fmt.Fprintf(w, "%-*s %8s %13s  %-16s %19s %8s %8s  %s\n", width, r.Case, rate(r.Median()), spread(r.Rates),
			shortBaseline(r), res.RatioOf(r), ms(r.P50), ms(r.P99), r.Note)
	}
	fmt.Fprintln(w)
	for _, n := range res.Notes {
		fmt.Fprintln(w, n)
	}
}

// shortBaseline names the baseline by what differs from the case: "bare" for
// "X/conc=16/bare" beside "X/conc=16/process".
func shortBaseline(r Row) string {
	b := r.Baseline
	i := 0
	for i < len(b) && i < len(r.Case) && b[i] == r.Case[i] {
		i++
	}
	if j := strings.LastIndexAny(b[:i], "/,"); j >= 0 && j+1 < len(b) {
		return strings.TrimSpace(b[j+1:])
	}
	return b
}

// WriteMarkdown writes the results file: the machine, then one table per suite.
func (res *Results) WriteMarkdown(w io.Writer, title string) {
	m := res.Machine
	fmt.Fprintf(w, "# %s\n\n", title)
	fmt.Fprintf(w, "Written by `make bench`; each number is the median of the repetitions, with their range.\n")
	fmt.Fprintf(w, "Ratios compare each case with its baseline run beside it (interleaved, same database, same run).\n\n")
	fmt.Fprintf(w, "## Machine\n\n")
	fmt.Fprintf(w, "| | |\n| --- | --- |\n")
	for _, kv := range [][2]string{
		{"date", m.Date}, {"CPU", fmt.Sprintf("%s, %d cores", m.CPU, m.Cores)},
		{"memory", fmt.Sprintf("%d GiB", m.MemoryGiB)}, {"OS", m.OS}, {"Go", m.Go},
		{"database", m.Database}, {"InnoDB buffer pool", m.BufferPool}, {"RocketMQ", m.RocketMQ},
		{"load average before / after", m.LoadBefore + " / " + m.LoadAfter}, {"other load", m.OtherLoad},
	} {
		if kv[1] != "" && kv[1] != " / " {
			fmt.Fprintf(w, "| %s | %s |\n", kv[0], kv[1])
		}
	}
	suite := ""
	for _, r := range res.Rows {
		if r.Suite != suite {
			suite = r.Suite
			fmt.Fprintf(w, "\n## %s\n\n", suite)
			fmt.Fprintf(w, "| case | msgs/s | range | baseline | ratio | p50 ms | p99 ms | note |\n")
			fmt.Fprintf(w, "| --- | ---: | ---: | --- | ---: | ---: | ---: | --- |\n")
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s | %s | %s |\n", r.Case, rate(r.Median()), spread(r.Rates),
			shortBaseline(r), res.RatioOf(r), ms(r.P50), ms(r.P99), r.Note)
	}
	if len(res.Notes) > 0 {
		fmt.Fprintln(w)
		for _, n := range res.Notes {
			fmt.Fprintf(w, "%s\n", n)
		}
	}
}

func rate(x float64) string {
	if x == 0 {
		return ""
	}
	return fmt.Sprintf("%.0f", x)
}

func spread(xs []float64) string {
	if len(xs) < 2 {
		return ""
	}
	return fmt.Sprintf("%.0f-%.0f", slices.Min(xs), slices.Max(xs))
}

func ms(d time.Duration) string {
	if d == 0 {
		return ""
	}
	return fmt.Sprintf("%.1f", float64(d)/float64(time.Millisecond))
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
