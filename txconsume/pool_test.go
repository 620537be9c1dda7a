package txconsume_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/txconsume/txconsume/txconsume"
)

// A Processor must not need a second connection while its transaction holds one: with as many
// deliveries in flight as the pool has connections, that would wait forever.
func TestProcessOnAPoolOfOneConnection(t *testing.T) {
	f := newFixture(t)
	db := f.pool("")
	db.SetMaxOpenConns(1)
	p := f.processor(db, "g", recordEffect)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const deliveries = 8
	errs := make([]error, deliveries)
	results := make([]txconsume.Result, deliveries)
	runConcurrently(deliveries, func(i int) {
		results[i], errs[i] = p.Process(ctx, msg(fmt.Sprintf("m-%d", i%4)))
	})
	applied := 0
	for i := range deliveries {
		require.NoError(t, errs[i], "delivery %d", i)
		if results[i] == txconsume.Applied {
			applied++
		}
	}
	require.Equal(t, 4, applied, "each of the 4 keys applies once")
	require.Equal(t, 4, f.totalEffects())

	rs, err := p.ProcessBatch(ctx, []*txconsume.Message{msg("m-0"), msg("b-1"), msg("b-2")})
	require.NoError(t, err)
	require.Equal(t, []txconsume.Result{txconsume.Duplicate, txconsume.Applied, txconsume.Applied}, rs)
	require.Equal(t, 6, f.totalEffects())
}

func TestClose(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	p := f.processor(nil, "g", recordEffect)
	r, err := p.Process(ctx, msg("before"))
	require.NoError(t, err)
	require.Equal(t, txconsume.Applied, r)

	require.NoError(t, p.Close())
	require.NoError(t, p.Close(), "a second Close does nothing")
	_, err = p.Process(ctx, msg("after"))
	require.ErrorIs(t, err, txconsume.ErrClosed)
	_, err = p.ProcessBatch(ctx, []*txconsume.Message{msg("after")})
	require.ErrorIs(t, err, txconsume.ErrClosed)
	require.Equal(t, 1, f.totalEffects(), "nothing ran after Close")
	require.Zero(t, f.effects("after"))

	// The pool stays usable: Close releases the Processor's statement, not the database.
	q := f.processor(nil, "g", recordEffect)
	r, err = q.Process(ctx, msg("after"))
	require.NoError(t, err)
	require.Equal(t, txconsume.Applied, r)
}
