package txconsume_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/jmoiron/sqlx"
	"github.com/stretchr/testify/require"

	"github.com/txconsume/txconsume/txconsume"
)

// TestProcessBatchLarge proves that a batch larger than one statement can bind (the server
// accepts at most 65535 placeholders per prepared statement, and the claim binds six per key)
// is claimed and applied once, and that its redelivery is all duplicates.
func TestProcessBatchLarge(t *testing.T) {
	ctx := context.Background()
	const n = 12000 // 6*n+1 > 65535
	setup := func(t *testing.T) (*fixture, []*txconsume.Message) {
		f := newFixture(t)
		batch := make([]*txconsume.Message, n)
		for i := range batch {
			batch[i] = msg(fmt.Sprintf("m-%05d", i))
		}
		return f, batch
	}

	t.Run("every message applies once and a redelivery is all duplicates", func(t *testing.T) {
		f, batch := setup(t)
		p := f.processor(nil, "g", recordEffect)
		rs, err := p.ProcessBatch(ctx, batch)
		require.NoError(t, err)
		for i, r := range rs {
			require.Equal(t, txconsume.Applied, r, "message %d", i)
		}
		require.Equal(t, n, f.totalEffects())
		require.Equal(t, n, f.dedupRows())

		rs, err = p.ProcessBatch(ctx, batch)
		require.NoError(t, err)
		for i, r := range rs {
			require.Equal(t, txconsume.Duplicate, r, "message %d", i)
		}
		require.Equal(t, n, f.totalEffects())
	})

	t.Run("a failing message of a large batch fails alone and is not claimed", func(t *testing.T) {
		f, batch := setup(t)
		const bad = 7001 // in a later chunk than the first
		p := f.processor(nil, "g", func(ctx context.Context, tx *sqlx.Tx, m *txconsume.Message) error {
			if m.ID == batch[bad].ID {
				return errors.New("boom")
			}
			return recordEffect(ctx, tx, m)
		})
		rs, err := p.ProcessBatch(ctx, batch)
		var be *txconsume.BatchError
		require.ErrorAs(t, err, &be)
		require.Len(t, be.Failures, 1)
		require.Equal(t, bad, be.Failures[0].Index)
		for i, r := range rs {
			if i != bad {
				require.Equal(t, txconsume.Applied, r, "message %d", i)
			}
		}
		require.Equal(t, n-1, f.totalEffects())
		require.Equal(t, n-1, f.dedupRows())
		require.Empty(t, f.outcome("g", batch[bad].ID), "a redelivery applies it")
	})
}
