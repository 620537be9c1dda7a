package demo

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
)

// Report is what a run did and what the databases show.
type Report struct {
	Orders, Messages            int // orders paid, messages planned (originals and re-sends)
	SameIDResends, NewIDResends int
	Published                   int           // messages the broker accepted
	PublishTime                 time.Duration // time to publish them all
	KillsWanted                 int
	Kills                       []Kill
	Lib                         Outcome  // the txconsume service
	Naive                       *Outcome // the naive consumer; nil when disabled
	LogDir                      string
}

// Kill is one SIGKILL of the service.
type Kill struct {
	AfterApplied int           // applied results the service had reported when it was killed
	Downtime     time.Duration // from the kill until the new process consumed again
}

// Outcome is one consumer's side of a run.
type Outcome struct {
	Name         string
	Drained      bool
	Missing      int     // sent messages the service never reported consumed
	Counts       counts  // what the service reported, delivery by delivery
	Effects      effects // what its database shows
	DedupRows    int     // rows in txconsume_dedup for its group; -1 when not applicable
	ShutdownTime time.Duration
	ShutdownErr  error
}

// Throughput is deliveries per second between the first and the last delivery the service
// reported (kills and restarts included).
func (o Outcome) Throughput() float64 {
	d := o.Counts.Last.Sub(o.Counts.First).Seconds()
	if d <= 0 {
		return 0
	}
	return float64(o.Counts.Seen()) / d
}

// Applied is the number of orders the database shows paid at least once.
func (o Outcome) Applied() int { return o.Effects.PaidOnce + o.Effects.AppliedTwice }

// Failures lists every way the txconsume service's run differs from exactly-once. The naive
// consumer is there to be compared, not checked.
func (r *Report) Failures() []string {
	var f []string
	add := func(format string, args ...any) { f = append(f, fmt.Sprintf(format, args...)) }
	o := r.Lib
	if r.Published != r.Messages {
		add("published %d of %d messages", r.Published, r.Messages)
	}
	if len(r.Kills) != r.KillsWanted {
		add("killed the service %d times, wanted %d", len(r.Kills), r.KillsWanted)
	}
	if !o.Drained {
		add("the service did not drain the topic in time")
	}
	e := o.Effects
	if e.Orders != r.Orders {
		add("%d orders in the database, %d seeded", e.Orders, r.Orders)
	}
	if e.AppliedTwice != 0 {
		add("%d orders applied more than once", e.AppliedTwice)
	}
	if e.Lost != 0 {
		add("%d orders never applied", e.Lost)
	}
	if e.PaidOnce != r.Orders {
		add("%d orders paid exactly once, want %d", e.PaidOnce, r.Orders)
	}
	if e.LedgerRows != r.Orders {
		add("%d ledger rows, want %d", e.LedgerRows, r.Orders)
	}
	if e.StockOff != 0 {
		add("stock of %d SKUs is off by %d units in total", e.StockOff, e.StockExcess)
	}
	if o.DedupRows != r.Orders {
		add("%d dedup records, want one per order (%d)", o.DedupRows, r.Orders)
	}
	if o.Counts.Applied > r.Orders {
		add("the service reported %d applied deliveries for %d orders", o.Counts.Applied, r.Orders)
	}
	if o.Counts.Discarded != 0 {
		add("the service discarded %d deliveries", o.Counts.Discarded)
	}
	if o.ShutdownErr != nil {
		add("graceful shutdown: %v", o.ShutdownErr)
	}
	return f
}

// WriteSummary prints the closing summary: the traffic, a table comparing the consumers, the
// checks, and the verdict.
func (r *Report) WriteSummary(w io.Writer) {
	fmt.Fprintf(w, "\n%d orders, %d messages: %d re-sent with the same UNIQ_KEY, %d re-sent under a new message id\n",
		r.Orders, r.Messages, r.SameIDResends, r.NewIDResends)
	for i, k := range r.Kills {
		fmt.Fprintf(w, "order-service SIGKILLed (%d/%d) after %d applied, consuming again %s later\n",
			i+1, r.KillsWanted, k.AfterApplied, k.Downtime.Round(time.Millisecond))
	}
	fmt.Fprintln(w)

	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	cols := []Outcome{r.Lib}
	header := "\ttxconsume\t"
	if r.Naive != nil {
		cols = append(cols, *r.Naive)
		header += "naive check\t"
	}
	row := func(label string, val func(o Outcome) string) {
		line := label + "\t"
		for _, o := range cols {
			line += val(o) + "\t"
		}
		fmt.Fprintln(tw, line)
	}
	fmt.Fprintln(tw, header)
	row("sent", func(Outcome) string { return fmt.Sprint(r.Published) })
	row("deliveries seen", func(o Outcome) string { return fmt.Sprint(o.Counts.Seen()) })
	row("duplicates suppressed", func(o Outcome) string { return fmt.Sprint(o.Counts.Duplicate) })
	row("applied", func(o Outcome) string { return fmt.Sprint(o.Applied()) })
	row("applied twice (must be 0)", func(o Outcome) string { return fmt.Sprint(o.Effects.AppliedTwice) })
	row("lost (must be 0)", func(o Outcome) string { return fmt.Sprint(o.Effects.Lost) })
	row("throughput (deliveries/s)", func(o Outcome) string { return fmt.Sprintf("%.0f", o.Throughput()) })
	_ = tw.Flush()
	fmt.Fprintln(w)

	o := r.Lib
	fmt.Fprintf(w, "txconsume: ledger rows %d, dedup records %d, stock off on %d SKUs, %d failed deliveries retried, %d discarded\n",
		o.Effects.LedgerRows, o.DedupRows, o.Effects.StockOff, o.Counts.Errors, o.Counts.Discarded)
	if gap := o.Applied() - o.Counts.Applied; gap > 0 && len(r.Kills) > 0 {
		what := "commits"
		if gap == 1 {
			what = "commit"
		}
		fmt.Fprintf(w, "txconsume: the service reported %d applied: %d %s reached MySQL just as the process was killed "+
			"(before it could log), and the redeliveries were recognised as duplicates\n", o.Counts.Applied, gap, what)
	}
	if o.ShutdownErr == nil {
		fmt.Fprintf(w, "txconsume: graceful shutdown on SIGTERM in %s, exit status 0\n", o.ShutdownTime.Round(time.Millisecond))
	}
	for _, c := range cols {
		if !c.Drained {
			fmt.Fprintf(w, "%s: did not drain in time; %d sent messages never reported consumed\n", c.Name, c.Missing)
		}
	}
	if n := r.Naive; n != nil {
		fmt.Fprintf(w, "naive check: %d orders paid twice, %d extra ledger rows, %d stock units taken twice\n",
			n.Effects.AppliedTwice, n.Effects.LedgerRows-n.Applied(), n.Effects.StockExcess)
	}
	fmt.Fprintf(w, "service logs: %s\n", r.LogDir)
	if f := r.Failures(); len(f) > 0 {
		fmt.Fprintf(w, "\nFAIL: %s\n", strings.Join(f, "; "))
		return
	}
	fmt.Fprintf(w, "\nPASS: every order applied exactly once through %d duplicate deliveries and %d SIGKILL(s)\n",
		o.Counts.Duplicate, len(r.Kills))
}
