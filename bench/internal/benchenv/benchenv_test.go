package benchenv_test

import (
	"testing"

	"github.com/go-sql-driver/mysql"
	"github.com/stretchr/testify/require"

	"github.com/txconsume/txconsume/bench/internal/benchenv"
)

// baseFrom returns BaseDSN, parsed, for the given TXCONSUME_MYSQL_DSN.
func baseFrom(t *testing.T, dsn string) (string, *mysql.Config) {
	t.Helper()
	t.Setenv(benchenv.EnvMySQLDSN, dsn)
	base, err := benchenv.BaseDSN()
	require.NoError(t, err)
	cfg, err := mysql.ParseDSN(base)
	require.NoError(t, err)
	return base, cfg
}

func TestBaseDSN(t *testing.T) {
	t.Run("interpolateParams is added and the database name dropped", func(t *testing.T) {
		base, cfg := baseFrom(t, "u:p@tcp(127.0.0.1:3306)/txconsume")
		require.True(t, cfg.InterpolateParams)
		require.Empty(t, cfg.DBName)
		require.Equal(t, "127.0.0.1:3306", cfg.Addr)

		cfg, err := mysql.ParseDSN(benchenv.DSNFor(base, "txbench_x"))
		require.NoError(t, err)
		require.Equal(t, "txbench_x", cfg.DBName)
	})
	t.Run("an explicit interpolateParams=false is kept", func(t *testing.T) {
		_, cfg := baseFrom(t, "u:p@tcp(127.0.0.1:3306)/txconsume?interpolateParams=false")
		require.False(t, cfg.InterpolateParams)
	})
	t.Run("unset or malformed: an error that says what to do", func(t *testing.T) {
		t.Setenv(benchenv.EnvMySQLDSN, "")
		_, err := benchenv.BaseDSN()
		require.ErrorContains(t, err, "scripts/services.sh env")
		t.Setenv(benchenv.EnvMySQLDSN, "not a dsn")
		_, err = benchenv.BaseDSN()
		require.ErrorContains(t, err, benchenv.EnvMySQLDSN)
	})
}

func TestNameServer(t *testing.T) {
	t.Setenv(benchenv.EnvNamesrv, "")
	_, err := benchenv.NameServer()
	require.ErrorContains(t, err, benchenv.EnvNamesrv)
	t.Setenv(benchenv.EnvNamesrv, "127.0.0.1:9876")
	ns, err := benchenv.NameServer()
	require.NoError(t, err)
	require.Equal(t, "127.0.0.1:9876", ns)
}
