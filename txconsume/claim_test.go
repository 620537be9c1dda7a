package txconsume_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/txconsume/txconsume/txconsume"
)

// TestProcessBatchClaims checks the batch claim on both meanings of the affected-rows count
// (clientFoundRows false and true), since it skips the read-back of claimed keys when the count
// says that every key was new: new keys apply, keys consumed before are Duplicate, in every mix.
func TestProcessBatchClaims(t *testing.T) {
	ctx := context.Background()
	A, D := txconsume.Applied, txconsume.Duplicate
	for _, params := range []string{"clientFoundRows=false", "clientFoundRows=true"} {
		t.Run(params, func(t *testing.T) {
			f := newFixture(t)
			h := count(recordEffect)
			p := f.processor(f.pool(params), "g", h.handle)

			rs, err := p.ProcessBatch(ctx, msgs("a", "b", "c"))
			require.NoError(t, err)
			require.Equal(t, []txconsume.Result{A, A, A}, rs, "all new")

			rs, err = p.ProcessBatch(ctx, msgs("d", "a", "e", "c"))
			require.NoError(t, err)
			require.Equal(t, []txconsume.Result{A, D, A, D}, rs, "a mix")

			rs, err = p.ProcessBatch(ctx, msgs("e", "b", "d"))
			require.NoError(t, err)
			require.Equal(t, []txconsume.Result{D, D, D}, rs, "all consumed")

			// Twice in a row: an existing row's token alternates, and must not be taken for a claim
			// either way.
			rs, err = p.ProcessBatch(ctx, msgs("e", "b", "f"))
			require.NoError(t, err)
			require.Equal(t, []txconsume.Result{D, D, A}, rs)

			for _, id := range []string{"a", "b", "c", "d", "e", "f"} {
				require.Equal(t, 1, f.effects(id), id)
				require.Equal(t, 1, h.n(id), id)
			}
			require.Equal(t, 6, f.dedupRows())
		})
	}
}
