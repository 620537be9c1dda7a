package txconsume_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/jmoiron/sqlx"
	"github.com/stretchr/testify/require"

	"github.com/txconsume/txconsume/txconsume"
)

// payOrder is the row-lock handler of the article: lock the order, and if it is already in its
// target state report ErrAlreadyApplied; otherwise move it and record the effect.
func payOrder(onLocked func(ctx context.Context) error) txconsume.Handler {
	return func(ctx context.Context, tx *sqlx.Tx, m *txconsume.Message) error {
		orderNo := m.Keys[0]
		var status string
		if err := tx.GetContext(ctx, &status, "SELECT status FROM t_order WHERE order_no = ? FOR UPDATE", orderNo); err != nil {
			return err
		}
		if onLocked != nil {
			if err := onLocked(ctx); err != nil {
				return err
			}
		}
		if status == "PAID" {
			return fmt.Errorf("order %s is paid: %w", orderNo, txconsume.ErrAlreadyApplied)
		}
		if _, err := tx.ExecContext(ctx, "UPDATE t_order SET status = 'PAID' WHERE order_no = ?", orderNo); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, "INSERT INTO t_effect (msg_key) VALUES (?)", orderNo)
		return err
	}
}

func TestRowLockMode(t *testing.T) {
	ctx := context.Background()
	setup := func(t *testing.T) *fixture {
		f := newFixture(t)
		_, err := f.db.ExecContext(ctx, "INSERT INTO t_order VALUES ('o-1', 'CREATED')")
		require.NoError(t, err)
		return f
	}
	payment := func(id string) *txconsume.Message {
		return &txconsume.Message{ID: id, Topic: "payments", Keys: []string{"o-1"}}
	}

	for _, iso := range isolations {
		t.Run("16 concurrent duplicates apply once/"+iso.String(), func(t *testing.T) {
			f := setup(t)
			var first atomic.Bool
			// The first to lock the order holds it until the 15 others queue behind it.
			h := payOrder(func(ctx context.Context) error {
				if first.CompareAndSwap(false, true) {
					return waitForStatements(ctx, f.db, "SELECT status FROM t_order", 15)
				}
				return nil
			})
			p := f.processor(nil, "g", h, txconsume.WithRowLock(), txconsume.WithIsolation(iso))
			results := make([]txconsume.Result, 16)
			errs := make([]error, 16)
			// Different message IDs: row-lock mode deduplicates by business state, not by key.
			runConcurrently(16, func(i int) { results[i], errs[i] = p.Process(ctx, payment(fmt.Sprintf("m-%d", i))) })
			for _, err := range errs {
				require.NoError(t, err)
			}
			require.Equal(t, 1, countResult(results, txconsume.Applied))
			require.Equal(t, 15, countResult(results, txconsume.Duplicate))
			require.Equal(t, 1, f.effects("o-1"))
			require.Equal(t, 0, f.dedupRows(), "row-lock mode writes no dedup rows")

			r, err := p.Process(ctx, payment("m-late"))
			require.NoError(t, err)
			require.Equal(t, txconsume.Duplicate, r)
		})
	}

	t.Run("Discard rolls back and records nothing", func(t *testing.T) {
		f := setup(t)
		calls := count(func(ctx context.Context, tx *sqlx.Tx, m *txconsume.Message) error {
			if err := recordEffect(ctx, tx, m); err != nil {
				return err
			}
			return txconsume.Discard(nil)
		})
		p := f.processor(nil, "g", calls.handle, txconsume.WithRowLock())
		for range 2 {
			r, err := p.Process(ctx, payment("m"))
			require.NoError(t, err)
			require.Equal(t, txconsume.Discarded, r)
		}
		require.Equal(t, 2, calls.n("m"), "nothing records a discard in row-lock mode")
		require.Equal(t, 0, f.totalEffects())
		require.Equal(t, 0, f.dedupRows())
	})
}
