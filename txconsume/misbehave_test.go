package txconsume_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/jmoiron/sqlx"
	"github.com/stretchr/testify/require"

	"github.com/txconsume/txconsume/txconsume"
)

// The tests in this file hold the library to what it promises when user code misbehaves.

// poolKinds are the two ways a pool can be opened: through txconsume.Connector, whose driver
// refuses statements in a transaction the server rolled back, or plainly, where the Processor
// checks its transaction before COMMIT. Every promise holds for both.
var poolKinds = []struct {
	name    string
	guarded bool
	open    func(f *fixture) *sqlx.DB
}{
	{"plain pool", false, func(f *fixture) *sqlx.DB { return f.pool("") }},
	{"guarded pool", true, func(f *fixture) *sqlx.DB { return f.guardedPool("") }},
}

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

// swallowingCross provokes a real deadlock between messages "A" and "B" as crossingUpdates does,
// in a handler with a bug: it drops the error of its second update, and of every statement after
// it, and returns nil. Each message records an effect before its updates and one after them
// ("<id>/after"): after the deadlock InnoDB has rolled the victim's transaction back, so the
// statement after it is the one that would commit on its own. Other messages record both effects
// and update nothing. swallowed counts dropped errors.
func swallowingCross(swallowed *atomic.Int32) txconsume.Handler {
	c := newCrossing()
	after := func(ctx context.Context, tx *sqlx.Tx, m *txconsume.Message) error {
		_, err := tx.ExecContext(ctx, "INSERT INTO t_effect (msg_key) VALUES (?)", m.ID+"/after")
		return err
	}
	return func(ctx context.Context, tx *sqlx.Tx, m *txconsume.Message) error {
		if err := recordEffect(ctx, tx, m); err != nil {
			return err
		}
		if m.ID != "A" && m.ID != "B" {
			return after(ctx, tx, m)
		}
		if err := c.updates(ctx, tx, m.ID, func(err error) error {
			if err != nil {
				swallowed.Add(1) // the bug
			}
			return nil
		}); err != nil {
			return err
		}
		if err := after(ctx, tx, m); err != nil {
			swallowed.Add(1) // and again
		}
		return nil
	}
}

func counters(t *testing.T, f *fixture) []int {
	t.Helper()
	var x, y int
	require.NoError(t, f.db.Get(&x, "SELECT n FROM t_counter WHERE name = 'x'"))
	require.NoError(t, f.db.Get(&y, "SELECT n FROM t_counter WHERE name = 'y'"))
	return []int{x, y}
}

