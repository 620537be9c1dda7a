package txconsume_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/stretchr/testify/require"

	"github.com/txconsume/txconsume/txconsume"
)

func msgs(ids ...string) []*txconsume.Message {
	out := make([]*txconsume.Message, len(ids))
	for i, id := range ids {
		out[i] = msg(id)
	}
	return out
}

func TestProcessBatch(t *testing.T) {
	ctx := context.Background()
	A, D, U := txconsume.Applied, txconsume.Duplicate, txconsume.Discarded

	for _, iso := range isolations {
		t.Run(iso.String(), func(t *testing.T) {
			withIso := txconsume.WithIsolation(iso)

			t.Run("applies a batch once and a redelivered batch is all duplicates", func(t *testing.T) {
				f := newFixture(t)
				h := count(recordEffect)
				p := f.processor(nil, "g", h.handle, withIso)
				batch := msgs("a", "b", "c", "d")
				rs, err := p.ProcessBatch(ctx, batch)
				require.NoError(t, err)
				require.Equal(t, []txconsume.Result{A, A, A, A}, rs)
				rs, err = p.ProcessBatch(ctx, batch)
				require.NoError(t, err)
				require.Equal(t, []txconsume.Result{D, D, D, D}, rs)
				for _, id := range []string{"a", "b", "c", "d"} {
					require.Equal(t, 1, f.effects(id))
					require.Equal(t, 1, h.n(id))
					require.Equal(t, txconsume.OutcomeApplied, f.outcome("g", id))
				}
			})

			t.Run("keys consumed before are duplicates, the rest apply", func(t *testing.T) {
				f := newFixture(t)
				p := f.processor(nil, "g", recordEffect, withIso)
				_, err := p.Process(ctx, msg("b"))
				require.NoError(t, err)
				rs, err := p.ProcessBatch(ctx, msgs("a", "b", "c"))
				require.NoError(t, err)
				require.Equal(t, []txconsume.Result{A, D, A}, rs)
				require.Equal(t, 3, f.totalEffects())
			})

			t.Run("duplicates inside one batch collapse to one Applied", func(t *testing.T) {
				f := newFixture(t)
				h := count(recordEffect)
				p := f.processor(nil, "g", h.handle, withIso)
				rs, err := p.ProcessBatch(ctx, msgs("a", "b", "a", "a", "b"))
				require.NoError(t, err)
				require.Equal(t, []txconsume.Result{A, A, D, D, D}, rs)
				require.Equal(t, 1, f.effects("a"))
				require.Equal(t, 1, f.effects("b"))
				require.Equal(t, 1, h.n("a"))
			})

			t.Run("a failing message rolls back to its savepoint and the others commit", func(t *testing.T) {
				f := newFixture(t)
				healthy := false
				h := count(func(ctx context.Context, tx *sqlx.Tx, m *txconsume.Message) error {
					if err := recordEffect(ctx, tx, m); err != nil {
						return err
					}
					if healthy {
						return nil
					}
					switch m.ID {
					case "fails":
						return txconsume.RetryAfter(5e9, errors.New("not yet"))
					case "panics":
						panic("bad state")
					case "poison":
						return txconsume.Discard(errors.New("unparseable"))
					}
					return nil
				})
				p := f.processor(nil, "g", h.handle, withIso)
				batch := msgs("ok-1", "fails", "panics", "poison", "ok-2")
				rs, err := p.ProcessBatch(ctx, batch)

				var be *txconsume.BatchError
				require.ErrorAs(t, err, &be)
				require.Len(t, be.Failures, 2)
				require.Equal(t, 1, be.Failures[0].Index)
				require.Equal(t, "fails", be.Failures[0].MessageID)
				require.Equal(t, 2, be.Failures[1].Index)
				var pe *txconsume.PanicError
				require.ErrorAs(t, be.Failed(2), &pe)
				require.ErrorAs(t, err, &pe, "errors.As looks into every failure")
				d, ok := txconsume.RetryDelay(err)
				require.True(t, ok)
				require.EqualValues(t, 5e9, d)
				require.Len(t, rs, 5)
				require.Equal(t, []txconsume.Result{A, 0, 0, U, A}, rs)

				require.Equal(t, 1, f.effects("ok-1"))
				require.Equal(t, 1, f.effects("ok-2"))
				require.Equal(t, 0, f.effects("fails"), "rolled back to the savepoint")
				require.Equal(t, 0, f.effects("panics"))
				require.Equal(t, 0, f.effects("poison"))
				require.Equal(t, "", f.outcome("g", "fails"), "claim removed so a redelivery applies it")
				require.Equal(t, "", f.outcome("g", "panics"))
				require.Equal(t, txconsume.OutcomeDiscarded, f.outcome("g", "poison"))

				// The transport redelivers the whole batch.
				healthy = true
				rs, err = p.ProcessBatch(ctx, batch)
				require.NoError(t, err)
				require.Equal(t, []txconsume.Result{D, A, A, D, D}, rs)
				for _, id := range []string{"ok-1", "fails", "panics", "ok-2"} {
					require.Equal(t, 1, f.effects(id), id)
				}
				require.Equal(t, 0, f.effects("poison"))
				require.Equal(t, 1, h.n("poison"), "a discarded message does not run again")
			})
		})
	}

	t.Run("later copies of a failed key fail with it", func(t *testing.T) {
		f := newFixture(t)
		p := f.processor(nil, "g", func(ctx context.Context, tx *sqlx.Tx, m *txconsume.Message) error {
			if m.ID == "bad" {
				return errors.New("boom")
			}
			return recordEffect(ctx, tx, m)
		})
		rs, err := p.ProcessBatch(ctx, msgs("bad", "ok", "bad"))
		var be *txconsume.BatchError
		require.ErrorAs(t, err, &be)
		require.Len(t, be.Failures, 2)
		require.Equal(t, 0, be.Failures[0].Index)
		require.Equal(t, 2, be.Failures[1].Index)
		require.Equal(t, txconsume.Applied, rs[1])
		require.Equal(t, 1, f.dedupRows(), "only ok is claimed")
	})

	t.Run("an empty key fails only its message", func(t *testing.T) {
		f := newFixture(t)
		p := f.processor(nil, "g", recordEffect)
		rs, err := p.ProcessBatch(ctx, msgs("a", "", "b"))
		var be *txconsume.BatchError
		require.ErrorAs(t, err, &be)
		require.Len(t, be.Failures, 1)
		require.Equal(t, 1, be.Failures[0].Index)
		require.ErrorIs(t, err, txconsume.ErrEmptyKey)
		require.Equal(t, []txconsume.Result{txconsume.Applied, 0, txconsume.Applied}, rs)
		require.Equal(t, 2, f.totalEffects())

		rs, err = p.ProcessBatch(ctx, msgs(""))
		require.ErrorIs(t, err, txconsume.ErrEmptyKey)
		require.Equal(t, []txconsume.Result{0}, rs)
	})

	t.Run("a cancelled context fails the whole batch and commits nothing", func(t *testing.T) {
		f := newFixture(t)
		cctx, cancel := context.WithCancel(ctx)
		defer cancel()
		p := f.processor(nil, "g", func(ctx context.Context, tx *sqlx.Tx, m *txconsume.Message) error {
			if err := recordEffect(ctx, tx, m); err != nil {
				return err
			}
			if m.ID == "c" {
				cancel()
			}
			return nil
		})
		rs, err := p.ProcessBatch(cctx, msgs("a", "b", "c", "d"))
		require.Error(t, err)
		var be *txconsume.BatchError
		require.False(t, errors.As(err, &be), "not a partial failure: nothing committed")
		require.Nil(t, rs)
		require.Equal(t, 0, f.totalEffects())
		require.Equal(t, 0, f.dedupRows())
	})

	t.Run("a deadlock inside a batch reruns the whole batch", func(t *testing.T) {
		f := newFixture(t)
		var crossed sync.WaitGroup
		crossed.Add(2)
		var mu sync.Mutex
		attempts := map[string]int{}
		h := func(ctx context.Context, tx *sqlx.Tx, m *txconsume.Message) error {
			if m.ID == "A" || m.ID == "B" {
				first, second := "x", "y"
				if m.ID == "B" {
					first, second = "y", "x"
				}
				mu.Lock()
				attempts[m.ID]++
				attempt := attempts[m.ID]
				mu.Unlock()
				if _, err := tx.ExecContext(ctx, "UPDATE t_counter SET n = n + 1 WHERE name = ?", first); err != nil {
					return err
				}
				if attempt == 1 {
					crossed.Done()
					crossed.Wait()
				}
				if _, err := tx.ExecContext(ctx, "UPDATE t_counter SET n = n + 1 WHERE name = ?", second); err != nil {
					return err
				}
			}
			return recordEffect(ctx, tx, m)
		}
		retries := newRetryLog()
		p := f.processor(nil, "g", h, txconsume.WithHooks(retries.hooks()))
		batches := [][]*txconsume.Message{msgs("a1", "A", "a2"), msgs("b1", "B", "b2")}
		errs := make([]error, 2)
		runConcurrently(2, func(i int) { _, errs[i] = p.ProcessBatch(ctx, batches[i]) })
		require.NoError(t, errs[0])
		require.NoError(t, errs[1])
		require.Contains(t, retries.numbers(), uint16(1213))
		for _, id := range []string{"a1", "A", "a2", "b1", "B", "b2"} {
			require.Equal(t, 1, f.effects(id), id)
		}
		var x, y int
		require.NoError(t, f.db.Get(&x, "SELECT n FROM t_counter WHERE name = 'x'"))
		require.NoError(t, f.db.Get(&y, "SELECT n FROM t_counter WHERE name = 'y'"))
		require.Equal(t, []int{2, 2}, []int{x, y})
	})

	t.Run("concurrent overlapping batches on two pools apply every message once", func(t *testing.T) {
		f := newFixture(t)
		h := count(recordEffect)
		procs := []*txconsume.Processor{
			f.processor(f.pool(""), "g", h.handle),
			f.processor(f.pool(""), "g", h.handle),
		}
		const workers, size = 8, 24
		ids := make([]string, 40)
		for i := range ids {
			ids[i] = fmt.Sprintf("m-%02d", i)
		}
		errs := make([]error, workers)
		applied := make([]int, workers)
		runConcurrently(workers, func(w int) {
			// Each worker takes a random overlapping subset in random order, some with copies.
			r := rand.New(rand.NewPCG(uint64(w), 7))
			batch := make([]*txconsume.Message, size)
			for i := range batch {
				batch[i] = msg(ids[r.IntN(len(ids))])
			}
			rs, err := procs[w%2].ProcessBatch(ctx, batch)
			errs[w] = err
			applied[w] = countResult(rs, txconsume.Applied)
		})
		total := 0
		for w, err := range errs {
			require.NoError(t, err, "worker %d", w)
			total += applied[w]
		}
		require.Equal(t, f.dedupRows(), total, "one Applied per claimed key across all batches")
		for _, id := range ids {
			require.LessOrEqual(t, f.effects(id), 1, id)
			require.Equal(t, f.effects(id), h.n(id), id)
			if f.outcome("g", id) != "" {
				require.Equal(t, 1, f.effects(id), id)
			}
		}
	})

	t.Run("row-lock mode batches", func(t *testing.T) {
		f := newFixture(t)
		_, err := f.db.ExecContext(ctx, "INSERT INTO t_order VALUES ('o-1', 'CREATED'), ('o-2', 'CREATED')")
		require.NoError(t, err)
		p := f.processor(nil, "g", payOrder(nil), txconsume.WithRowLock())
		pay := func(id, order string) *txconsume.Message {
			return &txconsume.Message{ID: id, Keys: []string{order}}
		}
		rs, err := p.ProcessBatch(ctx, []*txconsume.Message{pay("m1", "o-1"), pay("m2", "o-1"), pay("m3", "o-2")})
		require.NoError(t, err)
		require.Equal(t, []txconsume.Result{txconsume.Applied, txconsume.Duplicate, txconsume.Applied}, rs)
		require.Equal(t, 1, f.effects("o-1"))
		require.Equal(t, 1, f.effects("o-2"))
		require.Equal(t, 0, f.dedupRows())
	})

	t.Run("hooks see every message", func(t *testing.T) {
		f := newFixture(t)
		var mu sync.Mutex
		seen := map[string]txconsume.Result{}
		p := f.processor(nil, "g", recordEffect, txconsume.WithHooks(txconsume.Hooks{
			OnResult: func(_ context.Context, m *txconsume.Message, r txconsume.Result, _ error, _ time.Duration) {
				mu.Lock()
				seen[m.ID] = r
				mu.Unlock()
			},
		}))
		_, err := p.ProcessBatch(ctx, msgs("a", "b", "a"))
		require.NoError(t, err)
		require.Equal(t, map[string]txconsume.Result{"a": txconsume.Duplicate, "b": txconsume.Applied}, seen,
			"the second a overwrote the first in this map")
	})
}
