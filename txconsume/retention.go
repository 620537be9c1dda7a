package txconsume

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/txconsume/txconsume/txconsume/internal/pkdelete"
)

// Retention defaults and limits.
const (
	// RecommendedRetention is the shortest retention this package recommends for dedup records:
	// RocketMQ's default commit-log retention (fileReservedTime, 72 hours), after which the
	// broker no longer holds a message to redeliver, plus four days of margin for a broker whose
	// retention was raised, a consumer group reset to an older offset, or a backlog replayed
	// after an outage. Seven days also covers the default retry schedule (16 retries over about
	// 4h45m) many times over.
	RecommendedRetention = 7 * 24 * time.Hour
	// DefaultRetentionBatch is the number of rows one batch deletes when
	// RetentionOptions.BatchSize is 0.
	DefaultRetentionBatch = 1000
	// MaxRetentionBatch is the largest batch accepted: each batch's DELETE carries every key of
	// the batch (up to about 10 MB for keys of 255 bytes), and larger batches hold their row
	// locks longer.
	MaxRetentionBatch = 10000
)

// RetentionOptions tune DeleteDedupOlderThan. The zero value deletes from every group in
// batches of DefaultRetentionBatch rows without pausing.
type RetentionOptions struct {
	// Group restricts deletion to one consumer group. Default "": every group.
	Group string
	// BatchSize is the most rows one batch deletes, 1 to MaxRetentionBatch. Default 0 means
	// DefaultRetentionBatch.
	BatchSize int
	// Pause is slept between batches, to leave room for replicas to catch up on a large backlog.
	// Default 0: no pause.
	Pause time.Duration
	// OnBatch, if not nil, is called after each batch with the number of rows it deleted (for
	// progress output). Default nil.
	OnBatch func(deleted int64)
}

// DeleteDedupOlderThan deletes the txconsume_dedup records that are older than age, in batches,
// and returns how many it deleted. It stops at the first error or when ctx ends, returning the
// rows deleted so far: every batch is its own statement and stays deleted. Any number of
// instances may run it at once.
//
// # Deleting a record re-opens its key
//
// A dedup record is what makes a redelivery a Duplicate. Once it is deleted, a message with that
// key is applied again, handler and all. The retention (age) must therefore exceed the longest
// time after which the broker can still deliver the message:
//
//   - RocketMQ keeps messages 72 hours by default (fileReservedTime); a consumer group reset to
//     an earlier offset, or a backlog replayed after an outage, redelivers anything still kept;
//   - a failed message is retried up to 16 times over about 4h45m by default, then goes to the
//     group's %DLQ% topic, from which operators may resend it later by hand;
//   - producers that resend a business event under the same key (with KeyByFirstKey or
//     KeyByProperty) can do so for as long as their own retries last.
//
// RecommendedRetention (7 days) covers the defaults with margin. Never go below the broker's
// fileReservedTime.
//
// # Which clock
//
// created_at is filled by the database (DEFAULT (UTC_TIMESTAMP(6))) with the server's clock in
// UTC, so neither the application's clock nor any session's time_zone setting enters. The cutoff
// is computed the same way, as UTC_TIMESTAMP(6) - age on the database server, once per call.
//
// # How it deletes
//
// Each batch reads the primary keys of up to BatchSize of the oldest expired rows with a plain
// SELECT (a consistent read, no locks), then deletes exactly those rows by primary key in one
// autocommitted DELETE that checks created_at again. The DELETE looks each key up on the primary
// key on MySQL and MariaDB at every batch size up to MaxRetentionBatch (an OR list of keys would
// turn into a full scan past a few thousand keys), so it locks only the rows it deletes, under
// REPEATABLE READ and READ COMMITTED alike: consumers claiming new keys are never blocked, and
// the statement is deterministic for statement-based replication. A single
// DELETE ... ORDER BY created_at LIMIT n, which MySQL and MariaDB both accept, would be one round
// trip shorter, but under REPEATABLE READ it takes next-key locks on the created_at index,
// including the gap at its end into which every new claim inserts, and binlog_format=STATEMENT
// flags it as unsafe.
func DeleteDedupOlderThan(ctx context.Context, db *sqlx.DB, age time.Duration, opts RetentionOptions) (int64, error) {
	batch, err := checkRetention(db, age, opts)
	if err != nil {
		return 0, err
	}
	cutoff, err := dedupCutoff(ctx, db, age)
	if err != nil {
		return 0, err
	}
	selectSQL := "SELECT consumer_group, dedup_key FROM " + DedupTable + " WHERE created_at < ?"
	selectArgs := []any{cutoff}
	if opts.Group != "" {
		selectSQL += " AND consumer_group = ?"
		selectArgs = append(selectArgs, opts.Group)
	}
	selectSQL += " ORDER BY created_at LIMIT ?"
	selectArgs = append(selectArgs, batch)

	var total int64
	for {
		keys, err := selectExpired(ctx, db, selectSQL, selectArgs)
		if err != nil {
			return total, err
		}
		if len(keys) == 0 {
			return total, nil
		}
		n, err := deleteKeys(ctx, db, cutoff, keys)
		if err != nil {
			return total, err
		}
		total += n
		if opts.OnBatch != nil {
			opts.OnBatch(n)
		}
		if len(keys) < batch {
			return total, nil
		}
		if err := sleepCtx(ctx, opts.Pause); err != nil {
			return total, err
		}
	}
}

