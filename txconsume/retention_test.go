package txconsume_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/stretchr/testify/require"

	"github.com/txconsume/txconsume/internal/testenv"
	"github.com/txconsume/txconsume/txconsume"
)

func TestRetentionDelete(t *testing.T) {
	ctx := context.Background()
	const age = 168 * time.Hour

	// setup applies oldG keys of group "g", oldH keys of group "h" and two fresh keys of "g",
	// then backdates the old ones on the database clock: 200h old, and one "g" key only just
	// younger than the cutoff.
	setup := func(t *testing.T, oldG, oldH int) (*fixture, *txconsume.Processor) {
		f := newFixture(t)
		pg := f.processor(nil, "g", recordEffect)
		ph := f.processor(nil, "h", recordEffect)
		for i := range oldG {
			r, err := pg.Process(ctx, msg(fmt.Sprintf("old-%d", i)))
			require.NoError(t, err)
			require.Equal(t, txconsume.Applied, r)
		}
		for i := range oldH {
			r, err := ph.Process(ctx, msg(fmt.Sprintf("h-old-%d", i)))
			require.NoError(t, err)
			require.Equal(t, txconsume.Applied, r)
		}
		for _, id := range []string{"new-1", "edge"} {
			r, err := pg.Process(ctx, msg(id))
			require.NoError(t, err)
			require.Equal(t, txconsume.Applied, r)
		}
		_, err := f.db.ExecContext(ctx, "UPDATE txconsume_dedup SET created_at = UTC_TIMESTAMP(6) - INTERVAL 200 HOUR "+
			"WHERE dedup_key LIKE 'old-%' OR dedup_key LIKE 'h-old-%'")
		require.NoError(t, err)
		_, err = f.db.ExecContext(ctx, "UPDATE txconsume_dedup SET created_at = UTC_TIMESTAMP(6) - INTERVAL 167 HOUR "+
			"WHERE dedup_key = 'edge'")
		require.NoError(t, err)
		return f, pg
	}
	groupRows := func(t *testing.T, f *fixture, group string) int {
		var n int
		require.NoError(t, f.db.Get(&n, "SELECT COUNT(*) FROM txconsume_dedup WHERE consumer_group = ?", group))
		return n
	}

	t.Run("deletes old rows of every group in bounded batches and keeps newer ones", func(t *testing.T) {
		f, _ := setup(t, 23, 7)
		var batches []int64
		n, err := txconsume.DeleteDedupOlderThan(ctx, f.db, age, txconsume.RetentionOptions{
			BatchSize: 5,
			OnBatch:   func(d int64) { batches = append(batches, d) },
		})
		require.NoError(t, err)
		require.Equal(t, int64(30), n)
		require.Equal(t, []int64{5, 5, 5, 5, 5, 5}, batches, "30 rows, at most 5 per statement")
		require.Equal(t, 2, f.dedupRows())
		require.Equal(t, "applied", f.outcome("g", "new-1"))
		require.Equal(t, "applied", f.outcome("g", "edge"), "younger than the cutoff by an hour")
	})

	t.Run("a last short batch ends the run", func(t *testing.T) {
		f, _ := setup(t, 12, 0)
		var batches []int64
		n, err := txconsume.DeleteDedupOlderThan(ctx, f.db, age, txconsume.RetentionOptions{
			BatchSize: 5,
			OnBatch:   func(d int64) { batches = append(batches, d) },
		})
		require.NoError(t, err)
		require.Equal(t, int64(12), n)
		require.Equal(t, []int64{5, 5, 2}, batches)
	})

	t.Run("group filter leaves other groups alone", func(t *testing.T) {
		f, _ := setup(t, 4, 6)
		n, err := txconsume.DeleteDedupOlderThan(ctx, f.db, age, txconsume.RetentionOptions{Group: "h"})
		require.NoError(t, err)
		require.Equal(t, int64(6), n)
		require.Equal(t, 0, groupRows(t, f, "h"))
		require.Equal(t, 6, groupRows(t, f, "g"), "4 old and 2 new rows of g are kept")
	})

	t.Run("count is a dry run with the same cutoff", func(t *testing.T) {
		f, _ := setup(t, 3, 2)
		n, err := txconsume.CountDedupOlderThan(ctx, f.db, age, "")
		require.NoError(t, err)
		require.Equal(t, int64(5), n)
		n, err = txconsume.CountDedupOlderThan(ctx, f.db, age, "g")
		require.NoError(t, err)
		require.Equal(t, int64(3), n)
		require.Equal(t, 7, f.dedupRows(), "nothing deleted")
	})

	t.Run("a deleted key is applied again on redelivery", func(t *testing.T) {
		f, pg := setup(t, 2, 0)
		_, err := txconsume.DeleteDedupOlderThan(ctx, f.db, age, txconsume.RetentionOptions{})
		require.NoError(t, err)

		r, err := pg.Process(ctx, msg("old-0"))
		require.NoError(t, err)
		require.Equal(t, txconsume.Applied, r, "the record was the only thing that made it a duplicate")
		require.Equal(t, 2, f.effects("old-0"), "the effect happened twice: this is what retention must prevent")

		r, err = pg.Process(ctx, msg("new-1"))
		require.NoError(t, err)
		require.Equal(t, txconsume.Duplicate, r)
		require.Equal(t, 1, f.effects("new-1"))
	})

	t.Run("long keys are deleted by their stored form", func(t *testing.T) {
		f, _ := setup(t, 0, 0)
		long := strings.Repeat("k", 300) // longer than t_effect.msg_key: this handler writes nothing
		noop := f.processor(nil, "g", func(context.Context, *sqlx.Tx, *txconsume.Message) error { return nil })
		_, err := noop.Process(ctx, msg(long))
		require.NoError(t, err)
		_, err = f.db.ExecContext(ctx, "UPDATE txconsume_dedup SET created_at = UTC_TIMESTAMP(6) - INTERVAL 200 HOUR WHERE dedup_key = ?",
			txconsume.StoredKey(long))
		require.NoError(t, err)
		n, err := txconsume.DeleteDedupOlderThan(ctx, f.db, age, txconsume.RetentionOptions{})
		require.NoError(t, err)
		require.Equal(t, int64(1), n)
		require.Empty(t, f.outcome("g", long))
	})

	t.Run("the delete reads the table by primary key", func(t *testing.T) {
		f, _ := setup(t, 3, 0)
		q, args, err := txconsume.RetentionDeleteStatement("2999-01-01 00:00:00",
			[][2]string{{"g", "old-0"}, {"g", "old-1"}, {"g", "old-2"}})
		require.NoError(t, err)
		testenv.RequirePrimaryKeyReads(t, testenv.Explain(t, f.db.DB, q, args...), txconsume.DedupTable)
	})

	t.Run("invalid arguments", func(t *testing.T) {
		f, _ := setup(t, 1, 0)
		_, err := txconsume.DeleteDedupOlderThan(ctx, f.db, 0, txconsume.RetentionOptions{})
		require.ErrorContains(t, err, "age must be positive")
		_, err = txconsume.DeleteDedupOlderThan(ctx, f.db, age, txconsume.RetentionOptions{BatchSize: txconsume.MaxRetentionBatch + 1})
		require.ErrorContains(t, err, "batch size")
		_, err = txconsume.DeleteDedupOlderThan(ctx, nil, age, txconsume.RetentionOptions{})
		require.Error(t, err)
		require.Equal(t, 3, f.dedupRows())
	})

	t.Run("cancelled context stops between batches", func(t *testing.T) {
		f, _ := setup(t, 10, 0)
		cctx, cancel := context.WithCancel(ctx)
		defer cancel()
		n, err := txconsume.DeleteDedupOlderThan(cctx, f.db, age, txconsume.RetentionOptions{
			BatchSize: 3,
			OnBatch:   func(int64) { cancel() },
		})
		require.ErrorIs(t, err, context.Canceled)
		require.Equal(t, int64(3), n, "the first batch stays deleted")
		require.Equal(t, 9, f.dedupRows())
	})
}