func TestSwallowedDeadlock(t *testing.T) {
	ctx := context.Background()
	for _, pool := range poolKinds {
		t.Run(pool.name, func(t *testing.T) {
			t.Run("no Applied, no claim and no half-effect; the redelivery applies once", func(t *testing.T) {
				f := newFixture(t)
				db := pool.open(f)
				var swallowed atomic.Int32
				// No retries: the call that lost the deadlock must fail rather than be rerun.
				p := f.processor(db, "g", swallowingCross(&swallowed), txconsume.WithMaxRetries(0))
				results := make([]txconsume.Result, 2)
				errs := make([]error, 2)
				ids := []string{"A", "B"}
				runConcurrently(2, func(i int) { results[i], errs[i] = p.Process(ctx, msg(ids[i])) })
				require.NotZero(t, swallowed.Load(), "a deadlock happened and the handler dropped it")

				victim := -1
				for i := range ids {
					if errs[i] != nil {
						require.Equal(t, -1, victim, "only one transaction lost: %v", errs)
						victim = i
					}
				}
				require.NotEqual(t, -1, victim, "one of %v must fail, got results %v", ids, results)
				winner := 1 - victim
				require.Equal(t, txconsume.Applied, results[winner])
				require.Zero(t, results[victim])
				require.ErrorIs(t, errs[victim], txconsume.ErrTxAborted)
				if pool.guarded {
					// Only the driver saw the error that the handler dropped.
					require.Equal(t, uint16(1213), mysqlErrNumber(errs[victim]), "the cause is the deadlock: %v", errs[victim])
				}

				v := ids[victim]
				require.Empty(t, f.outcome("g", v), "no claim for the victim")
				require.Zero(t, f.effects(v), "its writes before the deadlock were rolled back")
				require.Zero(t, f.effects(v+"/after"), "its writes after the deadlock did not commit on their own")
				require.Equal(t, []int{1, 1}, counters(t, f), "only the winner's updates")

				r, err := p.Process(ctx, msg(v))
				require.NoError(t, err)
				require.Equal(t, txconsume.Applied, r)
				for _, id := range ids {
					require.Equal(t, 1, f.effects(id), id)
					require.Equal(t, 1, f.effects(id+"/after"), id)
				}
				require.Equal(t, []int{2, 2}, counters(t, f))
				require.Equal(t, 2, f.dedupRows())
			})

			t.Run("with retries the victim reruns and both apply once", func(t *testing.T) {
				f := newFixture(t)
				db := pool.open(f)
				var swallowed atomic.Int32
				retries := newRetryLog()
				p := f.processor(db, "g", swallowingCross(&swallowed), txconsume.WithHooks(retries.hooks()))
				results := make([]txconsume.Result, 2)
				errs := make([]error, 2)
				runConcurrently(2, func(i int) { results[i], errs[i] = p.Process(ctx, msg([]string{"A", "B"}[i])) })
				require.NotZero(t, swallowed.Load())
				require.NoError(t, errs[0])
				require.NoError(t, errs[1])
				require.Equal(t, []txconsume.Result{txconsume.Applied, txconsume.Applied}, results)
				require.True(t, retries.any(func(err error) bool { return errors.Is(err, txconsume.ErrTxAborted) }),
					"the victim was run again because its transaction was gone")
				if pool.guarded {
					require.Contains(t, retries.numbers(), uint16(1213))
				}
				for _, id := range []string{"A", "B"} {
					require.Equal(t, 1, f.effects(id), id)
					require.Equal(t, 1, f.effects(id+"/after"), id)
				}
				require.Equal(t, []int{2, 2}, counters(t, f))
			})

			t.Run("ProcessBatch: the batch that lost reruns and every message applies once", func(t *testing.T) {
				f := newFixture(t)
				db := pool.open(f)
				var swallowed atomic.Int32
				p := f.processor(db, "g", swallowingCross(&swallowed), txconsume.WithMaxRetries(0))
				batches := [][]*txconsume.Message{msgs("a1", "A", "a2"), msgs("b1", "B", "b2")}
				errs := make([]error, 2)
				rss := make([][]txconsume.Result, 2)
				runConcurrently(2, func(i int) { rss[i], errs[i] = p.ProcessBatch(ctx, batches[i]) })
				require.NotZero(t, swallowed.Load())
				victim := 0
				if errs[0] == nil {
					victim = 1
				}
				require.NoError(t, errs[1-victim])
				require.ErrorIs(t, errs[victim], txconsume.ErrTxAborted, "results %v", rss[victim])
				require.Nil(t, rss[victim])
				for _, m := range batches[victim] {
					require.Empty(t, f.outcome("g", m.ID), m.ID)
					require.Zero(t, f.effects(m.ID), m.ID)
					require.Zero(t, f.effects(m.ID+"/after"), m.ID)
				}
				rs, err := p.ProcessBatch(ctx, batches[victim])
				require.NoError(t, err)
				require.Equal(t, []txconsume.Result{txconsume.Applied, txconsume.Applied, txconsume.Applied}, rs)
				for _, b := range batches {
					for _, m := range b {
						require.Equal(t, 1, f.effects(m.ID), m.ID)
						require.Equal(t, 1, f.effects(m.ID+"/after"), m.ID)
					}
				}
				require.Equal(t, []int{2, 2}, counters(t, f))
				require.Equal(t, 6, f.dedupRows())
			})
		})
	}
}

// misbehaving returns a handler that records the message's effect and, on its first call for the
// ids in bad, does what end says to the transaction (and whatever it returns is the handler's
// result). Later calls, the redeliveries, behave.
func misbehaving(bad map[string]func(ctx context.Context, tx *sqlx.Tx, m *txconsume.Message) error) txconsume.Handler {
	var mu sync.Mutex
	done := map[string]bool{}
	return func(ctx context.Context, tx *sqlx.Tx, m *txconsume.Message) error {
		if err := recordEffect(ctx, tx, m); err != nil {
			return err
		}
		mu.Lock()
		end, ok := bad[m.ID]
		first := !done[m.ID]
		done[m.ID] = true
		mu.Unlock()
		if ok && first {
			return end(ctx, tx, m)
		}
		_, err := tx.ExecContext(ctx, "INSERT INTO t_effect (msg_key) VALUES (?)", m.ID+"/after")
		return err
	}
}

func commits(_ context.Context, tx *sqlx.Tx, _ *txconsume.Message) error { return tx.Commit() }

func rollsBack(_ context.Context, tx *sqlx.Tx, _ *txconsume.Message) error { return tx.Rollback() }

