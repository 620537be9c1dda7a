package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/txconsume/txconsume/txconsume/outbox"
)

const outboxHelp = `
Shows the transactional outbox (package txconsume/outbox), per topic:

  PENDING         committed messages no relay has published yet;
  OLDEST PENDING  the age of the oldest of them, on the database's clock: how far publishing
                  lags behind (alert on it);
  KEPT            published messages still in the table: kept for the relays' audit window
                  (WithRetention), or about to be deleted.

With -max-age, the command fails (exit status 1) when a topic's oldest pending message is
older, for scripts and probes.`

func runOutbox(ctx context.Context, args []string, out, errOut io.Writer) error {
	fs := newFlags("outbox status", "[-max-age DURATION]", outboxHelp, errOut)
	dsn := dsnFlag(fs)
	maxAge := fs.Duration("max-age", 0, "fail when a pending message is older than this (default: never fail)")
	switch {
	case len(args) > 0 && args[0] == "status":
		args = args[1:]
	case len(args) > 0 && (args[0] == "-h" || args[0] == "-help" || args[0] == "--help"):
	default:
		return usagef("want: txconsume outbox status [-max-age DURATION]")
	}
	if err := parse(fs, args, 0); err != nil {
		return err
	}
	if *maxAge < 0 {
		return usagef("-max-age must not be negative, got %s", *maxAge)
	}
	db, err := openMySQL(ctx, *dsn)
	if err != nil {
		return err
	}
	defer db.Close()
	status, err := outbox.Status(ctx, db)
	if isNoSuchTable(err) {
		return errors.New("no outbox table in this database: apply the migrations (txconsume migrate up)")
	}
	if err != nil {
		return err
	}
	if len(status) == 0 {
		fmt.Fprintln(out, "the outbox is empty")
		return nil
	}
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "TOPIC\tPENDING\tOLDEST PENDING\tKEPT\t")
	var late []string
	for _, s := range status {
		fmt.Fprintf(tw, "%s\t%d\t%s\t%d\t\n", s.Topic, s.Pending, s.OldestPending.Round(time.Millisecond), s.Kept)
		if *maxAge > 0 && s.OldestPending > *maxAge {
			late = append(late, s.Topic)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(late) > 0 {
		return fmt.Errorf("pending messages older than %s in %d topic(s): %v", *maxAge, len(late), late)
	}
	return nil
}
