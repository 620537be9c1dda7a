package idem_test

import (
	"context"
	"database/sql"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/stretchr/testify/require"

	"github.com/txconsume/txconsume/internal/testenv"
	"github.com/txconsume/txconsume/migrations"
	"github.com/txconsume/txconsume/txconsume/idem"
	"github.com/txconsume/txconsume/txconsume/idem/idemtest"
)

// setupMySQL gives a subtest a fresh database with the txconsume schema and an effects table.
func setupMySQL(t testing.TB) (dsn string, db *sql.DB) {
	t.Helper()
	dsn = testenv.MySQLDSN(t)
	db = testenv.OpenMySQL(t, dsn).DB
	ctx := context.Background()
	require.NoError(t, migrations.Up(ctx, db))
	_, err := db.ExecContext(ctx, `CREATE TABLE idem_effects (
		id BIGINT AUTO_INCREMENT PRIMARY KEY,
		effect_key VARBINARY(255) NOT NULL,
		KEY (effect_key)
	) ENGINE = InnoDB`)
	require.NoError(t, err)
	return dsn, db
}

func TestMySQLStore(t *testing.T) {
	idemtest.Run(t, func(t *testing.T) idemtest.Backend {
		dsn, db := setupMySQL(t)
		var instances atomic.Int64
		return idemtest.Backend{
			NewStore: func(t *testing.T) (idem.Store, func()) {
				pool := testenv.OpenMySQL(t, instanceDSN(t, dsn, int(instances.Add(1)))).DB
				var once sync.Once
				return idem.NewMySQLStore(pool), func() { once.Do(func() { _ = pool.Close() }) }
			},
			Unreachable: func(t *testing.T) idem.Store {
				cfg, err := mysql.ParseDSN(dsn)
				require.NoError(t, err)
				cfg.Addr = closedAddr(t)
				cfg.Timeout = 2 * time.Second
				pool, err := sql.Open("mysql", cfg.FormatDSN())
				require.NoError(t, err)
				t.Cleanup(func() { _ = pool.Close() })
				return idem.NewMySQLStore(pool)
			},
			Effects: mysqlEffects{db: db},
		}
	})
}

// instanceDSN gives the n-th store instance of a subtest its own session settings, so that the
// instances that share records disagree on what must not matter: the session time zone (expiry
// is computed with UTC_TIMESTAMP, not NOW) and clientFoundRows (which changes what "rows
// affected" means for an upsert).
func instanceDSN(t *testing.T, dsn string, n int) string {
	t.Helper()
	cfg, err := mysql.ParseDSN(dsn)
	require.NoError(t, err)
	if cfg.Params == nil {
		cfg.Params = map[string]string{}
	}
	if n%2 == 0 {
		cfg.Params["time_zone"] = "'+09:00'"
		cfg.ClientFoundRows = true
	} else {
		cfg.Params["time_zone"] = "'-05:00'"
	}
	return cfg.FormatDSN()
}

// mysqlEffects counts effects as rows of a table in the same database as the records.
type mysqlEffects struct{ db *sql.DB }

func (e mysqlEffects) Record(ctx context.Context, key string) error {
	_, err := e.db.ExecContext(ctx, "INSERT INTO idem_effects (effect_key) VALUES (?)", key)
	return err
}

func (e mysqlEffects) Count(ctx context.Context, key string) (int, error) {
	var n int
	err := e.db.QueryRowContext(ctx, "SELECT COUNT(*) FROM idem_effects WHERE effect_key = ?", key).Scan(&n)
	return n, err
}