// CountDedupOlderThan returns how many txconsume_dedup records DeleteDedupOlderThan would delete
// now with the same age and group ("" for every group): a dry run. The cutoff is computed as
// DeleteDedupOlderThan computes it.
func CountDedupOlderThan(ctx context.Context, db *sqlx.DB, age time.Duration, group string) (int64, error) {
	if _, err := checkRetention(db, age, RetentionOptions{Group: group}); err != nil {
		return 0, err
	}
	cutoff, err := dedupCutoff(ctx, db, age)
	if err != nil {
		return 0, err
	}
	q := "SELECT COUNT(*) FROM " + DedupTable + " WHERE created_at < ?"
	args := []any{cutoff}
	if group != "" {
		q += " AND consumer_group = ?"
		args = append(args, group)
	}
	var n int64
	if err := db.QueryRowContext(ctx, q, args...).Scan(&n); err != nil {
		return 0, fmt.Errorf("txconsume: count old dedup records: %w", err)
	}
	return n, nil
}

func checkRetention(db *sqlx.DB, age time.Duration, opts RetentionOptions) (int, error) {
	if db == nil {
		return 0, errors.New("txconsume: retention: nil db")
	}
	if age <= 0 {
		return 0, fmt.Errorf("txconsume: retention: age must be positive, got %s", age)
	}
	if len(opts.Group) > maxColumnLen {
		return 0, fmt.Errorf("txconsume: retention: group longer than %d bytes", maxColumnLen)
	}
	batch := opts.BatchSize
	if batch == 0 {
		batch = DefaultRetentionBatch
	}
	if batch < 1 || batch > MaxRetentionBatch {
		return 0, fmt.Errorf("txconsume: retention: batch size must be 1 to %d, got %d", MaxRetentionBatch, opts.BatchSize)
	}
	return batch, nil
}

// dedupCutoff computes UTC_TIMESTAMP(6) - age on the server, as the DATETIME(6)
// literal created_at is compared with. It comes back formatted as text so that neither the
// driver's parseTime nor its loc setting can convert it on the way out or back in; the server
// casts the literal to DATETIME(6) when it compares it with the column, which keeps the index
// usable.
func dedupCutoff(ctx context.Context, db *sqlx.DB, age time.Duration) (string, error) {
	var cutoff string
	err := db.QueryRowContext(ctx,
		"SELECT DATE_FORMAT(UTC_TIMESTAMP(6) - INTERVAL ? MICROSECOND, '%Y-%m-%d %H:%i:%s.%f')", age.Microseconds()).Scan(&cutoff)
	if err != nil {
		return "", fmt.Errorf("txconsume: retention cutoff: %w", err)
	}
	return cutoff, nil
}

type dedupPK struct{ group, key []byte }

func selectExpired(ctx context.Context, db *sqlx.DB, q string, args []any) ([]dedupPK, error) {
	rows, err := db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("txconsume: select old dedup records: %w", err)
	}
	defer rows.Close()
	var keys []dedupPK
	for rows.Next() {
		var k dedupPK
		if err := rows.Scan(&k.group, &k.key); err != nil {
			return nil, fmt.Errorf("txconsume: select old dedup records: %w", err)
		}
		keys = append(keys, k)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("txconsume: select old dedup records: %w", err)
	}
	return keys, nil
}

// deleteKeys deletes the rows named by keys that are still older than cutoff. created_at is
// checked again because a key deleted by another instance in the meantime may have been claimed
// anew.
func deleteKeys(ctx context.Context, db *sqlx.DB, cutoff string, keys []dedupPK) (int64, error) {
	q, args, err := deleteKeysStatement(cutoff, keys)
	if err != nil {
		return 0, fmt.Errorf("txconsume: delete old dedup records: %w", err)
	}
	res, err := db.ExecContext(ctx, q, args...)
	if err != nil {
		return 0, fmt.Errorf("txconsume: delete old dedup records: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("txconsume: delete old dedup records: %w", err)
	}
	return n, nil
}

// deleteKeysStatement returns the DELETE of one retention batch: a primary-key lookup per key
// on MySQL and MariaDB, up to MaxRetentionBatch keys and beyond (see package pkdelete).
func deleteKeysStatement(cutoff string, keys []dedupPK) (string, []any, error) {
	pks := make([][][]byte, len(keys))
	for i, k := range keys {
		pks[i] = [][]byte{k.group, k.key}
	}
	return pkdelete.Statement(DedupTable, []string{"consumer_group", "dedup_key"}, pks, "created_at < ?", cutoff)
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
