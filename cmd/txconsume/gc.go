package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/txconsume/txconsume/txconsume"
	"github.com/txconsume/txconsume/txconsume/idem"
)

// minSafeRetention is the broker's default message retention (RocketMQ fileReservedTime, 72h):
// a dedup record deleted earlier can be needed by a redelivery. gc refuses less without -force.
const minSafeRetention = 72 * time.Hour

const gcHelp = `
Deletes, in batches of short statements:

  dedup  txconsume_dedup records created more than -older-than ago (database clock);
  idem   txconsume_idem records whose TTL or retention has passed (the retention was set by the
         idem Processor when it wrote them, so -older-than does not apply to them).

Deleting a dedup record RE-OPENS ITS KEY: a redelivery of that message is applied again. Keep
-older-than above the longest time the broker can still deliver a message: RocketMQ keeps
messages 72h by default and retries a failed one 16 times over about 4h45m. 168h (7 days) is
the recommended minimum; below 72h gc refuses unless -force is given.

-group limits the dedup deletion to one consumer group; the idem table is then left alone
unless -table idem is given (idem cleanup has no group filter).`

func runGC(ctx context.Context, args []string, out, errOut io.Writer) error {
	fs := newFlags("gc", "-older-than DURATION [-group G] [-batch N] [-table dedup|idem|all] [-dry-run]", gcHelp, errOut)
	dsn := dsnFlag(fs)
	olderThan := fs.Duration("older-than", txconsume.RecommendedRetention, "delete dedup records older than this (e.g. 168h)")
	group := fs.String("group", "", "only this consumer group's dedup records (default: every group)")
	batch := fs.Int("batch", txconsume.DefaultRetentionBatch, fmt.Sprintf("rows per DELETE statement (1 to %d)", txconsume.MaxRetentionBatch))
	table := fs.String("table", "", "which records: dedup, idem or all (default all, or dedup when -group is set)")
	dryRun := fs.Bool("dry-run", false, "count what would be deleted and delete nothing")
	force := fs.Bool("force", false, "allow -older-than below 72h")
	if err := parse(fs, args, 0); err != nil {
		return err
	}
	if *olderThan <= 0 {
		return usagef("-older-than must be positive, got %s", *olderThan)
	}
	if *olderThan < minSafeRetention && !*force {
		return usagef("-older-than %s is shorter than the broker's default retention (72h): deleted keys could be "+
			"applied again by a redelivery; add -force if the broker keeps messages for less", *olderThan)
	}
	if *batch < 1 || *batch > txconsume.MaxRetentionBatch {
		return usagef("-batch must be 1 to %d, got %d", txconsume.MaxRetentionBatch, *batch)
	}
	doDedup, doIdem := true, *group == ""
	switch *table {
	case "", "all":
		if *table == "all" && *group != "" {
			return usagef("-group applies to the dedup table only: use -table dedup")
		}
	case "dedup":
		doIdem = false
	case "idem":
		if *group != "" {
			return usagef("-group applies to the dedup table only")
		}
		doDedup, doIdem = false, true
	default:
		return usagef("unknown -table %q: want dedup, idem or all", *table)
	}
	db, err := openMySQL(ctx, *dsn)
	if err != nil {
		return err
	}
	defer db.Close()

	scope := "every group"
	if *group != "" {
		scope = "group " + *group
	}
	if doDedup {
		if *dryRun {
			n, err := txconsume.CountDedupOlderThan(ctx, db, *olderThan, *group)
			if err != nil {
				return err
			}
			fmt.Fprintf(out, "dry run: would delete %d dedup records older than %s (%s)\n", n, *olderThan, scope)
		} else {
			batches := 0
			n, err := txconsume.DeleteDedupOlderThan(ctx, db, *olderThan, txconsume.RetentionOptions{
				Group:     *group,
				BatchSize: *batch,
				OnBatch:   func(int64) { batches++ },
			})
			if err != nil {
				return fmt.Errorf("after deleting %d dedup records: %w", n, err)
			}
			fmt.Fprintf(out, "deleted %d dedup records older than %s (%s) in %d batches\n", n, *olderThan, scope, batches)
		}
	}
	if doIdem {
		s := idem.NewMySQLStore(db.DB)
		if *dryRun {
			n, err := s.CountExpired(ctx)
			if err != nil {
				return err
			}
			fmt.Fprintf(out, "dry run: would delete %d expired idem records\n", n)
		} else {
			n, err := s.Cleanup(ctx, *batch)
			if err != nil {
				return fmt.Errorf("after deleting %d expired idem records: %w", n, err)
			}
			fmt.Fprintf(out, "deleted %d expired idem records\n", n)
		}
	}
	return nil
}
