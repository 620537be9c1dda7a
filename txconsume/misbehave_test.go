package txconsume_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/txconsume/txconsume/txconsume"
)

// The tests in this file hold the library to what it promises when user code misbehaves.

func TestPanickingKeyFunc(t *testing.T) {
	ctx := context.Background()
	A := txconsume.Applied
	keyPanics := txconsume.WithKeyFunc(func(m *txconsume.Message) (string, error) {
		if m.ID == "boom" {
			panic("key bug")
		}
		return m.ID, nil
	})
	requirePanic := func(t *testing.T, err error) {
		t.Helper()
		var pe *txconsume.PanicError
		require.ErrorAs(t, err, &pe)
		require.Equal(t, "key bug", pe.Value)
		require.NotEmpty(t, pe.Stack)
	}

	t.Run("Process returns a *PanicError and reports it to OnResult", func(t *testing.T) {
		f := newFixture(t)
		h := count(recordEffect)
		log := newResultLog()
		p := f.processor(nil, "g", h.handle, keyPanics, txconsume.WithHooks(txconsume.Hooks{OnResult: log.onResult}))
		r, err := p.Process(ctx, msg("boom"))
		requirePanic(t, err)
		require.Zero(t, r)
		require.Equal(t, []txconsume.Result{0}, log.seen["boom"])
		requirePanic(t, log.errs["boom"][0])
		require.Zero(t, h.n("boom"))
		require.Zero(t, f.dedupRows())
	})

	t.Run("ProcessBatch fails only the message whose key panicked", func(t *testing.T) {
		f := newFixture(t)
		h := count(recordEffect)
		log := newResultLog()
		p := f.processor(nil, "g", h.handle, keyPanics, txconsume.WithHooks(txconsume.Hooks{OnResult: log.onResult}))
		rs, err := p.ProcessBatch(ctx, msgs("a", "boom", "b"))
		var be *txconsume.BatchError
		require.ErrorAs(t, err, &be)
		require.Len(t, be.Failures, 1)
		require.Equal(t, 1, be.Failures[0].Index)
		requirePanic(t, be.Failures[0].Err)
		require.Equal(t, []txconsume.Result{A, 0, A}, rs)
		require.Equal(t, map[string][]txconsume.Result{"a": {A}, "boom": {0}, "b": {A}}, log.seen)
		requirePanic(t, log.errs["boom"][0])
		require.Zero(t, h.n("boom"))
		require.Equal(t, 1, f.effects("a"))
		require.Equal(t, 1, f.effects("b"))
		require.Equal(t, 2, f.dedupRows())
	})
}
