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
	Chain                       *Chain   // the order-shipped events and the shipping service
	LogDir                      string
}

// Chain is the second link of a run: the order-shipped events that the order service enqueued
// in its payments' transactions and relayed, and what the shipping service made of them.
type Chain struct {
	// In the order service's outbox table: the events enqueued, those marked sent, and the
	// orders with more than one event.
	Enqueued, Sent, EnqueuedTwice int
	// Relayed is the messages the relay reported the broker stored, copies sent again after a
	// kill included.
	Relayed int
	// Shipping is the shipping service's side (its Effects are the order side's, left zero).
	Shipping Outcome
	// In the shipping service's database: rows, orders shipped once, more than once, never, and
	// shipments recorded under another id than the one the outbox gave their order's event.
	ShipmentRows, ShippedOnce, ShippedTwice, Lost, ForeignIDs int
	KillsWanted                                               int
	Kills                                                     []Kill
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
	if c := r.Chain; c != nil {
		f = append(f, c.failures(r.Orders)...)
	}
	return f
}

// failures lists every way the chain differs from one order-shipped event per order, shipped
// exactly once.
func (c *Chain) failures(orders int) []string {
	var f []string
	add := func(format string, args ...any) { f = append(f, fmt.Sprintf(format, args...)) }
	s := c.Shipping
	if c.Enqueued != orders || c.EnqueuedTwice != 0 {
		add("%d order-shipped events enqueued (%d orders with several), want one per order (%d)", c.Enqueued, c.EnqueuedTwice, orders)
	}
	if c.Sent != c.Enqueued {
		add("%d of %d order-shipped events relayed", c.Sent, c.Enqueued)
	}
	if c.Relayed < c.Sent {
		add("the relay reported %d messages sent, fewer than the %d marked sent", c.Relayed, c.Sent)
	}
	if len(c.Kills) != c.KillsWanted {
		add("killed the shipping service %d times, wanted %d", len(c.Kills), c.KillsWanted)
	}
	if !s.Drained {
		add("the shipping service did not drain its topic in time")
	}
	if c.ShippedTwice != 0 {
		add("%d orders shipped more than once", c.ShippedTwice)
	}
	if c.Lost != 0 {
		add("%d orders never shipped", c.Lost)
	}
	if c.ShippedOnce != orders || c.ShipmentRows != orders {
		add("%d orders shipped exactly once and %d shipment rows, want %d", c.ShippedOnce, c.ShipmentRows, orders)
	}
	if c.ForeignIDs != 0 {
		add("%d shipments recorded under another id than their event's", c.ForeignIDs)
	}
	if s.DedupRows != orders {
		add("%d shipping dedup records, want one per order (%d)", s.DedupRows, orders)
	}
	if s.Counts.Applied > orders {
		add("the shipping service reported %d applied deliveries for %d orders", s.Counts.Applied, orders)
	}
	if s.Counts.Discarded != 0 {
		add("the shipping service discarded %d deliveries", s.Counts.Discarded)
	}
	if s.ShutdownErr != nil {
		add("shipping service graceful shutdown: %v", s.ShutdownErr)
	}
	return f
}

// WriteSummary prints the closing summary: the traffic, a table comparing the consumers, the
// checks, and the verdict.
func (r *Report) WriteSummary(w io.Writer) {
	fmt.Fprintf(w, "\n%d orders, %d messages: %d re-sent with the same UNIQ_KEY, %d re-sent under a new message id\n",
		r.Orders, r.Messages, r.SameIDResends, r.NewIDResends)
	for i, k := range r.Kills {
		fmt.Fprintf(w, "order-service (and its outbox relay) SIGKILLed (%d/%d) after %d applied, consuming again %s later\n",
			i+1, r.KillsWanted, k.AfterApplied, k.Downtime.Round(time.Millisecond))
	}
	if c := r.Chain; c != nil {
		for i, k := range c.Kills {
			fmt.Fprintf(w, "shipping-service SIGKILLed (%d/%d) after %d applied, consuming again %s later\n",
				i+1, c.KillsWanted, k.AfterApplied, k.Downtime.Round(time.Millisecond))
		}
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
	if c := r.Chain; c != nil {
		c.writeTable(w)
	}

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
	if c := r.Chain; c != nil {
		fmt.Fprintf(w, "outbox: %d events enqueued, %d marked sent, %d relayed: %d copies sent again after a kill\n",
			c.Enqueued, c.Sent, c.Relayed, max(0, c.Relayed-c.Sent))
		fmt.Fprintf(w, "shipping-service: shipment rows %d, dedup records %d, %d failed deliveries retried, %d discarded\n",
			c.ShipmentRows, c.Shipping.DedupRows, c.Shipping.Counts.Errors, c.Shipping.Counts.Discarded)
		if c.Shipping.ShutdownErr == nil {
			fmt.Fprintf(w, "shipping-service: graceful shutdown on SIGTERM in %s, exit status 0\n",
				c.Shipping.ShutdownTime.Round(time.Millisecond))
		}
		cols = append(cols, c.Shipping)
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
	if c := r.Chain; c != nil {
		fmt.Fprintf(w, "\nPASS: every order applied exactly once and shipped exactly once, through %d duplicate deliveries and %d SIGKILL(s)\n",
			o.Counts.Duplicate+c.Shipping.Counts.Duplicate, len(r.Kills)+len(c.Kills))
		return
	}
	fmt.Fprintf(w, "\nPASS: every order applied exactly once through %d duplicate deliveries and %d SIGKILL(s)\n",
		o.Counts.Duplicate, len(r.Kills))
}

// writeTable prints the chain's table: from the payments' transactions through the outbox and
// the relay to the shipping service's database.
func (c *Chain) writeTable(w io.Writer) {
	fmt.Fprintln(w, "order-shipped events, through the outbox and its relay to shipping-service:")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	line := func(label string, v int) { fmt.Fprintf(tw, "%s\t%d\t\n", label, v) }
	line("enqueued with the payments", c.Enqueued)
	line("relayed (copies after a kill included)", c.Relayed)
	line("deliveries seen by shipping-service", c.Shipping.Counts.Seen())
	line("duplicates suppressed", c.Shipping.Counts.Duplicate)
	line("shipped", c.ShippedOnce+c.ShippedTwice)
	line("shipped twice (must be 0)", c.ShippedTwice)
	line("lost (must be 0)", c.Lost)
	_ = tw.Flush()
	fmt.Fprintln(w)
}
