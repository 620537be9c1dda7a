package outbox

import (
	"context"
	"testing"

	rocketmq "github.com/apache/rocketmq-client-go/v2"
	"github.com/apache/rocketmq-client-go/v2/primitive"
	"github.com/apache/rocketmq-client-go/v2/producer"
	"github.com/jmoiron/sqlx"
	"github.com/stretchr/testify/require"

	"github.com/txconsume/txconsume/internal/testenv"
	"github.com/txconsume/txconsume/migrations"
)

// MigratedDB returns a pool on a fresh database with txconsume's schema, and its DSN. Tests of
// both packages use it.
func MigratedDB(t *testing.T) (*sqlx.DB, string) {
	t.Helper()
	if testing.Short() {
		t.Skip("integration test: needs MySQL (run without -short)")
	}
	dsn := testenv.MySQLDSN(t)
	db := testenv.OpenMySQL(t, dsn)
	require.NoError(t, migrations.Up(context.Background(), db.DB))
	return db, dsn
}

// StartProducer starts a producer on the name server with the outbox's queue selector (or the
// options given instead), shut down when the test ends. Tests of both packages use it.
func StartProducer(t testing.TB, nameServer string, opts ...producer.Option) rocketmq.Producer {
	t.Helper()
	if len(opts) == 0 {
		opts = []producer.Option{producer.WithQueueSelector(QueueSelector())}
	}
	opts = append([]producer.Option{
		producer.WithNsResolver(primitive.NewPassthroughResolver([]string{nameServer})),
		producer.WithGroupName(testenv.UniqueName(t, "p")),
		producer.WithInstanceName(testenv.UniqueName(t, "p")),
		producer.WithRetry(1),
	}, opts...)
	p, err := rocketmq.NewProducer(opts...)
	require.NoError(t, err)
	require.NoError(t, p.Start())
	t.Cleanup(func() { _ = p.Shutdown() })
	return p
}
