package txconsume_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"testing"

	"github.com/jmoiron/sqlx"
	"github.com/stretchr/testify/require"

	"github.com/txconsume/txconsume/txconsume"
)

func TestConnector(t *testing.T) {
	ctx := context.Background()

	t.Run("a transaction of the service's own that lost a deadlock refuses what follows", func(t *testing.T) {
		f := newFixture(t)
		db := f.guardedPool("")
		txs := make([]*sqlx.Tx, 2)
		for i := range txs {
			var err error
			txs[i], err = db.BeginTxx(ctx, nil)
			require.NoError(t, err)
			defer func() { _ = txs[i].Rollback() }()
			_, err = txs[i].ExecContext(ctx, "INSERT INTO t_effect (msg_key) VALUES (?)", []string{"t0", "t1"}[i])
			require.NoError(t, err)
		}
		_, err := txs[0].ExecContext(ctx, "UPDATE t_counter SET n = n + 1 WHERE name = 'x'")
		require.NoError(t, err)
		_, err = txs[1].ExecContext(ctx, "UPDATE t_counter SET n = n + 1 WHERE name = 'y'")
		require.NoError(t, err)
		errs := make([]error, 2)
		runConcurrently(2, func(i int) {
			_, errs[i] = txs[i].ExecContext(ctx, "UPDATE t_counter SET n = n + 1 WHERE name = ?", []string{"y", "x"}[i])
		})
		victim := 0
		if errs[0] == nil {
			victim = 1
		}
		require.Equal(t, uint16(1213), mysqlErrNumber(errs[victim]), "%v", errs)
		require.NoError(t, errs[1-victim])

		v := txs[victim]
		_, err = v.ExecContext(ctx, "INSERT INTO t_effect (msg_key) VALUES ('orphan')")
		require.ErrorIs(t, err, txconsume.ErrTxAborted)
		require.Equal(t, uint16(1213), mysqlErrNumber(err), "the refusal names the deadlock")
		var n int
		require.ErrorIs(t, v.GetContext(ctx, &n, "SELECT COUNT(*) FROM t_effect"), txconsume.ErrTxAborted)
		require.ErrorIs(t, v.Commit(), txconsume.ErrTxAborted)
		require.NoError(t, txs[1-victim].Commit())

		require.Zero(t, f.effects("orphan"), "nothing after the deadlock committed on its own")
		require.Zero(t, f.effects([]string{"t0", "t1"}[victim]))
		require.Equal(t, 1, f.effects([]string{"t0", "t1"}[1-victim]))
		// The connection went back to the pool in a usable state.
		require.NoError(t, db.GetContext(ctx, &n, "SELECT COUNT(*) FROM t_effect"))
		require.Equal(t, 1, n)
	})

	t.Run("after a lock wait timeout the service's own transaction goes on, a Processor's does not", func(t *testing.T) {
		f := newFixture(t)
		db := f.guardedPool("innodb_lock_wait_timeout=1")
		blocker, err := f.db.BeginTxx(ctx, nil)
		require.NoError(t, err)
		defer func() { _ = blocker.Rollback() }()
		_, err = blocker.ExecContext(ctx, "UPDATE t_counter SET n = n WHERE name = 'x'")
		require.NoError(t, err)

		// The server rolled back the statement only (innodb_rollback_on_timeout is off by
		// default): a transaction of the service's own may retry it later.
		own, err := db.BeginTxx(ctx, nil)
		require.NoError(t, err)
		defer func() { _ = own.Rollback() }()
		_, err = own.ExecContext(ctx, "INSERT INTO t_effect (msg_key) VALUES ('own')")
		require.NoError(t, err)
		_, err = own.ExecContext(ctx, "UPDATE t_counter SET n = n + 1 WHERE name = 'x'")
		require.Equal(t, uint16(1205), mysqlErrNumber(err))

		// A handler that drops it gets its transaction refused: the Processor runs the whole
		// transaction again (here: not at all, no retries) rather than commit without the update.
		p := f.processor(db, "g", func(ctx context.Context, tx *sqlx.Tx, m *txconsume.Message) error {
			if _, err := tx.ExecContext(ctx, "UPDATE t_counter SET n = n + 1 WHERE name = 'x'"); err == nil {
				return errors.New("the update was expected to time out")
			}
			return recordEffect(ctx, tx, m) // refused; its error dropped too
		}, txconsume.WithMaxRetries(0))
		r, err := p.Process(ctx, msg("m"))
		require.ErrorIs(t, err, txconsume.ErrTxAborted)
		require.Equal(t, uint16(1205), mysqlErrNumber(err))
		require.Zero(t, r)

		require.NoError(t, blocker.Rollback())
		_, err = own.ExecContext(ctx, "UPDATE t_counter SET n = n + 1 WHERE name = 'x'")
		require.NoError(t, err, "the service's own transaction retries its statement")
		require.NoError(t, own.Commit())
		require.Equal(t, 1, f.effects("own"))
		require.Zero(t, f.effects("m"))
		require.Empty(t, f.outcome("g", "m"))
		require.Equal(t, []int{1, 0}, counters(t, f))
	})

	t.Run("the pool works as a plain one does", func(t *testing.T) {
		f := newFixture(t)
		for _, params := range []string{"", "interpolateParams=true"} {
			db := f.guardedPool(params)
			// Arguments the driver converts itself (uint64 above MaxInt64, nil), prepared
			// statements, column types and struct scanning.
			_, err := db.ExecContext(ctx, "CREATE TABLE IF NOT EXISTS t_types (u BIGINT UNSIGNED, s VARCHAR(8) NULL, b VARBINARY(8))")
			require.NoError(t, err)
			_, err = db.ExecContext(ctx, "INSERT INTO t_types VALUES (?, ?, ?)", uint64(1<<63+5), nil, []byte("raw"))
			require.NoError(t, err)
			checkTypes(ctx, t, db)
			_, err = db.ExecContext(ctx, "DROP TABLE t_types")
			require.NoError(t, err)

			// A transaction of the service's own may end itself by statement too.
			tx, err := db.BeginTxx(ctx, nil)
			require.NoError(t, err)
			_, err = tx.ExecContext(ctx, "INSERT INTO t_effect (msg_key) VALUES ('own')")
			require.NoError(t, err)
			_, err = tx.ExecContext(ctx, "COMMIT")
			require.NoError(t, err)
			_ = tx.Rollback()
		}
		require.Equal(t, 2, f.effects("own"))
	})

	t.Run("Open rejects a bad DSN", func(t *testing.T) {
		_, err := txconsume.Open("not a dsn")
		require.Error(t, err)
	})
}

