// Package gobench reads the output of `go test -bench` into report rows, pairing each benchmark
// with its baseline by name: within one parent, the sub-benchmark named "bare" (or "baseline")
// is the baseline of its siblings. A benchmark reports its throughput as the custom metric
// "msgs/s" (b.ReportMetric) and may report latencies as "p50-ms" and "p99-ms". A benchmark that
// measures several variants itself, interleaved, reports each as "<variant>-msgs/s": each becomes
// the row <benchmark>/<variant>. Benchmarks without either are left out.
package gobench

import (
	"bufio"
	"io"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/txconsume/txconsume/bench/internal/report"
)

var procsSuffix = regexp.MustCompile(`-\d+$`)

// baselineNames are the last path elements that make a benchmark its siblings' baseline.
var baselineNames = []string{"bare", "baseline"}

// Parse reads `go test -bench` output and returns one row per benchmark name, in the order of
// first appearance, with one rate per repetition (-count).
func Parse(r io.Reader, suite string) ([]report.Row, error) {
	var order []string
	rows := map[string]*report.Row{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 4 || !strings.HasPrefix(f[0], "Benchmark") {
			continue
		}
		name := procsSuffix.ReplaceAllString(strings.TrimPrefix(f[0], "Benchmark"), "")
		metrics := map[string]float64{}
		for i := 2; i+1 < len(f); i += 2 {
			if v, err := strconv.ParseFloat(f[i], 64); err == nil {
				metrics[f[i+1]] = v
			}
		}
		add := func(name string, rate float64) *report.Row {
			row := rows[name]
			if row == nil {
				row = &report.Row{Suite: suite, Case: name}
				rows[name] = row
				order = append(order, name)
			}
			row.Rates = append(row.Rates, rate)
			return row
		}
		for _, unit := range sortedKeys(metrics) {
			if variant, ok := strings.CutSuffix(unit, "-msgs/s"); ok {
				add(name+"/"+variant, metrics[unit])
			}
		}
		rate, ok := metrics["msgs/s"]
		if !ok {
			continue
		}
		row := add(name, rate)
		if v, ok := metrics["p50-ms"]; ok {
			row.P50 = max(row.P50, time.Duration(v*float64(time.Millisecond)))
		}
		if v, ok := metrics["p99-ms"]; ok {
			row.P99 = max(row.P99, time.Duration(v*float64(time.Millisecond)))
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	out := make([]report.Row, 0, len(order))
	for _, name := range order {
		row := rows[name]
		if parent, last, ok := cut(name); ok && !isBaseline(last) {
			for _, b := range baselineNames {
				if _, exists := rows[parent+"/"+b]; exists {
					row.Baseline = parent + "/" + b
					break
				}
			}
		}
		out = append(out, *row)
	}
	return out, nil
}

func sortedKeys(m map[string]float64) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func cut(name string) (parent, last string, ok bool) {
	i := strings.LastIndexByte(name, '/')
	if i < 0 {
		return "", name, false
	}
	return name[:i], name[i+1:], true
}

func isBaseline(last string) bool {
	for _, b := range baselineNames {
		if last == b {
			return true
		}
	}
	return false
}
