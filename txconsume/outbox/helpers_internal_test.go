package outbox

import (
	"context"
	"strconv"
	"testing"

	"github.com/go-sql-driver/mysql"
	"github.com/jmoiron/sqlx"
	"github.com/stretchr/testify/require"

	"github.com/txconsume/txconsume/internal/testenv"
)

// migratedDB returns a pool on a fresh database with txconsume's schema, and a function that
// opens another pool on the same database with extra DSN parameters.
func migratedDB(t *testing.T) (*sqlx.DB, func(params map[string]string) *sqlx.DB) {
	t.Helper()
	db, dsn := MigratedDB(t)
	open := func(params map[string]string) *sqlx.DB {
		cfg, err := mysql.ParseDSN(dsn)
		require.NoError(t, err)
		if cfg.Params == nil {
			cfg.Params = map[string]string{}
		}
		for k, v := range params {
			cfg.Params[k] = v
		}
		return testenv.OpenMySQL(t, cfg.FormatDSN())
	}
	return db, open
}

// insertCommitted enqueues n messages of topic in one committed transaction, without waking
// any relay, and returns their row ids.
func insertCommitted(t *testing.T, db *sqlx.DB, topic string, n int) []uint64 {
	t.Helper()
	ctx := context.Background()
	rows := make([]row, n)
	for i := range rows {
		var err error
		rows[i], err = newRow(ctx, &Message{Topic: topic, Body: []byte(strconv.Itoa(i))})
		require.NoError(t, err)
	}
	tx, err := db.Beginx()
	require.NoError(t, err)
	require.NoError(t, insertRows(ctx, tx, rows))
	require.NoError(t, tx.Commit())
	var ids []uint64
	require.NoError(t, db.Select(&ids, "SELECT id FROM "+Table+" ORDER BY id DESC LIMIT ?", n))
	return ids
}

func candidatesOf(t *testing.T, q sqlx.Queryer, ids []uint64) []candidate {
	t.Helper()
	var cands []candidate
	query, args, err := sqlx.In("SELECT id, shard, size FROM "+Table+" WHERE id IN (?) ORDER BY id", ids)
	require.NoError(t, err)
	require.NoError(t, sqlx.Select(q, &cands, query, args...))
	return cands
}
