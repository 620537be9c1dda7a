package txconsume_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
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
		h := crossingUpdates()
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
			batch := randomBatch(uint64(w), 7, ids, size)
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
		log := newResultLog()
		p := f.processor(nil, "g", recordEffect, txconsume.WithHooks(txconsume.Hooks{OnResult: log.onResult}))
		_, err := p.ProcessBatch(ctx, msgs("a", "b", "a"))
		require.NoError(t, err)
		// Every call is kept in order: the two copies of a each have their own result.
		require.Equal(t, map[string][]txconsume.Result{"a": {A, D}, "b": {A}}, log.seen)
		require.Equal(t, map[string][]error{"a": {nil, nil}, "b": {nil}}, log.errs)
	})
}

// probeCall is one handler call seen by a savepointProbe.
type probeCall struct {
	id         string
	savepoints int // the session's Com_savepoint when the handler started
}

// savepointProbe wraps a handler: it records every call in order, with the number of SAVEPOINT
// statements the handler's session has executed so far, read on the handler's own transaction
// (session status is per connection, so other tests and pools cannot move it).
type savepointProbe struct {
	mu    sync.Mutex
	calls []probeCall
	h     txconsume.Handler
}

func probe(h txconsume.Handler) *savepointProbe { return &savepointProbe{h: h} }

func (p *savepointProbe) handle(ctx context.Context, tx *sqlx.Tx, m *txconsume.Message) error {
	var name string
	var n int
	if err := tx.QueryRowxContext(ctx, "SHOW SESSION STATUS LIKE 'Com_savepoint'").Scan(&name, &n); err != nil {
		return err
	}
	p.mu.Lock()
	p.calls = append(p.calls, probeCall{m.ID, n})
	p.mu.Unlock()
	return p.h(ctx, tx, m)
}

// ids returns the messages handled, in call order.
func (p *savepointProbe) ids() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]string, len(p.calls))
	for i, c := range p.calls {
		out[i] = c.id
	}
	return out
}

// savepointSteps returns, for calls[from:to], how many SAVEPOINT statements ran between each
// call and the next: all 0 when the handlers ran without savepoints, all 1 when each ran behind
// its own.
func (p *savepointProbe) savepointSteps(from, to int) []int {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []int
	for i := from + 1; i < to; i++ {
		out = append(out, p.calls[i].savepoints-p.calls[i-1].savepoints)
	}
	return out
}

// resultLog records OnResult calls.
type resultLog struct {
	mu   sync.Mutex
	seen map[string][]txconsume.Result
	errs map[string][]error
}

func newResultLog() *resultLog {
	return &resultLog{seen: map[string][]txconsume.Result{}, errs: map[string][]error{}}
}

func (l *resultLog) onResult(_ context.Context, m *txconsume.Message, r txconsume.Result, err error, _ time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.seen[m.ID] = append(l.seen[m.ID], r)
	l.errs[m.ID] = append(l.errs[m.ID], err)
}