// Ages are measured on one clock whatever time_zone the consumers' and the cleaner's sessions use:
// a key claimed a moment ago by a session five hours behind UTC is not an hour old for a cleaner
// nine hours ahead.
func TestRetentionIgnoresSessionTimeZones(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	west := f.pool("time_zone=%27-05%3A00%27")
	east := f.pool("time_zone=%27%2B09%3A00%27")

	p := f.processor(west, "g", recordEffect)
	r, err := p.Process(ctx, msg("fresh"))
	require.NoError(t, err)
	require.Equal(t, txconsume.Applied, r)

	n, err := txconsume.CountDedupOlderThan(ctx, east, time.Hour, "")
	require.NoError(t, err)
	require.Zero(t, n, "a key claimed just now counts as older than an hour")
	deleted, err := txconsume.DeleteDedupOlderThan(ctx, east, time.Hour, txconsume.RetentionOptions{})
	require.NoError(t, err)
	require.Zero(t, deleted)
	require.Equal(t, "applied", f.outcome("g", "fresh"))
}

// The largest retention batch must stay a primary-key delete on both servers: the optimizers
// give up on long OR lists (MariaDB's optimizer_max_sel_arg_weight, MySQL's
// range_optimizer_max_mem_size) and fall back to a full scan that locks the whole table.
func TestRetentionDeleteLargestBatch(t *testing.T) {
	ctx := context.Background()
	const oldRows, newRows = txconsume.MaxRetentionBatch + 2000, 9000 // 21,000 rows in all

	// setup fills txconsume_dedup with oldRows rows 200 hours old and newRows fresh ones, in
	// group order interleaved so that the batch's keys are spread over the primary key, and
	// returns the DELETE of the oldest MaxRetentionBatch keys.
	setup := func(t *testing.T) (*fixture, string, []any) {
		f := newFixture(t)
		insert := func(prefix string, n int, created string) {
			testenv.InsertRows(t, f.db.DB, "INSERT INTO txconsume_dedup (consumer_group, dedup_key, created_at) VALUES", n,
				func(i int) string { return fmt.Sprintf("('g%d', '%s-%05d', %s)", i%3, prefix, i, created) })
		}
		insert("old", oldRows, "UTC_TIMESTAMP(6) - INTERVAL 200 HOUR")
		insert("new", newRows, "UTC_TIMESTAMP(6)")
		_, err := f.db.ExecContext(ctx, "ANALYZE TABLE txconsume_dedup")
		require.NoError(t, err)

		keys := make([][2]string, txconsume.MaxRetentionBatch)
		for i := range keys {
			keys[i] = [2]string{fmt.Sprintf("g%d", i%3), fmt.Sprintf("old-%05d", i)}
		}
		var cutoff string
		require.NoError(t, f.db.GetContext(ctx, &cutoff,
			"SELECT DATE_FORMAT(UTC_TIMESTAMP(6) - INTERVAL 168 HOUR, '%Y-%m-%d %H:%i:%s.%f')"))
		q, args, err := txconsume.RetentionDeleteStatement(cutoff, keys)
		require.NoError(t, err)
		return f, q, args
	}

	t.Run("the delete reads the table by primary key", func(t *testing.T) {
		f, q, args := setup(t)
		testenv.RequirePrimaryKeyReads(t, testenv.Explain(t, f.db.DB, q, args...), txconsume.DedupTable)
	})

	t.Run("an uncommitted batch does not block the claim of a new key", func(t *testing.T) {
		f, q, args := setup(t)
		tx, n := testenv.ExecOpen(t, f.db.DB, q, args...)
		require.EqualValues(t, txconsume.MaxRetentionBatch, n)

		// A claim that waited for the batch's locks would fail after a second with error 1205;
		// no retries, so the wait cannot hide behind a second attempt.
		consumer := f.processor(f.pool("innodb_lock_wait_timeout=1"), "g1", recordEffect, txconsume.WithMaxRetries(0))
		for _, id := range []string{"brand-new", "old-99999", "new-99999"} { // at the ends and in between
			r, err := consumer.Process(ctx, msg(id))
			require.NoError(t, err, "claim of %s while a retention batch is open", id)
			require.Equal(t, txconsume.Applied, r)
		}

		require.NoError(t, tx.Commit())
		require.Equal(t, oldRows+newRows-txconsume.MaxRetentionBatch+3, f.dedupRows())
		require.Equal(t, 1, f.effects("brand-new"))
	})
}
