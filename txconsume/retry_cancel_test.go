package txconsume_test

import (
	"context"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/jmoiron/sqlx"
	"github.com/stretchr/testify/require"

	"github.com/txconsume/txconsume/txconsume"
)

// TestRetryAbandonedOnCancel proves that a context that ends while a lock-conflict retry waits
// ends the wait and that the returned error says so (errors.Is context.Canceled) besides
// carrying the lock conflict, for Process and ProcessBatch alike.
func TestRetryAbandonedOnCancel(t *testing.T) {
	setup := func(t *testing.T) (*fixture, *txconsume.Processor, *counting, context.Context) {
		f := newFixture(t)
		ctx, cancel := context.WithCancel(context.Background())
		t.Cleanup(cancel)
		h := count(func(ctx context.Context, tx *sqlx.Tx, m *txconsume.Message) error {
			if err := recordEffect(ctx, tx, m); err != nil {
				return err
			}
			return &mysql.MySQLError{Number: 1213, Message: "Deadlock found when trying to get lock"}
		})
		p := f.processor(nil, "g", h.handle,
			txconsume.WithRetryBackoff(time.Hour, time.Hour), // only the context can end the wait
			txconsume.WithHooks(txconsume.Hooks{OnRetry: func(context.Context, []*txconsume.Message, int, error, time.Duration) {
				cancel()
			}}))
		return f, p, h, ctx
	}

	t.Run("Process", func(t *testing.T) {
		f, p, h, ctx := setup(t)
		_, err := p.Process(ctx, msg("a"))
		require.ErrorIs(t, err, context.Canceled)
		require.Equal(t, uint16(1213), mysqlErrNumber(err), "the lock conflict is kept")
		require.Equal(t, 1, h.n("a"))
		require.Zero(t, f.totalEffects())
		require.Zero(t, f.dedupRows())
	})

	t.Run("ProcessBatch", func(t *testing.T) {
		f, p, h, ctx := setup(t)
		rs, err := p.ProcessBatch(ctx, msgs("a", "b"))
		require.ErrorIs(t, err, context.Canceled)
		require.Equal(t, uint16(1213), mysqlErrNumber(err))
		require.Nil(t, rs)
		require.Equal(t, 1, h.n("a"))
		require.Zero(t, f.totalEffects())
		require.Zero(t, f.dedupRows())
	})
}