func TestProcessBatchOptimistic(t *testing.T) {
	ctx := context.Background()
	A, D, U := txconsume.Applied, txconsume.Duplicate, txconsume.Discarded

	// failOn makes the handler record its effect, then fail for the message ids in how.
	failOn := func(how map[string]func() error) txconsume.Handler {
		return func(ctx context.Context, tx *sqlx.Tx, m *txconsume.Message) error {
			if err := recordEffect(ctx, tx, m); err != nil {
				return err
			}
			if f := how[m.ID]; f != nil {
				return f()
			}
			return nil
		}
	}

	for _, iso := range isolations {
		t.Run(iso.String(), func(t *testing.T) {
			withIso := txconsume.WithIsolation(iso)

			t.Run("an all-success batch runs each handler once and sets no savepoint", func(t *testing.T) {
				f := newFixture(t)
				pr := probe(recordEffect)
				p := f.processor(nil, "g", pr.handle, withIso)
				rs, err := p.ProcessBatch(ctx, msgs("a", "b", "c", "d", "e"))
				require.NoError(t, err)
				require.Equal(t, []txconsume.Result{A, A, A, A, A}, rs)
				require.Equal(t, []string{"a", "b", "c", "d", "e"}, pr.ids(), "each handler exactly once")
				require.Equal(t, []int{0, 0, 0, 0}, pr.savepointSteps(0, 5))
				require.Equal(t, 5, f.totalEffects())
			})

			t.Run("a failing message reruns the batch with savepoints and ends as the savepoint mode does", func(t *testing.T) {
				f := newFixture(t)
				healthy := false
				pr := probe(failOn(map[string]func() error{"bad": func() error {
					if healthy {
						return nil
					}
					return txconsume.RetryAfter(3e9, errors.New("not yet"))
				}}))
				results, retries := newResultLog(), newRetryLog()
				hooks := retries.hooks()
				hooks.OnResult = results.onResult
				// No retries at all: the rerun must not need one.
				p := f.processor(nil, "g", pr.handle, withIso, txconsume.WithMaxRetries(0), txconsume.WithHooks(hooks))
				batch := msgs("ok-1", "ok-2", "bad", "ok-3")
				rs, err := p.ProcessBatch(ctx, batch)

				var be *txconsume.BatchError
				require.ErrorAs(t, err, &be)
				require.NotErrorIs(t, err, txconsume.ErrRetriesExhausted)
				require.Len(t, be.Failures, 1)
				require.Equal(t, 2, be.Failures[0].Index)
				d, ok := txconsume.RetryDelay(err)
				require.True(t, ok)
				require.EqualValues(t, 3e9, d)
				require.Equal(t, []txconsume.Result{A, A, 0, A}, rs)

				require.Equal(t, []string{"ok-1", "ok-2", "bad", "ok-1", "ok-2", "bad", "ok-3"}, pr.ids(),
					"optimistic run up to the failure, then the savepoint run of the whole batch")
				require.Equal(t, []int{0, 0}, pr.savepointSteps(0, 3), "first run: no savepoints")
				require.Equal(t, []int{1, 1, 1}, pr.savepointSteps(3, 7), "second run: one per message")

				for _, id := range []string{"ok-1", "ok-2", "ok-3"} {
					require.Equal(t, 1, f.effects(id), id)
					require.Equal(t, txconsume.OutcomeApplied, f.outcome("g", id), id)
				}
				require.Equal(t, 0, f.effects("bad"))
				require.Equal(t, "", f.outcome("g", "bad"), "claim removed so a redelivery applies it")
				require.Equal(t, 3, f.dedupRows())

				require.Empty(t, retries.numbers(), "the rerun is not a retry")
				require.Equal(t, map[string][]txconsume.Result{
					"ok-1": {A}, "ok-2": {A}, "bad": {0}, "ok-3": {A},
				}, results.seen, "OnResult once per message, with the final outcome")
				require.Equal(t, be.Failures[0].Err, results.errs["bad"][0])
				require.NoError(t, results.errs["ok-1"][0])

				healthy = true
				rs, err = p.ProcessBatch(ctx, batch)
				require.NoError(t, err)
				require.Equal(t, []txconsume.Result{D, D, A, D}, rs)
				require.Equal(t, 1, f.effects("bad"))
				require.Equal(t, "bad", pr.ids()[len(pr.ids())-1], "only bad ran on redelivery")
				require.Len(t, pr.ids(), 8)
			})

			t.Run("Discard falls back and records only the poison message as discarded", func(t *testing.T) {
				f := newFixture(t)
				pr := probe(failOn(map[string]func() error{
					"poison": func() error { return txconsume.Discard(errors.New("unparseable")) },
				}))
				results := newResultLog()
				p := f.processor(nil, "g", pr.handle, withIso, txconsume.WithHooks(txconsume.Hooks{OnResult: results.onResult}))
				rs, err := p.ProcessBatch(ctx, msgs("a", "poison", "b"))
				require.NoError(t, err)
				require.Equal(t, []txconsume.Result{A, U, A}, rs)
				require.Equal(t, []string{"a", "poison", "a", "poison", "b"}, pr.ids())
				require.Equal(t, []int{1, 1}, pr.savepointSteps(2, 5))
				require.Equal(t, 1, f.effects("a"))
				require.Equal(t, 1, f.effects("b"))
				require.Equal(t, 0, f.effects("poison"))
				require.Equal(t, txconsume.OutcomeDiscarded, f.outcome("g", "poison"))
				require.Equal(t, txconsume.OutcomeApplied, f.outcome("g", "a"))
				require.Equal(t, []txconsume.Result{U}, results.seen["poison"])
				require.Equal(t, []error{nil}, results.errs["poison"], "OnResult: a discard is no failure")
			})

			t.Run("a panic falls back and fails only its message", func(t *testing.T) {
				f := newFixture(t)
				pr := probe(failOn(map[string]func() error{"panics": func() error { panic("bad state") }}))
				p := f.processor(nil, "g", pr.handle, withIso)
				rs, err := p.ProcessBatch(ctx, msgs("panics", "a", "b"))
				var be *txconsume.BatchError
				require.ErrorAs(t, err, &be)
				require.Len(t, be.Failures, 1)
				var pe *txconsume.PanicError
				require.ErrorAs(t, be.Failed(0), &pe)
				require.Equal(t, []txconsume.Result{0, A, A}, rs)
				require.Equal(t, []string{"panics", "panics", "a", "b"}, pr.ids())
				require.Equal(t, []int{1, 1}, pr.savepointSteps(1, 4))
				require.Equal(t, 0, f.effects("panics"))
				require.Equal(t, "", f.outcome("g", "panics"))
				require.Equal(t, 2, f.totalEffects())
				require.Equal(t, 2, f.dedupRows())
			})
		})
	}

	t.Run("ErrAlreadyApplied in row-lock mode falls back", func(t *testing.T) {
		f := newFixture(t)
		_, err := f.db.ExecContext(ctx, "INSERT INTO t_order VALUES ('o-1', 'CREATED'), ('o-2', 'CREATED')")
		require.NoError(t, err)
		pr := probe(payOrder(nil))
		p := f.processor(nil, "g", pr.handle, txconsume.WithRowLock())
		pay := func(id, order string) *txconsume.Message {
			return &txconsume.Message{ID: id, Keys: []string{order}}
		}
		rs, err := p.ProcessBatch(ctx, []*txconsume.Message{pay("m1", "o-1"), pay("m2", "o-1"), pay("m3", "o-2")})
		require.NoError(t, err)
		require.Equal(t, []txconsume.Result{A, D, A}, rs)
		require.Equal(t, []string{"m1", "m2", "m1", "m2", "m3"}, pr.ids())
		require.Equal(t, 1, f.effects("o-1"))
		require.Equal(t, 1, f.effects("o-2"))
		var paid int
		require.NoError(t, f.db.Get(&paid, "SELECT COUNT(*) FROM t_order WHERE status = 'PAID'"))
		require.Equal(t, 2, paid)
	})

	t.Run("a deadlock after the fallback retries in the savepoint mode", func(t *testing.T) {
		f := newFixture(t)
		// Both batches fall back because of their bad message; in their savepoint runs A updates
		// x then y while B updates y then x, and on their first calls both wait until the other
		// has made its first update, so the second updates cross and InnoDB rolls one batch back.
		// Which one it picks is the server's choice (InnoDB weighs the transactions, and MySQL and
		// MariaDB weigh differently): the two batches are alike, so whichever loses must retry in
		// the savepoint mode.
		cross := crossingUpdates()
		var mu sync.Mutex
		calls := map[string]int{}
		h := func(ctx context.Context, tx *sqlx.Tx, m *txconsume.Message) error {
			mu.Lock()
			calls[m.ID]++
			mu.Unlock()
			if strings.HasPrefix(m.ID, "bad") {
				return errors.New("boom")
			}
			return cross(ctx, tx, m)
		}
		var retried sync.Map // first message id of the batch -> *atomic.Int32
		p := f.processor(nil, "g", h, txconsume.WithHooks(txconsume.Hooks{
			OnRetry: func(_ context.Context, ms []*txconsume.Message, _ int, err error, _ time.Duration) {
				n, _ := retried.LoadOrStore(ms[0].ID, new(atomic.Int32))
				n.(*atomic.Int32).Add(1)
			},
		}))
		batches := [][]*txconsume.Message{msgs("bad1", "A"), msgs("bad2", "B")}
		errs := make([]error, 2)
		rss := make([][]txconsume.Result, 2)
		runConcurrently(2, func(i int) { rss[i], errs[i] = p.ProcessBatch(ctx, batches[i]) })
		retries := make([]int, 2)
		for i, bad := range []string{"bad1", "bad2"} {
			var be *txconsume.BatchError
			require.ErrorAs(t, errs[i], &be)
			require.Len(t, be.Failures, 1)
			require.Equal(t, bad, be.Failures[0].MessageID)
			require.Equal(t, []txconsume.Result{0, A}, rss[i])
			if n, ok := retried.Load(bad); ok {
				retries[i] = int(n.(*atomic.Int32).Load())
			}
		}
		require.Equal(t, 1, retries[0]+retries[1], "exactly one batch lost the deadlock, once: %v", retries)
		mu.Lock()
		for i, id := range []string{"A", "B"} {
			bad := batches[i][0].ID
			require.Equal(t, 2+retries[i], calls[bad], "%s: optimistic run, then one savepoint run per attempt", bad)
			require.Equal(t, 1+retries[i], calls[id], "%s never ran optimistically", id)
		}
		mu.Unlock()
		require.Equal(t, 1, f.effects("A"))
		require.Equal(t, 1, f.effects("B"))
		require.Equal(t, 0, f.effects("bad1")+f.effects("bad2"))
		require.Equal(t, 2, f.dedupRows())
		var x, y int
		require.NoError(t, f.db.Get(&x, "SELECT n FROM t_counter WHERE name = 'x'"))
		require.NoError(t, f.db.Get(&y, "SELECT n FROM t_counter WHERE name = 'y'"))
		require.Equal(t, []int{2, 2}, []int{x, y})
	})

	t.Run("a handler failing on a cancelled context fails the batch without a rerun", func(t *testing.T) {
		f := newFixture(t)
		cctx, cancel := context.WithCancel(ctx)
		defer cancel()
		pr := probe(failOn(map[string]func() error{"b": func() error {
			cancel()
			return errors.New("gave up")
		}}))
		p := f.processor(nil, "g", pr.handle)
		rs, err := p.ProcessBatch(cctx, msgs("a", "b", "c"))
		require.ErrorIs(t, err, context.Canceled)
		var be *txconsume.BatchError
		require.False(t, errors.As(err, &be), "not a partial failure: nothing committed")
		require.Nil(t, rs)
		require.Equal(t, []string{"a", "b"}, pr.ids())
		require.Equal(t, 0, f.totalEffects())
		require.Equal(t, 0, f.dedupRows())
	})

	t.Run("concurrent overlapping batches with failures apply every message at most once", func(t *testing.T) {
		f := newFixture(t)
		const workers, size = 8, 16
		ids := make([]string, 40)
		for i := range ids {
			ids[i] = fmt.Sprintf("m-%02d", i)
		}
		// Every seventh key always fails, every eleventh is poison: most batches fall back.
		fails := func(id string) bool { return id == "m-07" || id == "m-14" || id == "m-21" || id == "m-28" }
		poison := func(id string) bool { return id == "m-11" || id == "m-22" || id == "m-33" }
		h := count(func(ctx context.Context, tx *sqlx.Tx, m *txconsume.Message) error {
			if err := recordEffect(ctx, tx, m); err != nil {
				return err
			}
			switch {
			case fails(m.ID):
				return errors.New("always fails")
			case poison(m.ID):
				return txconsume.Discard(errors.New("poison"))
			}
			return nil
		})
		procs := []*txconsume.Processor{
			f.processor(f.pool(""), "g", h.handle),
			f.processor(f.pool(""), "g", h.handle),
		}
		errs := make([]error, workers)
		applied := make([]int, workers)
		discarded := make([]int, workers)
		runConcurrently(workers, func(w int) {
			batch := randomBatch(uint64(w), 11, ids, size)
			rs, err := procs[w%2].ProcessBatch(ctx, batch)
			var be *txconsume.BatchError
			if errors.As(err, &be) {
				for _, fl := range be.Failures {
					if !fails(batch[fl.Index].ID) {
						err = fmt.Errorf("message %s failed: %w", batch[fl.Index].ID, fl.Err)
						break
					}
					err = nil
				}
			}
			errs[w] = err
			applied[w] = countResult(rs, txconsume.Applied)
			discarded[w] = countResult(rs, txconsume.Discarded)
		})
		totalApplied, totalDiscarded := 0, 0
		for w, err := range errs {
			require.NoError(t, err, "worker %d", w)
			totalApplied += applied[w]
			totalDiscarded += discarded[w]
		}
		var appliedRows, discardedRows int
		require.NoError(t, f.db.Get(&appliedRows, "SELECT COUNT(*) FROM txconsume_dedup WHERE outcome = ?", txconsume.OutcomeApplied))
		require.NoError(t, f.db.Get(&discardedRows, "SELECT COUNT(*) FROM txconsume_dedup WHERE outcome = ?", txconsume.OutcomeDiscarded))
		require.Equal(t, appliedRows, totalApplied, "one Applied per applied key across all batches")
		require.Equal(t, discardedRows, totalDiscarded, "one Discarded per discarded key")
		require.Positive(t, totalDiscarded, "some batches fell back")
		for _, id := range ids {
			switch {
			case fails(id):
				require.Equal(t, 0, f.effects(id), id)
				require.Equal(t, "", f.outcome("g", id), id)
			case poison(id):
				require.Equal(t, 0, f.effects(id), id)
				require.Contains(t, []string{"", txconsume.OutcomeDiscarded}, f.outcome("g", id), id)
			default:
				require.LessOrEqual(t, f.effects(id), 1, id)
				if f.outcome("g", id) != "" {
					require.Equal(t, 1, f.effects(id), id)
				}
			}
		}
	})
}

// randomBatch draws size messages from ids with a generator seeded by (seed1, seed2): batches of
// different workers overlap, come in random order and may hold copies of one key.
func randomBatch(seed1, seed2 uint64, ids []string, size int) []*txconsume.Message {
	r := rand.New(rand.NewPCG(seed1, seed2))
	batch := make([]*txconsume.Message, size)
	for i := range batch {
		batch[i] = msg(ids[r.IntN(len(ids))])
	}
	return batch
}