// TestStatementsPerMessage counts what the protections cost in statements, which is what they
// cost in time on a statement-bound path: on a guarded pool nothing, on a plain pool three (four
// in row-lock mode). It counts the statements the server received on a pool of one connection.
// That New tells the two kinds of pool apart shows here too.
func TestStatementsPerMessage(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	_, err := f.db.ExecContext(ctx, "INSERT INTO t_order SELECT CONCAT('o-', seq), 'CREATED' FROM "+
		"(SELECT a.n * 10 + b.n AS seq FROM (SELECT 0 n UNION SELECT 1 UNION SELECT 2 UNION SELECT 3 UNION SELECT 4 "+
		"UNION SELECT 5 UNION SELECT 6 UNION SELECT 7 UNION SELECT 8 UNION SELECT 9) a, "+
		"(SELECT 0 n UNION SELECT 1 UNION SELECT 2 UNION SELECT 3 UNION SELECT 4 UNION SELECT 5 UNION SELECT 6 "+
		"UNION SELECT 7 UNION SELECT 8 UNION SELECT 9) b) s")
	require.NoError(t, err)
	const n = 20 // messages per variant; 100 orders cover three variants in row-lock mode
	// perMessage processes n messages; in row-lock mode (keys) they pay orders o-<first>... .
	perMessage := func(t *testing.T, db *sqlx.DB, p *txconsume.Processor, prefix string, keys bool, first int) float64 {
		db.SetMaxOpenConns(1)
		questions := func() int {
			var name string
			var q int
			require.NoError(t, db.QueryRowxContext(ctx, "SHOW SESSION STATUS LIKE 'Questions'").Scan(&name, &q))
			return q
		}
		m := func(i int) *txconsume.Message {
			m := msg(fmt.Sprintf("%s-%d", prefix, i))
			if keys {
				m.Keys = []string{fmt.Sprintf("o-%d", first+i)}
			}
			return m
		}
		_, err := p.Process(ctx, m(0)) // prepares the statements
		require.NoError(t, err)
		before := questions()
		for i := 1; i <= n; i++ {
			r, err := p.Process(ctx, m(i))
			require.NoError(t, err)
			require.Equal(t, txconsume.Applied, r)
		}
		return float64(questions()-before-1) / n // the second SHOW counts itself
	}
	for _, c := range []struct {
		name    string
		rowLock bool
		h       txconsume.Handler
		// statements per message: the handler's, plus BEGIN and COMMIT, plus the claim
		guarded, plain float64
	}{
		{"dedup mode", false, recordEffect, 4, 7},
		{"row-lock mode", true, payOrder(nil), 5, 9},
	} {
		t.Run(c.name, func(t *testing.T) {
			var opts []txconsume.Option
			if c.rowLock {
				opts = append(opts, txconsume.WithRowLock())
			}
			unprotectedDB, guardedDB, plainDB := f.pool("interpolateParams=true"), f.guardedPool("interpolateParams=true"), f.pool("interpolateParams=true")
			unprotected := perMessage(t, unprotectedDB, txconsume.Unprotected(f.processor(unprotectedDB, "u", c.h, opts...)), "u", c.rowLock, 0)
			guarded := perMessage(t, guardedDB, f.processor(guardedDB, "g", c.h, opts...), "g", c.rowLock, 30)
			plain := perMessage(t, plainDB, f.processor(plainDB, "p", c.h, opts...), "p", c.rowLock, 60)
			require.Equal(t, unprotected, guarded, "a guarded pool costs no statement")
			require.Equal(t, c.guarded, guarded)
			require.Equal(t, c.plain, plain)
		})
	}
}

// checkTypes reads t_types back through a prepared statement and a query, checking the values
// the driver converted and the column types it reports.
func checkTypes(ctx context.Context, t *testing.T, db *sqlx.DB) {
	t.Helper()
	stmt, err := db.PreparexContext(ctx, "SELECT u, s, b FROM t_types WHERE u = ?")
	require.NoError(t, err)
	defer stmt.Close()
	var row struct {
		U uint64         `db:"u"`
		S sql.NullString `db:"s"`
		B []byte         `db:"b"`
	}
	require.NoError(t, stmt.GetContext(ctx, &row, uint64(1<<63+5)))
	require.Equal(t, uint64(1<<63+5), row.U)
	require.False(t, row.S.Valid)
	require.Equal(t, []byte("raw"), row.B)

	rows, err := db.QueryContext(ctx, "SELECT u, s FROM t_types")
	require.NoError(t, err)
	defer rows.Close()
	types, err := rows.ColumnTypes()
	require.NoError(t, err)
	require.Equal(t, "UNSIGNED BIGINT", types[0].DatabaseTypeName())
	nullable, ok := types[1].Nullable()
	require.True(t, ok)
	require.True(t, nullable)
	for rows.Next() {
	}
	require.NoError(t, rows.Err())
}
