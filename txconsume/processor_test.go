package txconsume_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/stretchr/testify/require"

	"github.com/txconsume/txconsume/txconsume"
)

var isolations = []sql.IsolationLevel{sql.LevelRepeatableRead, sql.LevelReadCommitted}

func TestProcess(t *testing.T) {
	ctx := context.Background()
	for _, iso := range isolations {
		t.Run(iso.String(), func(t *testing.T) {
			withIso := txconsume.WithIsolation(iso)

			t.Run("a sequential duplicate is not handled again", func(t *testing.T) {
				f := newFixture(t)
				h := count(recordEffect)
				var seen []txconsume.Result
				p := f.processor(nil, "g1", h.handle, withIso, txconsume.WithHooks(txconsume.Hooks{
					OnResult: func(_ context.Context, _ *txconsume.Message, r txconsume.Result, err error, _ time.Duration) {
						require.NoError(t, err)
						seen = append(seen, r)
					},
				}))
				m := msg("m-1")
				m.Topic = "orders-topic"

				r, err := p.Process(ctx, m)
				require.NoError(t, err)
				require.Equal(t, txconsume.Applied, r)
				r, err = p.Process(ctx, m)
				require.NoError(t, err)
				require.Equal(t, txconsume.Duplicate, r)

				require.Equal(t, 1, h.n("m-1"))
				require.Equal(t, 1, f.effects("m-1"))
				require.Equal(t, []txconsume.Result{txconsume.Applied, txconsume.Duplicate}, seen)
				var row struct {
					Topic   string `db:"topic"`
					MsgID   string `db:"msg_id"`
					Outcome string `db:"outcome"`
				}
				require.NoError(t, f.db.Get(&row, "SELECT topic, msg_id, outcome FROM txconsume_dedup WHERE consumer_group = 'g1' AND dedup_key = 'm-1'"))
				require.Equal(t, "orders-topic", row.Topic)
				require.Equal(t, "m-1", row.MsgID)
				require.Equal(t, txconsume.OutcomeApplied, row.Outcome)
			})

			t.Run("16 concurrent deliveries apply once", func(t *testing.T) {
				f := newFixture(t)
				var first atomic.Bool
				h := count(func(ctx context.Context, tx *sqlx.Tx, m *txconsume.Message) error {
					if first.CompareAndSwap(false, true) {
						// Hold the claim until the 15 others are blocked on it.
						if err := waitForClaimers(ctx, f.db, 15); err != nil {
							return err
						}
					}
					return recordEffect(ctx, tx, m)
				})
				p := f.processor(nil, "g", h.handle, withIso)
				results := make([]txconsume.Result, 16)
				errs := make([]error, 16)
				runConcurrently(16, func(i int) { results[i], errs[i] = p.Process(ctx, msg("same")) })
				for _, err := range errs {
					require.NoError(t, err)
				}
				require.Equal(t, 1, countResult(results, txconsume.Applied))
				require.Equal(t, 15, countResult(results, txconsume.Duplicate))
				require.Equal(t, 1, h.n("same"))
				require.Equal(t, 1, f.effects("same"))
			})

			t.Run("when the first of 16 concurrent deliveries fails, exactly one other applies", func(t *testing.T) {
				f := newFixture(t)
				var first atomic.Bool
				h := func(ctx context.Context, tx *sqlx.Tx, m *txconsume.Message) error {
					if err := recordEffect(ctx, tx, m); err != nil {
						return err
					}
					if first.CompareAndSwap(false, true) {
						if err := waitForClaimers(ctx, f.db, 15); err != nil {
							return err
						}
						return errors.New("boom")
					}
					return nil
				}
				// The 15 waiters race for the key released by the rollback, which can deadlock
				// them against each other (InnoDB's shared-then-exclusive duplicate check): the
				// retries resolve it.
				p := f.processor(nil, "g", h, withIso, txconsume.WithMaxRetries(20))
				results := make([]txconsume.Result, 16)
				errs := make([]error, 16)
				runConcurrently(16, func(i int) { results[i], errs[i] = p.Process(ctx, msg("same")) })
				failed := 0
				for _, err := range errs {
					if err != nil {
						require.ErrorContains(t, err, "boom")
						failed++
					}
				}
				require.Equal(t, 1, failed)
				require.Equal(t, 1, countResult(results, txconsume.Applied))
				require.Equal(t, 14, countResult(results, txconsume.Duplicate))
				require.Equal(t, 1, f.effects("same"))
			})

			t.Run("two instances on separate pools apply once", func(t *testing.T) {
				f := newFixture(t)
				h := count(recordEffect)
				procs := []*txconsume.Processor{
					f.processor(f.pool(""), "g", h.handle, withIso),
					f.processor(f.pool(""), "g", h.handle, withIso),
				}
				for round := range 5 {
					id := fmt.Sprintf("m-%d", round)
					results := make([]txconsume.Result, 16)
					errs := make([]error, 16)
					runConcurrently(16, func(i int) { results[i], errs[i] = procs[i%2].Process(ctx, msg(id)) })
					for _, err := range errs {
						require.NoError(t, err)
					}
					require.Equal(t, 1, countResult(results, txconsume.Applied), id)
					require.Equal(t, 1, f.effects(id), id)
					require.Equal(t, 1, h.n(id), id)
				}
			})

			t.Run("a handler error rolls back its writes and the claim", func(t *testing.T) {
				f := newFixture(t)
				fail := true
				p := f.processor(nil, "g", func(ctx context.Context, tx *sqlx.Tx, m *txconsume.Message) error {
					if err := recordEffect(ctx, tx, m); err != nil {
						return err
					}
					if fail {
						return errors.New("downstream not ready")
					}
					return nil
				}, withIso)
				_, err := p.Process(ctx, msg("m"))
				require.ErrorContains(t, err, "downstream not ready")
				require.Equal(t, 0, f.effects("m"))
				require.Equal(t, "", f.outcome("g", "m"))

				fail = false
				r, err := p.Process(ctx, msg("m"))
				require.NoError(t, err)
				require.Equal(t, txconsume.Applied, r)
				require.Equal(t, 1, f.effects("m"))
			})
		})
	}

	t.Run("a handler panic rolls back and is returned as *PanicError", func(t *testing.T) {
		f := newFixture(t)
		panicking := true
		p := f.processor(nil, "g", func(ctx context.Context, tx *sqlx.Tx, m *txconsume.Message) error {
			if err := recordEffect(ctx, tx, m); err != nil {
				return err
			}
			if panicking {
				var missing []int
				_ = missing[len(m.ID)] // a real runtime panic: index out of range
			}
			return nil
		})
		_, err := p.Process(ctx, msg("m"))
		var pe *txconsume.PanicError
		require.ErrorAs(t, err, &pe)
		require.Contains(t, string(pe.Stack), "processor_test.go")
		require.Equal(t, 0, f.effects("m"))
		require.Equal(t, 0, f.dedupRows())

		panicking = false
		r, err := p.Process(ctx, msg("m"))
		require.NoError(t, err)
		require.Equal(t, txconsume.Applied, r)
		require.Equal(t, 1, f.effects("m"))
	})

	t.Run("Discard rolls back the writes and records the key as discarded", func(t *testing.T) {
		f := newFixture(t)
		poison := errors.New("unparseable body")
		var results []txconsume.Result
		var resultErrs, handlerErrs []error
		h := count(func(ctx context.Context, tx *sqlx.Tx, m *txconsume.Message) error {
			if err := recordEffect(ctx, tx, m); err != nil {
				return err
			}
			return txconsume.Discard(fmt.Errorf("decode: %w", poison))
		})
		var logs strings.Builder
		p := f.processor(nil, "g", h.handle, txconsume.WithLogger(slog.New(slog.NewTextHandler(&logs, nil))),
			txconsume.WithHooks(txconsume.Hooks{
				OnResult: func(_ context.Context, _ *txconsume.Message, r txconsume.Result, err error, _ time.Duration) {
					results, resultErrs = append(results, r), append(resultErrs, err)
				},
				OnHandler: func(_ context.Context, _ *txconsume.Message, err error, _ time.Duration) {
					handlerErrs = append(handlerErrs, err)
				},
			}))
		r, err := p.Process(ctx, msg("m"))
		require.NoError(t, err)
		require.Equal(t, txconsume.Discarded, r)
		require.Equal(t, []txconsume.Result{txconsume.Discarded}, results)
		require.Equal(t, []error{nil}, resultErrs, "OnResult: a discard is no failure")
		require.Len(t, handlerErrs, 1)
		require.ErrorIs(t, handlerErrs[0], poison, "OnHandler sees the discard's cause")
		require.True(t, txconsume.IsDiscard(handlerErrs[0]))
		require.Equal(t, 1, strings.Count(logs.String(), "txconsume: message discarded"), logs.String())
		require.Contains(t, logs.String(), "reason=\"txconsume: discarded: decode: unparseable body\"")
		require.Contains(t, logs.String(), "group=g")
		require.Equal(t, 0, f.effects("m"))
		require.Equal(t, txconsume.OutcomeDiscarded, f.outcome("g", "m"))

		r, err = p.Process(ctx, msg("m"))
		require.NoError(t, err)
		require.Equal(t, txconsume.Duplicate, r)
		require.Equal(t, 1, h.n("m"), "a discarded message never reaches the handler again")
	})

	t.Run("ErrAlreadyApplied from the handler is a Duplicate and writes nothing", func(t *testing.T) {
		f := newFixture(t)
		p := f.processor(nil, "g", func(ctx context.Context, tx *sqlx.Tx, m *txconsume.Message) error {
			if err := recordEffect(ctx, tx, m); err != nil {
				return err
			}
			return fmt.Errorf("order 7: %w", txconsume.ErrAlreadyApplied)
		})
		r, err := p.Process(ctx, msg("m"))
		require.NoError(t, err)
		require.Equal(t, txconsume.Duplicate, r)
		require.Equal(t, 0, f.effects("m"))
		require.Equal(t, 0, f.dedupRows())
	})

	t.Run("a context cancelled mid-handler leaves no partial effect", func(t *testing.T) {
		f := newFixture(t)
		for _, returnsErr := range []bool{true, false} {
			id := fmt.Sprintf("m-%v", returnsErr)
			cctx, cancel := context.WithCancel(ctx)
			p := f.processor(nil, "g", func(ctx context.Context, tx *sqlx.Tx, m *txconsume.Message) error {
				if err := recordEffect(ctx, tx, m); err != nil {
					return err
				}
				cancel()
				if returnsErr {
					return ctx.Err()
				}
				return nil // a handler that ignores its context: the commit must still fail
			})
			_, err := p.Process(cctx, msg(id))
			require.Error(t, err, id)
			require.Equal(t, 0, f.effects(id), id)
			require.Equal(t, "", f.outcome("g", id), id)
		}
	})

	t.Run("an empty key is an error and nothing runs", func(t *testing.T) {
		f := newFixture(t)
		h := count(recordEffect)
		p := f.processor(nil, "g", h.handle)
		_, err := p.Process(ctx, msg(""))
		require.ErrorIs(t, err, txconsume.ErrEmptyKey)

		empty := f.processor(nil, "g", h.handle, txconsume.WithKeyFunc(func(*txconsume.Message) (string, error) { return "", nil }))
		_, err = empty.Process(ctx, msg("m"))
		require.ErrorIs(t, err, txconsume.ErrEmptyKey)

		require.Equal(t, 0, h.n("")+h.n("m"))
		require.Equal(t, 0, f.dedupRows())
		require.Equal(t, 0, f.totalEffects())
	})

	t.Run("ready key funcs", func(t *testing.T) {
		f := newFixture(t)
		h := count(recordEffect)
		byKey := f.processor(nil, "by-key", h.handle, txconsume.WithKeyFunc(txconsume.KeyByFirstKey))
		byProp := f.processor(nil, "by-prop", h.handle, txconsume.WithKeyFunc(txconsume.KeyByProperty("idem")))

		a := &txconsume.Message{ID: "id-a", Keys: []string{"order-1", "x"}, Properties: map[string]string{"idem": "p-1"}}
		b := &txconsume.Message{ID: "id-b", Keys: []string{"order-1"}, Properties: map[string]string{"idem": "p-1"}}
		for _, p := range []*txconsume.Processor{byKey, byProp} {
			r, err := p.Process(ctx, a)
			require.NoError(t, err)
			require.Equal(t, txconsume.Applied, r, p.Group())
			r, err = p.Process(ctx, b)
			require.NoError(t, err)
			require.Equal(t, txconsume.Duplicate, r, p.Group(), "same business key under another message ID")
		}
		require.Equal(t, txconsume.OutcomeApplied, f.outcome("by-key", "order-1"))
		require.Equal(t, txconsume.OutcomeApplied, f.outcome("by-prop", "p-1"))

		_, err := byKey.Process(ctx, &txconsume.Message{ID: "no-keys"})
		require.ErrorIs(t, err, txconsume.ErrEmptyKey)
		_, err = byProp.Process(ctx, &txconsume.Message{ID: "no-prop", Properties: map[string]string{"idem": ""}})
		require.ErrorIs(t, err, txconsume.ErrEmptyKey)
		require.Equal(t, 0, h.n("no-keys")+h.n("no-prop"))
	})

	t.Run("consumer groups deduplicate independently", func(t *testing.T) {
		f := newFixture(t)
		pa := f.processor(nil, "group-a", recordEffect)
		pb := f.processor(nil, "group-b", recordEffect)
		for _, p := range []*txconsume.Processor{pa, pb} {
			r, err := p.Process(ctx, msg("m"))
			require.NoError(t, err)
			require.Equal(t, txconsume.Applied, r)
		}
		for _, p := range []*txconsume.Processor{pa, pb} {
			r, err := p.Process(ctx, msg("m"))
			require.NoError(t, err)
			require.Equal(t, txconsume.Duplicate, r)
		}
		require.Equal(t, 2, f.effects("m"))
	})

	t.Run("keys compare byte for byte and long keys are hashed without collisions", func(t *testing.T) {
		f := newFixture(t)
		p := f.processor(nil, "g", recordEffect)
		_, err := f.db.ExecContext(ctx, "ALTER TABLE t_effect MODIFY msg_key VARBINARY(400) NOT NULL")
		require.NoError(t, err)
		long := strings.Repeat("k", 300)
		keys := []string{
			"Order-1", "order-1", "Order-1 ", "ORDER-1", // distinct under a _ci collation they would not be
			long + "a", long + "b", // differ only after the column size
			txconsume.StoredKey(long + "a"), // a raw key spelled like another key's hash
			"é", "e",
		}
		for _, k := range keys {
			r, err := p.Process(ctx, msg(k))
			require.NoError(t, err)
			require.Equal(t, txconsume.Applied, r, "%q", k)
		}
		for _, k := range keys {
			r, err := p.Process(ctx, msg(k))
			require.NoError(t, err)
			require.Equal(t, txconsume.Duplicate, r, "%q", k)
			require.Equal(t, 1, f.effects(k), "%q", k)
		}
		require.Equal(t, len(keys), f.dedupRows())
	})

	t.Run("two processors can share one pool and group", func(t *testing.T) {
		f := newFixture(t)
		var wg sync.WaitGroup
		p1 := f.processor(nil, "g", recordEffect)
		p2 := f.processor(nil, "g", recordEffect)
		var applied atomic.Int32
		for i := range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				p := p1
				if i%2 == 1 {
					p = p2
				}
				r, err := p.Process(ctx, msg("m"))
				if err == nil && r == txconsume.Applied {
					applied.Add(1)
				}
			}()
		}
		wg.Wait()
		require.EqualValues(t, 1, applied.Load())
		require.Equal(t, 1, f.effects("m"))
	})
}

func countResult(rs []txconsume.Result, want txconsume.Result) int {
	n := 0
	for _, r := range rs {
		if r == want {
			n++
		}
	}
	return n
}
