package report_test

import (
	"bytes"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/txconsume/txconsume/bench/internal/benchenv"
	"github.com/txconsume/txconsume/bench/internal/report"
)

func results() *report.Results {
	res := &report.Results{Machine: benchenv.Machine{Date: "2026-01-02 03:04 UTC", CPU: "test CPU", Cores: 2,
		MemoryGiB: 24, Database: "10.11.19-MariaDB", BufferPool: "128 MiB"}}
	res.Add(
		report.Row{Suite: "broker", Case: "hot / at-least-once", Rates: []float64{100, 200, 300},
			P50: 5 * time.Millisecond, P99: 40 * time.Millisecond},
		report.Row{Suite: "broker", Case: "hot / exactly-once", Baseline: "hot / at-least-once",
			Rates: []float64{110, 180, 360}, P50: 6 * time.Millisecond, P99: 55500 * time.Microsecond, Note: "3 splits"},
		report.Row{Suite: "database", Case: "Batch32/bare", Rates: []float64{1000}},
		report.Row{Suite: "database", Case: "Batch32/process-batch", Baseline: "Batch32/bare", Rates: []float64{900}},
		report.Row{Suite: "database", Case: "Batch32/orphan", Baseline: "Batch32/missing", Rates: []float64{5}},
	)
	res.Notes = []string{"broker: a note under the table"}
	return res
}

func TestRatioOf(t *testing.T) {
	res := results()
	row := func(name string) report.Row {
		r, ok := res.Find("broker", name)
		if !ok {
			r, ok = res.Find("database", name)
		}
		require.True(t, ok, name)
		return r
	}

	t.Run("paired repetitions: the median of the per-repetition ratios and their range", func(t *testing.T) {
		q := res.RatioOf(row("hot / exactly-once"))
		require.True(t, q.OK)
		require.InDelta(t, 1.1, q.Median, 1e-9, "ratios 1.1, 0.9, 1.2")
		require.InDelta(t, 0.9, q.Min, 1e-9)
		require.InDelta(t, 1.2, q.Max, 1e-9)
		require.Equal(t, "1.10x (0.90-1.20)", q.String())
	})
	t.Run("a single repetition has no range", func(t *testing.T) {
		require.Equal(t, "0.90x", res.RatioOf(row("Batch32/process-batch")).String())
	})
	t.Run("unequal repetitions compare each with the baseline's median", func(t *testing.T) {
		r := report.Row{Suite: "broker", Case: "x", Baseline: "hot / at-least-once", Rates: []float64{100, 400}}
		q := res.RatioOf(r)
		require.True(t, q.OK)
		require.InDelta(t, 0.5, q.Min, 1e-9)
		require.InDelta(t, 2.0, q.Max, 1e-9)
	})
	t.Run("no baseline, or one that did not run: no ratio", func(t *testing.T) {
		require.False(t, res.RatioOf(row("hot / at-least-once")).OK)
		require.False(t, res.RatioOf(row("Batch32/orphan")).OK)
		require.Empty(t, res.RatioOf(row("Batch32/orphan")).String())
	})
	t.Run("median of an even count is the mean of the middle two", func(t *testing.T) {
		require.InDelta(t, 250, report.Row{Rates: []float64{400, 100, 300, 200}}.Median(), 1e-9)
		require.Zero(t, report.Row{}.Median())
	})
}

func TestWriteTable(t *testing.T) {
	var b bytes.Buffer
	results().WriteTable(&b)
	out := b.String()
	lines := strings.Split(out, "\n")
	find := func(prefix string) string {
		for _, l := range lines {
			if strings.HasPrefix(l, prefix) {
				return l
			}
		}
		t.Fatalf("no line starts with %q in:\n%s", prefix, out)
		return ""
	}
	require.Contains(t, out, "BROKER")
	require.Contains(t, out, "DATABASE")
	l := find("hot / exactly-once ")
	for _, want := range []string{" 180 ", "110-360", "at-least-once", "1.10x (0.90-1.20)", "6.0", "55.5", "3 splits"} {
		require.Contains(t, l, want)
	}
	require.Contains(t, find("Batch32/process-batch "), "bare", "the baseline named by what differs")
	require.Contains(t, out, "broker: a note under the table")
}

func TestWriteMarkdown(t *testing.T) {
	var b bytes.Buffer
	results().WriteMarkdown(&b, "txconsume benchmarks")
	out := b.String()
	require.True(t, strings.HasPrefix(out, "# txconsume benchmarks\n"))
	for _, want := range []string{
		"| date | 2026-01-02 03:04 UTC |",
		"| CPU | test CPU, 2 cores |",
		"| InnoDB buffer pool | 128 MiB |",
		"## broker",
		"## database",
		"| hot / exactly-once | 180 | 110-360 | at-least-once | 1.10x (0.90-1.20) | 6.0 | 55.5 | 3 splits |",
		"| Batch32/process-batch | 900 |  | bare | 0.90x |  |  |  |",
		"broker: a note under the table",
	} {
		require.Contains(t, out, want)
	}
	require.NotContains(t, out, "| RocketMQ |", "machine facts not known are left out")
}

func TestWritePNG(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bench.png")
	require.NoError(t, results().WritePNG(path, "txconsume benchmarks"))
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	img, err := png.Decode(f)
	require.NoError(t, err)
	require.Greater(t, img.Bounds().Dx(), 100)
	require.Greater(t, img.Bounds().Dy(), 100)

	require.Error(t, (&report.Results{}).WritePNG(filepath.Join(t.TempDir(), "empty.png"), "none"),
		"nothing to plot")
}
