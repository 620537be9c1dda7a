package gobench_test

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/txconsume/txconsume/bench/internal/gobench"
	"github.com/txconsume/txconsume/bench/internal/report"
)

// output is `go test -bench` output of two rounds (make bench runs -count 1 several times), with
// the lines a run prints around the benchmarks.
const output = `goos: linux
goarch: amd64
pkg: github.com/txconsume/txconsume/txconsume
cpu: Intel(R) Xeon(R) Processor
BenchmarkPerMessage/conc=16/bare-2         	    4000	    500000 ns/op	      2000 msgs/s
BenchmarkPerMessage/conc=16/process-2      	    3000	    600000 ns/op	      1600 msgs/s	       4.5 p50-ms	      12.25 p99-ms
BenchmarkBatch32/baseline-2                	     100	  10000000 ns/op	      3200 msgs/s
BenchmarkBatch32/process-batch-2           	     100	  12000000 ns/op	      2400 msgs/s
BenchmarkInterleaved-2                     	     100	  10000000 ns/op	       900.0 bare-msgs/s	       810.0 process-msgs/s
BenchmarkNoRate-2                          	    1000	   1000000 ns/op
PASS
ok  	github.com/txconsume/txconsume/txconsume	20.1s
BenchmarkPerMessage/conc=16/bare-2         	    4000	    500000 ns/op	      1000 msgs/s
BenchmarkPerMessage/conc=16/process-2      	    3000	    600000 ns/op	      1000 msgs/s	       6.5 p50-ms	      10 p99-ms
BenchmarkBatch32/baseline-2                	     100	  10000000 ns/op	      3000 msgs/s
BenchmarkBatch32/process-batch-2           	     100	  12000000 ns/op	      3000 msgs/s
BenchmarkInterleaved-2                     	     100	  10000000 ns/op	      1000 bare-msgs/s	      1000 process-msgs/s
--- FAIL: BenchmarkBroken
`

func TestParse(t *testing.T) {
	rows, err := gobench.Parse(strings.NewReader(output), "database")
	require.NoError(t, err)
	byCase := map[string]report.Row{}
	var order []string
	for _, r := range rows {
		require.Equal(t, "database", r.Suite)
		byCase[r.Case] = r
		order = append(order, r.Case)
	}

	t.Run("one row per benchmark, in order of first appearance, without the -procs suffix", func(t *testing.T) {
		require.Equal(t, []string{
			"PerMessage/conc=16/bare", "PerMessage/conc=16/process",
			"Batch32/baseline", "Batch32/process-batch",
			"Interleaved/bare", "Interleaved/process",
		}, order, "benchmarks without msgs/s are left out")
	})

	t.Run("one rate per repetition", func(t *testing.T) {
		require.Equal(t, []float64{2000, 1000}, byCase["PerMessage/conc=16/bare"].Rates)
		require.Equal(t, []float64{1600, 1000}, byCase["PerMessage/conc=16/process"].Rates)
		require.Equal(t, []float64{900, 1000}, byCase["Interleaved/bare"].Rates)
		require.Equal(t, []float64{810, 1000}, byCase["Interleaved/process"].Rates)
	})

	t.Run("a sibling named bare or baseline is the baseline; baselines have none", func(t *testing.T) {
		require.Equal(t, "PerMessage/conc=16/bare", byCase["PerMessage/conc=16/process"].Baseline)
		require.Equal(t, "Batch32/baseline", byCase["Batch32/process-batch"].Baseline)
		require.Equal(t, "Interleaved/bare", byCase["Interleaved/process"].Baseline)
		require.Empty(t, byCase["PerMessage/conc=16/bare"].Baseline)
		require.Empty(t, byCase["Batch32/baseline"].Baseline)
	})

	t.Run("latencies are the worst over the repetitions", func(t *testing.T) {
		r := byCase["PerMessage/conc=16/process"]
		require.Equal(t, 6500*time.Microsecond, r.P50)
		require.Equal(t, 12250*time.Microsecond, r.P99)
		require.Zero(t, byCase["PerMessage/conc=16/bare"].P99)
	})

	t.Run("ratios pair the repetitions", func(t *testing.T) {
		res := report.Results{Rows: rows}
		q := res.RatioOf(byCase["PerMessage/conc=16/process"])
		require.True(t, q.OK)
		require.InDelta(t, 0.9, q.Median, 1e-9, "median of 0.8 and 1.0")
		require.InDelta(t, 0.8, q.Min, 1e-9)
		require.InDelta(t, 1.0, q.Max, 1e-9)
	})
}

func TestParseNothing(t *testing.T) {
	rows, err := gobench.Parse(strings.NewReader("PASS\nok  \tpkg\t0.1s\n"), "database")
	require.NoError(t, err)
	require.Empty(t, rows)
}
