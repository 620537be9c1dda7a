package migrations_test

import (
	"context"
	"database/sql"
	"io/fs"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/txconsume/txconsume/internal/testenv"
	"github.com/txconsume/txconsume/migrations"
)

func TestFSHoldsNumberedSQLFiles(t *testing.T) {
	names, err := fs.Glob(migrations.FS, "*.sql")
	require.NoError(t, err)
	require.Contains(t, names, "00001_txconsume_dedup.sql")
}

func TestMigrations(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: needs MySQL")
	}
	ctx := context.Background()

	setup := func(t *testing.T) (string, *sql.DB) {
		dsn := testenv.MySQLDSN(t)
		return dsn, testenv.OpenMySQL(t, dsn).DB
	}
	tableExists := func(t *testing.T, db *sql.DB, name string) bool {
		var n int
		require.NoError(t, db.QueryRowContext(ctx,
			"SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = DATABASE() AND table_name = ?",
			name).Scan(&n))
		return n == 1
	}
	// appliedRows counts version-table rows per version: each version must appear exactly once.
	appliedRows := func(t *testing.T, db *sql.DB) map[int64]int {
		rows, err := db.QueryContext(ctx, "SELECT version_id, COUNT(*) FROM "+migrations.VersionTable+
			" WHERE is_applied GROUP BY version_id")
		require.NoError(t, err)
		defer rows.Close()
		out := map[int64]int{}
		for rows.Next() {
			var v int64
			var n int
			require.NoError(t, rows.Scan(&v, &n))
			out[v] = n
		}
		require.NoError(t, rows.Err())
		return out
	}
	sources := func(t *testing.T) int {
		names, err := fs.Glob(migrations.FS, "*.sql")
		require.NoError(t, err)
		return len(names)
	}

	t.Run("up creates the tables and a second up is a no-op", func(t *testing.T) {
		_, db := setup(t)
		require.NoError(t, migrations.Up(ctx, db))
		require.True(t, tableExists(t, db, "txconsume_dedup"))
		first := appliedRows(t, db)
		require.Len(t, first, sources(t)+1, "every file plus goose's version 0")

		require.NoError(t, migrations.Up(ctx, db))
		require.Equal(t, first, appliedRows(t, db))

		st, err := migrations.Statuses(ctx, db)
		require.NoError(t, err)
		require.Len(t, st, sources(t))
		require.Equal(t, "00001_txconsume_dedup.sql", st[0].Name)
		for _, s := range st {
			require.True(t, s.Applied, s.Name)
		}
	})

	t.Run("status before any migration", func(t *testing.T) {
		_, db := setup(t)
		st, err := migrations.Statuses(ctx, db)
		require.NoError(t, err)
		for _, s := range st {
			require.False(t, s.Applied, s.Name)
		}
	})

	t.Run("down rolls back one step at a time and up re-applies", func(t *testing.T) {
		_, db := setup(t)
		require.NoError(t, migrations.Up(ctx, db))
		for i := 0; i < sources(t); i++ {
			require.True(t, tableExists(t, db, "txconsume_dedup"), "00001 is the last one rolled back")
			require.NoError(t, migrations.Down(ctx, db))
			require.Len(t, appliedRows(t, db), sources(t)-i, "one step per Down")
		}
		require.False(t, tableExists(t, db, "txconsume_dedup"))
		require.ErrorIs(t, migrations.Down(ctx, db), migrations.ErrNoApplied)

		require.NoError(t, migrations.Up(ctx, db))
		require.True(t, tableExists(t, db, "txconsume_dedup"))
	})

	t.Run("UpFS applies a service's own schema beside txconsume's", func(t *testing.T) {
		_, db := setup(t)
		own := fstest.MapFS{
			"00001_widgets.sql": {Data: []byte("-- +goose Up\nCREATE TABLE widgets (id INT PRIMARY KEY);\n" +
				"-- +goose Down\nDROP TABLE widgets;\n")},
		}
		require.NoError(t, migrations.Up(ctx, db))
		require.NoError(t, migrations.UpFS(ctx, db, own, "widgets_version"))
		require.NoError(t, migrations.UpFS(ctx, db, own, "widgets_version"), "a second run is a no-op")
		require.True(t, tableExists(t, db, "widgets"))
		var versions []int64
		rows, err := db.QueryContext(ctx, "SELECT version_id FROM widgets_version ORDER BY id")
		require.NoError(t, err)
		defer rows.Close()
		for rows.Next() {
			var v int64
			require.NoError(t, rows.Scan(&v))
			versions = append(versions, v)
		}
		require.NoError(t, rows.Err())
		require.Equal(t, []int64{0, 1}, versions, "its own history, apart from txconsume's")
		require.Len(t, appliedRows(t, db), sources(t)+1, "txconsume's history is untouched")
	})

	t.Run("instances starting at the same instant all succeed", func(t *testing.T) {
		// Without anything to queue on first, the instances race for the lock itself; repeated
		// because the window in which one of them could read the version table half made is short.
		for round := range 10 {
			dsn, db := setup(t)
			const instances = 4
			errs := make([]error, instances)
			var wg sync.WaitGroup
			for i := range instances {
				pool := testenv.OpenMySQL(t, dsn).DB
				wg.Go(func() { errs[i] = migrations.Up(ctx, pool) })
			}
			wg.Wait()
			for i, err := range errs {
				require.NoError(t, err, "round %d, instance %d", round, i)
			}
			for v, n := range appliedRows(t, db) {
				require.Equal(t, 1, n, "round %d: version %d applied %d times", round, v, n)
			}
			require.Len(t, appliedRows(t, db), sources(t)+1)
		}
	})

	t.Run("concurrent instances apply each migration exactly once", func(t *testing.T) {
		dsn, db := setup(t)
		const instances = 8
		pools := make([]*sql.DB, instances)
		for i := range pools {
			pools[i] = testenv.OpenMySQL(t, dsn).DB
		}

		// Hold the migration lock from outside so that all instances provably queue on it,
		// then let them go at once.
		holder, err := db.Conn(ctx)
		require.NoError(t, err)
		defer holder.Close()
		var name string
		require.NoError(t, holder.QueryRowContext(ctx,
			"SELECT CONCAT('txconsume_migrate_', LEFT(SHA2(DATABASE(), 256), 32))").Scan(&name))
		var got int
		require.NoError(t, holder.QueryRowContext(ctx, "SELECT GET_LOCK(?, 10)", name).Scan(&got))
		require.Equal(t, 1, got)

		errs := make([]error, instances)
		var wg sync.WaitGroup
		for i := range pools {
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs[i] = migrations.Up(ctx, pools[i])
			}()
		}
		require.Eventually(t, func() bool {
			var waiting int
			require.NoError(t, db.QueryRowContext(ctx,
				"SELECT COUNT(*) FROM information_schema.processlist WHERE info LIKE 'SELECT GET_LOCK(%' AND db = DATABASE()").
				Scan(&waiting))
			return waiting == instances
		}, time.Minute, 20*time.Millisecond, "all instances wait on the migration lock")
		require.NoError(t, holder.QueryRowContext(ctx, "SELECT RELEASE_LOCK(?)", name).Scan(&got))
		require.Equal(t, 1, got)
		wg.Wait()

		for i, err := range errs {
			require.NoError(t, err, "instance %d", i)
		}
		rows := appliedRows(t, db)
		require.Len(t, rows, sources(t)+1)
		for v, n := range rows {
			require.Equal(t, 1, n, "version %d recorded %d times", v, n)
		}
		var total int
		require.NoError(t, db.QueryRowContext(ctx, "SELECT COUNT(*) FROM "+migrations.VersionTable).Scan(&total))
		require.Equal(t, sources(t)+1, total, "no version row written twice, applied or not")
	})
}

func TestCheck(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: needs MySQL")
	}
	ctx := context.Background()
	db := testenv.MySQL(t).DB

	err := migrations.Check(ctx, db)
	require.ErrorIs(t, err, migrations.ErrNotMigrated, "a fresh database")
	require.ErrorContains(t, err, "none of the")
	require.ErrorContains(t, err, "migrations.Up")
	require.ErrorContains(t, err, "txconsume migrate up")

	require.NoError(t, migrations.Up(ctx, db))
	require.NoError(t, migrations.Check(ctx, db))

	statuses, err := migrations.Statuses(ctx, db)
	require.NoError(t, err)
	latest := statuses[len(statuses)-1].Name
	require.NoError(t, migrations.Down(ctx, db))
	err = migrations.Check(ctx, db)
	require.ErrorIs(t, err, migrations.ErrNotMigrated, "the newest migration rolled back")
	require.ErrorContains(t, err, "pending: "+latest)

	require.NoError(t, migrations.Up(ctx, db))
	require.NoError(t, migrations.Check(ctx, db))
}