// commitsThenWrites commits, then goes on writing through the ended transaction.
func commitsThenWrites(ctx context.Context, tx *sqlx.Tx, m *txconsume.Message) error {
	if err := tx.Commit(); err != nil {
		return err
	}
	_, err := tx.ExecContext(ctx, "INSERT INTO t_effect (msg_key) VALUES (?)", m.ID+"/after")
	return err
}

// requireNoClaimWithoutEffects checks what exactly-once rests on: a key recorded as consumed has
// its effect.
func requireNoClaimWithoutEffects(t *testing.T, f *fixture, ids ...string) {
	t.Helper()
	for _, id := range ids {
		if f.outcome("g", id) != "" {
			require.NotZero(t, f.effects(id), "%s is claimed but its effect is not there", id)
		}
	}
}

// endCase is a way for a handler to end the Processor's transaction, with the effects ("<id>",
// "<id>/after") the message has in the end, after its redelivery, on each kind of pool. On a
// guarded pool the handler's Commit is refused, so nothing it did counts and the redelivery
// applies the message. On a plain pool the Commit happens: what the handler wrote before it is
// committed with the claim when it returns nil (the redelivery is a Duplicate), and without the
// claim when it returns an error (the redelivery applies it again).
type endCase struct {
	name           string
	end            func(context.Context, *sqlx.Tx, *txconsume.Message) error
	guarded, plain [2]int
}

var endCases = []endCase{
	{"commits", commits, [2]int{1, 1}, [2]int{1, 0}},
	{"rolls back", rollsBack, [2]int{1, 1}, [2]int{1, 1}},
	{"commits and goes on writing", commitsThenWrites, [2]int{1, 1}, [2]int{2, 1}},
}

func TestHandlerEndsTheTransaction(t *testing.T) {
	ctx := context.Background()
	A, D := txconsume.Applied, txconsume.Duplicate
	effects := func(f *fixture, id string) [2]int { return [2]int{f.effects(id), f.effects(id + "/after")} }
	for _, pool := range poolKinds {
		t.Run(pool.name, func(t *testing.T) {
			for _, c := range endCases {
				want := c.plain
				if pool.guarded {
					want = c.guarded
				}
				t.Run("Process: a handler that "+c.name+" gets ErrHandlerEndedTx, never Applied", func(t *testing.T) {
					f := newFixture(t)
					log := newResultLog()
					p := f.processor(pool.open(f), "g", misbehaving(map[string]func(context.Context, *sqlx.Tx, *txconsume.Message) error{"m": c.end}),
						txconsume.WithHooks(txconsume.Hooks{OnResult: log.onResult}))
					r, err := p.Process(ctx, msg("m"))
					require.ErrorIs(t, err, txconsume.ErrHandlerEndedTx)
					require.Zero(t, r)
					require.ErrorIs(t, log.errs["m"][0], txconsume.ErrHandlerEndedTx)
					requireNoClaimWithoutEffects(t, f, "m")

					r, err = p.Process(ctx, msg("m"))
					require.NoError(t, err)
					require.Contains(t, []txconsume.Result{A, D}, r)
					require.NotEmpty(t, f.outcome("g", "m"))
					require.Equal(t, want, effects(f, "m"))
				})

				t.Run("ProcessBatch: a handler that "+c.name+" loses no other message", func(t *testing.T) {
					f := newFixture(t)
					ids := []string{"a", "b", "c", "d"}
					p := f.processor(pool.open(f), "g", misbehaving(map[string]func(context.Context, *sqlx.Tx, *txconsume.Message) error{"b": c.end}))
					rs, err := p.ProcessBatch(ctx, msgs(ids...))
					require.ErrorIs(t, err, txconsume.ErrHandlerEndedTx)
					for i, r := range rs {
						require.NotEqual(t, D, r, "%s: no message of this batch was consumed before", ids[i])
						if r == A {
							require.Equal(t, [2]int{1, 1}, effects(f, ids[i]), ids[i])
						}
					}
					requireNoClaimWithoutEffects(t, f, ids...)

					rs, err = p.ProcessBatch(ctx, msgs(ids...))
					require.NoError(t, err)
					for i, r := range rs {
						require.Contains(t, []txconsume.Result{A, D}, r, ids[i])
					}
					for _, id := range []string{"a", "c", "d"} {
						require.Equal(t, [2]int{1, 1}, effects(f, id), id)
					}
					require.Equal(t, want, effects(f, "b"))
					require.Equal(t, 4, f.dedupRows())
				})
			}
		})
	}
}
