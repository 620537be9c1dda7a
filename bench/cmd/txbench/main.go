// Command txbench runs txconsume's benchmark suites against the real services and reports them
// side by side: a table on the terminal, a Markdown results file with the machine the numbers
// came from, and a PNG plot. `make bench` runs it; see `txbench -h`.
//
// Suites:
//
//	broker      consumers end to end through RocketMQ: exactly-once (per message and batched),
//	            a hand-written at-least-once consumer (the baseline) and the naive
//	            check-then-insert consumer, on a cold and a hot workload: msgs/s, and p50/p99
//	            latency from born timestamp to commit
//	dedup       claims as the dedup table grows (empty, 1M, 10M rows), random and UNIQ_KEY-like keys
//
// The in-database benchmarks are Go benchmarks of the library's packages (`go test -bench`);
// -gobench names files with their output, which join the table as the suite "database".
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/txconsume/txconsume/bench/internal/benchenv"
	"github.com/txconsume/txconsume/bench/internal/brokerbench"
	"github.com/txconsume/txconsume/bench/internal/dedupsize"
	"github.com/txconsume/txconsume/bench/internal/gobench"
	"github.com/txconsume/txconsume/bench/internal/report"
	"github.com/txconsume/txconsume/txconsume/rmq"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "txbench:", err)
		os.Exit(1)
	}
}

func run() error {
	suites := flag.String("suites", "broker,dedup", "comma-separated suites to run: broker, dedup (none: only -gobench)")
	quick := flag.Bool("quick", false, "a short run for a quick look: smaller backlogs, one repetition, tables up to 1M rows")
	goBench := flag.String("gobench", "", "comma-separated files of `go test -bench` output to include as the suite \"database\"")
	out := flag.String("out", "", "directory for the results file (bench-results.md) and the plot (bench.png); empty: none")
	sizes := flag.String("sizes", "", "dedup table sizes, comma-separated (default 0,1000000,10000000; quick: 0,1000000)")
	repeats := flag.Int("repeats", 0, "repetitions of every case (default 3; quick: 1)")
	messages := flag.Int("messages", 0, "broker backlog per workload (default 10000; quick: 4000)")
	batches := flag.String("batches", "", "delivery sizes of the exactly-once broker variants (default 1,8,16,32; quick: 1,16)")
	aloBatches := flag.String("alo-batches", "16", "delivery sizes of further at-least-once broker variants (besides its client defaults)")
	naive := flag.Bool("naive", true, "include the naive check-then-insert broker variant")
	note := flag.String("note", "", "what else loaded the machine during the run, for the results file")
	clean := flag.Bool("clean", false, "drop the filled dedup tables kept between runs, and run nothing")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	logf := func(format string, args ...any) {
		fmt.Fprintf(os.Stderr, time.Now().Format("15:04:05 ")+format+"\n", args...)
	}

	if *clean {
		return dedupsize.Clean(ctx, logf)
	}

	cfgRepeats, cfgMessages, cfgSizes, cfgBatches := 3, 10000, "0,1000000,10000000", "1,8,16,32"
	paced, dur := 2000, 10*time.Second
	if *quick {
		cfgRepeats, cfgMessages, cfgSizes, cfgBatches = 1, 4000, "0,1000000", "1,16"
		paced, dur = 500, 5*time.Second
	}
	if *repeats > 0 {
		cfgRepeats = *repeats
	}
	if *messages > 0 {
		cfgMessages = *messages
	}
	if *sizes != "" {
		cfgSizes = *sizes
	}
	if *batches != "" {
		cfgBatches = *batches
	}

	var res report.Results
	if base, err := benchenv.BaseDSN(); err == nil {
		res.Machine = benchenv.DescribeMachine(ctx, base)
	}
	res.Machine.OtherLoad = *note
	for _, f := range splitList(*goBench) {
		rows, err := readGoBench(f)
		if err != nil {
			return err
		}
		res.Add(rows...)
	}
	for _, s := range splitList(*suites) {
		switch s {
		case "broker":
			bs, err := ints(cfgBatches)
			if err != nil {
				return fmt.Errorf("-batches: %w", err)
			}
			variants := []brokerbench.Variant{brokerbench.Baseline, {Kind: brokerbench.ExactlyOnce}}
			for _, b := range bs {
				if b == rmq.DefaultBatchMaxSize {
					continue // the defaults are this already
				}
				variants = append(variants, brokerbench.Variant{Kind: brokerbench.ExactlyOnce, Batch: b})
			}
			abs, err := ints(*aloBatches)
			if err != nil {
				return fmt.Errorf("-alo-batches: %w", err)
			}
			for _, b := range abs {
				variants = append(variants, brokerbench.Variant{Kind: brokerbench.AtLeastOnce, Batch: b})
			}
			if *naive {
				variants = append(variants, brokerbench.Variant{Kind: brokerbench.Naive})
			}
			rows, err := brokerbench.Run(ctx, brokerbench.Config{
				Messages: cfgMessages, Paced: paced, Rate: 400, Repeats: cfgRepeats,
				Timeout: 90 * time.Second, Variants: variants, Log: logf,
			})
			if err != nil {
				return err
			}
			res.Add(rows...)
			res.Notes = append(res.Notes, fmt.Sprintf("broker: a backlog of %d messages per workload, drained by each variant "+
				"with a group of its own and 20 consumer goroutines; msgs/s from its first commit to its last; latency over %d "+
				"messages sent at 400 msgs/s after the backlog.", cfgMessages, paced))
		case "dedup":
			ns, err := ints(cfgSizes)
			if err != nil {
				return fmt.Errorf("-sizes: %w", err)
			}
			rows, err := dedupsize.Run(ctx, dedupsize.Config{Sizes: ns, Duration: dur, Workers: 16, Repeats: cfgRepeats, Log: logf})
			if err != nil {
				return err
			}
			res.Add(rows...)
			res.Notes = append(res.Notes, fmt.Sprintf("dedup table size: Process with a one-insert handler, 16 goroutines, "+
				"%s per measurement; the filled tables hold one group's keys created over 7 days. The floor is the same "+
				"transaction without txconsume, inserting a random 16-byte key into a table that holds nothing else: "+
				"no claim table can be narrower.", dur))
		case "":
		default:
			return fmt.Errorf("unknown suite %q", s)
		}
	}
	res.Machine.LoadAfter = benchenv.LoadAverage()
	res.WriteTable(os.Stdout)
	if *out == "" {
		return nil
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		return err
	}
	title := "txconsume benchmarks"
	if *quick {
		title += " (quick)"
	}
	md, err := os.Create(filepath.Join(*out, "bench-results.md"))
	if err != nil {
		return err
	}
	res.WriteMarkdown(md, title)
	if err := md.Close(); err != nil {
		return err
	}
	png := filepath.Join(*out, "bench.png")
	if err := res.WritePNG(png, title+", "+res.Machine.Date); err != nil {
		return err
	}
	fmt.Printf("\nresults: %s, plot: %s\n", md.Name(), png)
	return nil
}

func readGoBench(path string) ([]report.Row, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return gobench.Parse(f, "database")
}

func splitList(s string) []string {
	var out []string
	for _, x := range strings.Split(s, ",") {
		if x = strings.TrimSpace(x); x != "" {
			out = append(out, x)
		}
	}
	return out
}

func ints(s string) ([]int, error) {
	var out []int
	for _, x := range splitList(s) {
		n, err := strconv.Atoi(x)
		if err != nil {
			return nil, err
		}
		out = append(out, n)
	}
	return out, nil
}
