package txconsume_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/jmoiron/sqlx"
	"github.com/stretchr/testify/require"

	"github.com/txconsume/txconsume/txconsume"
)

func mysqlErrNumber(err error) uint16 {
	var me *mysql.MySQLError
	if errors.As(err, &me) {
		return me.Number
	}
	return 0
}

// retryLog records OnRetry calls.
type retryLog struct {
	mu   sync.Mutex
	errs []error
	ch   chan error
}

func newRetryLog() *retryLog { return &retryLog{ch: make(chan error, 100)} }

func (l *retryLog) hooks() txconsume.Hooks {
	return txconsume.Hooks{OnRetry: func(_ context.Context, _ []*txconsume.Message, _ int, err error, _ time.Duration) {
		l.mu.Lock()
		l.errs = append(l.errs, err)
		l.mu.Unlock()
		l.ch <- err
	}}
}

// any reports whether one of the retried errors satisfies f.
func (l *retryLog) any(f func(error) bool) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, e := range l.errs {
		if f(e) {
			return true
		}
	}
	return false
}

func (l *retryLog) numbers() []uint16 {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []uint16
	for _, e := range l.errs {
		out = append(out, mysqlErrNumber(e))
	}
	return out
}

func TestLockConflictRetries(t *testing.T) {
	ctx := context.Background()
	counter := func(t *testing.T, f *fixture, name string) int {
		var n int
		require.NoError(t, f.db.Get(&n, "SELECT n FROM t_counter WHERE name = ?", name))
		return n
	}

	for _, iso := range isolations {
		t.Run("a real deadlock reruns the victim's whole transaction/"+iso.String(), func(t *testing.T) {
			f := newFixture(t)
			h := crossingUpdates()
			retries := newRetryLog()
			p := f.processor(nil, "g", h, txconsume.WithIsolation(iso), txconsume.WithHooks(retries.hooks()))
			results := make([]txconsume.Result, 2)
			errs := make([]error, 2)
			runConcurrently(2, func(i int) { results[i], errs[i] = p.Process(ctx, msg([]string{"A", "B"}[i])) })

			require.NoError(t, errs[0])
			require.NoError(t, errs[1])
			require.Equal(t, []txconsume.Result{txconsume.Applied, txconsume.Applied}, results)
			require.Contains(t, retries.numbers(), uint16(1213), "a deadlock happened and was retried")
			require.Equal(t, 2, counter(t, f, "x"), "each message applied exactly once")
			require.Equal(t, 2, counter(t, f, "y"))
			require.Equal(t, 1, f.effects("A"))
			require.Equal(t, 1, f.effects("B"))
		})
	}

	t.Run("a lock wait timeout is retried", func(t *testing.T) {
		f := newFixture(t)
		db := f.pool("innodb_lock_wait_timeout=1")
		retries := newRetryLog()
		p := f.processor(db, "g", func(ctx context.Context, tx *sqlx.Tx, m *txconsume.Message) error {
			if _, err := tx.ExecContext(ctx, "UPDATE t_counter SET n = n + 1 WHERE name = 'x'"); err != nil {
				return err
			}
			return recordEffect(ctx, tx, m)
		}, txconsume.WithHooks(retries.hooks()))

		blocker, err := f.db.BeginTxx(ctx, nil)
		require.NoError(t, err)
		_, err = blocker.ExecContext(ctx, "UPDATE t_counter SET n = n WHERE name = 'x'")
		require.NoError(t, err)

		type out struct {
			r   txconsume.Result
			err error
		}
		done := make(chan out, 1)
		go func() {
			r, err := p.Process(ctx, msg("m"))
			done <- out{r, err}
		}()
		require.Equal(t, uint16(1205), mysqlErrNumber(<-retries.ch), "the first attempt timed out on the lock")
		require.NoError(t, blocker.Commit())
		res := <-done
		require.NoError(t, res.err)
		require.Equal(t, txconsume.Applied, res.r)
		require.Equal(t, 1, counter(t, f, "x"))
		require.Equal(t, 1, f.effects("m"))
	})

	t.Run("retries are bounded and leave nothing behind", func(t *testing.T) {
		f := newFixture(t)
		db := f.pool("innodb_lock_wait_timeout=1")
		calls := count(func(ctx context.Context, tx *sqlx.Tx, m *txconsume.Message) error {
			if err := recordEffect(ctx, tx, m); err != nil {
				return err
			}
			_, err := tx.ExecContext(ctx, "UPDATE t_counter SET n = n + 1 WHERE name = 'x'")
			return err
		})
		p := f.processor(db, "g", calls.handle, txconsume.WithMaxRetries(1),
			txconsume.WithRetryBackoff(time.Millisecond, time.Millisecond))

		blocker, err := f.db.BeginTxx(ctx, nil)
		require.NoError(t, err)
		defer func() { _ = blocker.Rollback() }()
		_, err = blocker.ExecContext(ctx, "UPDATE t_counter SET n = n WHERE name = 'x'")
		require.NoError(t, err)

		_, err = p.Process(ctx, msg("m"))
		require.ErrorIs(t, err, txconsume.ErrRetriesExhausted)
		require.Equal(t, uint16(1205), mysqlErrNumber(err))
		require.Equal(t, 2, calls.n("m"), "one attempt and one retry, handler included")
		require.NoError(t, blocker.Rollback())
		require.Equal(t, 0, f.effects("m"))
		require.Equal(t, 0, f.dedupRows())
	})
}
