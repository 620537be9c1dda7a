package txconsume_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/jmoiron/sqlx"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/txconsume/txconsume/txconsume"
)

// splitLog records the splits of batch transactions: OnRetry calls with more than one message.
type splitLog struct {
	mu     sync.Mutex
	sizes  []int
	delays []time.Duration
}

func (l *splitLog) onRetry(_ context.Context, ms []*txconsume.Message, _ int, _ error, delay time.Duration) {
	if len(ms) < 2 {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.sizes = append(l.sizes, len(ms))
	l.delays = append(l.delays, delay)
}

func (l *splitLog) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.sizes)
}

// deadlockOnce returns a handler that records the effect of every message and fails the first
// attempt of the message named id with a deadlock error, as InnoDB reports one.
func deadlockOnce(id string) txconsume.Handler {
	var once sync.Once
	return func(ctx context.Context, tx *sqlx.Tx, m *txconsume.Message) error {
		if err := recordEffect(ctx, tx, m); err != nil {
			return err
		}
		failed := false
		if m.ID == id {
			once.Do(func() { failed = true })
		}
		if failed {
			return &mysql.MySQLError{Number: 1213, Message: "Deadlock found when trying to get lock"}
		}
		return nil
	}
}

// transactionProbe wraps h to count the transactions a batch ran in: each handler releases the
// savepoint the previous handler of its transaction set (failing if there is none: the first
// handler of a transaction) and sets it again.
type transactionProbe struct {
	mu    sync.Mutex
	first int
}

func (p *transactionProbe) wrap(h txconsume.Handler) txconsume.Handler {
	return func(ctx context.Context, tx *sqlx.Tx, m *txconsume.Message) error {
		if _, err := tx.ExecContext(ctx, "RELEASE SAVEPOINT txn_probe"); err != nil {
			p.mu.Lock()
			p.first++
			p.mu.Unlock()
		}
		if _, err := tx.ExecContext(ctx, "SAVEPOINT txn_probe"); err != nil {
			return err
		}
		return h(ctx, tx, m)
	}
}

func (p *transactionProbe) take() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := p.first
	p.first = 0
	return n
}

// activeGauge wraps a handler to make it slow (10ms) and to record how many of its calls run at
// once.
type activeGauge struct {
	active, highest atomic.Int32
}

func (g *activeGauge) wrap(h txconsume.Handler) txconsume.Handler {
	return func(ctx context.Context, tx *sqlx.Tx, m *txconsume.Message) error {
		n := g.active.Add(1)
		defer g.active.Add(-1)
		for {
			if old := g.highest.Load(); n <= old || g.highest.CompareAndSwap(old, n) {
				break
			}
		}
		time.Sleep(10 * time.Millisecond)
		return h(ctx, tx, m)
	}
}

func (g *activeGauge) max() int32 { return g.highest.Load() }
func (g *activeGauge) reset()     { g.highest.Store(0) }

// TestProcessBatchSplit proves that a batch transaction that loses a lock conflict is split
// rather than rerun whole, and that every message is still applied exactly once: counted in the
// database, through real deadlocks between concurrent batches on hot rows.
func TestProcessBatchSplit(t *testing.T) {
	ctx := context.Background()
	A, D := txconsume.Applied, txconsume.Duplicate

	t.Run("a deadlock splits the victim's batch into halves that commit on their own", func(t *testing.T) {
		f := newFixture(t)
		splits := &splitLog{}
		p := f.processor(nil, "g", crossingUpdates(), txconsume.WithHooks(txconsume.Hooks{OnRetry: splits.onRetry}))
		batches := [][]*txconsume.Message{msgs("a1", "A", "a2", "a3"), msgs("b1", "B", "b2", "b3")}
		errs := make([]error, 2)
		rss := make([][]txconsume.Result, 2)
		runConcurrently(2, func(i int) { rss[i], errs[i] = p.ProcessBatch(ctx, batches[i]) })
		for i := range batches {
			require.NoError(t, errs[i])
			require.Equal(t, []txconsume.Result{A, A, A, A}, rss[i])
		}
		require.Equal(t, []int{4}, splits.sizes, "the victim's transaction of four was split once")
		require.Equal(t, []time.Duration{0}, splits.delays, "a split waits for nothing")
		for _, id := range []string{"a1", "A", "a2", "a3", "b1", "B", "b2", "b3"} {
			require.Equal(t, 1, f.effects(id), id)
		}
		require.Equal(t, 8, f.dedupRows())
		var x, y int
		require.NoError(t, f.db.Get(&x, "SELECT n FROM t_counter WHERE name = 'x'"))
		require.NoError(t, f.db.Get(&y, "SELECT n FROM t_counter WHERE name = 'y'"))
		require.Equal(t, []int{2, 2}, []int{x, y})

		for _, b := range batches {
			rs, err := p.ProcessBatch(ctx, b)
			require.NoError(t, err)
			require.Equal(t, []txconsume.Result{D, D, D, D}, rs, "a redelivery finds every part's keys")
		}
		require.Equal(t, 8, f.totalEffects())
	})

	// Concurrent batches on hot rows, on both kinds of pool, while some messages fail in their
	// handler: real deadlocks split transactions, failures send parts into the savepoint mode,
	// and every effect is counted in the database.
	pools := map[string]func(f *fixture) *sqlx.DB{
		"plain pool":     func(f *fixture) *sqlx.DB { return f.pool("") },
		"txconsume.Open": func(f *fixture) *sqlx.DB { return f.guardedPool("") },
	}
	for _, iso := range isolations {
		for poolName, open := range pools {
			t.Run("hot rows in random orders, concurrent batches, failing handlers, "+iso.String()+", "+poolName, func(t *testing.T) {
				hotRowBatches(t, open, iso)
			})
		}
	}

	t.Run("a part that outlives its retries after another part committed fails alone", func(t *testing.T) {
		f := newFixture(t)
		h := count(func(ctx context.Context, tx *sqlx.Tx, m *txconsume.Message) error {
			if err := recordEffect(ctx, tx, m); err != nil {
				return err
			}
			if m.ID == "b" {
				return &mysql.MySQLError{Number: 1213, Message: "Deadlock found when trying to get lock"}
			}
			return nil
		})
		p := f.processor(nil, "g", h.handle, txconsume.WithMaxRetries(2),
			txconsume.WithRetryBackoff(time.Millisecond, time.Millisecond))
		rs, err := p.ProcessBatch(ctx, msgs("a", "b"))
		var be *txconsume.BatchError
		require.ErrorAs(t, err, &be)
		require.Len(t, be.Failures, 1)
		require.Equal(t, 1, be.Failures[0].Index)
		require.ErrorIs(t, be.Failures[0].Err, txconsume.ErrRetriesExhausted)
		require.Equal(t, uint16(1213), mysqlErrNumber(be.Failures[0].Err))
		require.Equal(t, A, rs[0], "a committed in its own part")
		require.Equal(t, 1, f.effects("a"))
		require.Equal(t, 0, f.effects("b"))
		require.Equal(t, 1, f.dedupRows())
		require.Equal(t, 1+3, h.n("b"), "once in the batch, then alone with two retries")
	})

	t.Run("a part of one message finds a key consumed before Duplicate", func(t *testing.T) {
		f := newFixture(t)
		p := f.processor(nil, "g", deadlockOnce("b"))
		r, err := p.Process(ctx, msg("a"))
		require.NoError(t, err)
		require.Equal(t, A, r)
		rs, err := p.ProcessBatch(ctx, msgs("a", "b"))
		require.NoError(t, err)
		require.Equal(t, []txconsume.Result{D, A}, rs)
		require.Equal(t, 1, f.effects("a"))
		require.Equal(t, 1, f.effects("b"))
		require.Equal(t, 2, f.dedupRows())
	})

	t.Run("after a conflict between concurrent batches they run one at a time, still whole", func(t *testing.T) {
		// Six concurrent batches of four slow messages: how many handlers run at once, and in how
		// many transactions, with and without a conflict first.
		concurrentBatches := func(t *testing.T, f *fixture, p *txconsume.Processor, gauge *activeGauge, probe *transactionProbe, round string) {
			gauge.reset()
			probe.take()
			batches := make([][]*txconsume.Message, 6)
			for w := range batches {
				for i := range 4 {
					batches[w] = append(batches[w], msg(fmt.Sprintf("%s-w%d-%d", round, w, i)))
				}
			}
			runConcurrently(len(batches), func(w int) {
				rs, err := p.ProcessBatch(ctx, batches[w])
				assert.NoError(t, err)
				assert.Equal(t, []txconsume.Result{A, A, A, A}, rs)
			})
			for _, b := range batches {
				for _, m := range b {
					require.Equal(t, 1, f.effects(m.ID), m.ID)
				}
			}
			require.Equal(t, len(batches), probe.take(), "every batch in one transaction")
		}

		f := newFixture(t)
		gauge, probe, splits := &activeGauge{}, &transactionProbe{}, &splitLog{}
		p := f.processor(nil, "g", probe.wrap(gauge.wrap(crossingUpdates())),
			txconsume.WithHooks(txconsume.Hooks{OnRetry: splits.onRetry}))
		concurrentBatches(t, f, p, gauge, probe, "before")
		require.Greater(t, gauge.max(), int32(1), "without conflicts batches run side by side")
		require.Zero(t, txconsume.LaneLimit(p))

		batches := [][]*txconsume.Message{msgs("a1", "A", "a2", "a3"), msgs("b1", "B", "b2", "b3")}
		runConcurrently(2, func(i int) {
			rs, err := p.ProcessBatch(ctx, batches[i])
			assert.NoError(t, err)
			assert.Equal(t, []txconsume.Result{A, A, A, A}, rs)
		})
		require.Equal(t, []int{4}, splits.sizes, "the deadlock's victim was split")
		require.Equal(t, 1, txconsume.LaneLimit(p), "two batches conflicted: one at a time")

		concurrentBatches(t, f, p, gauge, probe, "after")
		require.Equal(t, int32(1), gauge.max(), "after the conflict one batch transaction at a time")
		require.Len(t, splits.sizes, 1)
		require.Equal(t, 6*4*2+8, f.totalEffects())
		require.Equal(t, 6*4*2+8, f.dedupRows())
	})

	t.Run("a batch waits for a lane, or for its context; a single message takes none", func(t *testing.T) {
		f := newFixture(t)
		p := f.processor(nil, "g", recordEffect)
		release := txconsume.HoldLanes(p, 1)

		rs, err := p.ProcessBatch(ctx, msgs("single"))
		require.NoError(t, err, "a part of one message is a transaction like Process's: no lane")
		require.Equal(t, []txconsume.Result{A}, rs)

		short, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
		defer cancel()
		_, err = p.ProcessBatch(short, msgs("p1", "p2"))
		require.ErrorIs(t, err, context.DeadlineExceeded, "no lane came free before the context ended")
		require.Zero(t, f.effects("p1"))
		require.Empty(t, f.outcome("g", "p1"))

		done := make(chan []txconsume.Result)
		go func() {
			rs, err := p.ProcessBatch(ctx, msgs("p1", "p2"))
			assert.NoError(t, err)
			done <- rs
		}()
		select {
		case <-done:
			t.Fatal("a batch ran while the only lane was taken")
		case <-time.After(100 * time.Millisecond):
		}
		release()
		require.Equal(t, []txconsume.Result{A, A}, <-done)
		require.Equal(t, 3, f.totalEffects())
		require.Equal(t, 3, f.dedupRows())
	})

	t.Run("after a conflict later batches run in smaller transactions, then grow back to one", func(t *testing.T) {
		f := newFixture(t)
		probe := &transactionProbe{}
		p := f.processor(nil, "g", probe.wrap(deadlockOnce("c0")))
		_, err := p.ProcessBatch(ctx, msgs("a0", "b0", "c0", "d0"))
		require.NoError(t, err)
		require.Equal(t, 3, probe.take(), "the batch, then its two halves")

		// The limit grows by one per 16 limits' worth of committed messages: from 2 to 4 that is
		// 2*16 + 3*16 messages, about 24 batches of four.
		const batches = 60
		var txns []int
		for i := 1; i <= batches; i++ {
			rs, err := p.ProcessBatch(ctx, msgs(fmt.Sprintf("a%d", i), fmt.Sprintf("b%d", i), fmt.Sprintf("c%d", i), fmt.Sprintf("d%d", i)))
			require.NoError(t, err)
			require.Equal(t, []txconsume.Result{A, A, A, A}, rs)
			txns = append(txns, probe.take())
		}
		require.Equal(t, 2, txns[0], "the next batch is cut into the parts that got through: %v", txns)
		require.Equal(t, 1, txns[len(txns)-1], "committed parts grow the limit back to the whole batch: %v", txns)
		for i := 1; i < len(txns); i++ {
			require.LessOrEqual(t, txns[i], txns[i-1], "the limit only grows without conflicts: %v", txns)
		}
		require.Equal(t, (batches+1)*4, f.totalEffects())
		require.Equal(t, (batches+1)*4, f.dedupRows())
	})
}

// hotRowBatches runs rounds of concurrent batches whose messages add 1 to two of three hot rows
// in orders of their own, until real deadlocks have split transactions; every tenth message's
// handler fails until its redelivery. It then redelivers everything and counts the effects.
func hotRowBatches(t *testing.T, open func(f *fixture) *sqlx.DB, iso sql.IsolationLevel) {
	ctx := context.Background()
	A, D := txconsume.Applied, txconsume.Duplicate
	f := newFixture(t)
	_, err := f.db.ExecContext(ctx, `CREATE TABLE t_hot (id INT PRIMARY KEY, n BIGINT NOT NULL)`)
	require.NoError(t, err)
	_, err = f.db.ExecContext(ctx, `INSERT INTO t_hot VALUES (0, 0), (1, 0), (2, 0)`)
	require.NoError(t, err)
	var redelivery atomic.Bool
	errInjected := errors.New("injected handler failure")
	h := func(ctx context.Context, tx *sqlx.Tx, m *txconsume.Message) error {
		var a, b int
		if _, err := fmt.Sscanf(m.Properties["rows"], "%d,%d", &a, &b); err != nil {
			return err
		}
		for _, row := range []int{a, b} {
			if _, err := tx.ExecContext(ctx, "UPDATE t_hot SET n = n + 1 WHERE id = ?", row); err != nil {
				return err
			}
		}
		if err := recordEffect(ctx, tx, m); err != nil {
			return err
		}
		if m.Properties["fail"] == "yes" && !redelivery.Load() {
			return errInjected // after its writes: they must be rolled back
		}
		return nil
	}
	splits := &splitLog{}
	p := f.processor(open(f), "g", h, txconsume.WithIsolation(iso),
		txconsume.WithHooks(txconsume.Hooks{OnRetry: splits.onRetry}))
	const workers, size = 6, 10
	var all [][]*txconsume.Message
	applied, failed := 0, 0
	// Rounds until real deadlocks have split transactions (almost always the first).
	for round := 0; round < 30 && splits.count() == 0; round++ {
		batches := make([][]*txconsume.Message, workers)
		r := rand.New(rand.NewPCG(uint64(round), 13))
		for w := range batches {
			for i := range size {
				m := msg(fmt.Sprintf("r%d-w%d-%d", round, w, i))
				perm := r.Perm(3)
				m.Properties = map[string]string{"rows": fmt.Sprintf("%d,%d", perm[0], perm[1])}
				if i == 3 {
					m.Properties["fail"] = "yes"
				}
				batches[w] = append(batches[w], m)
			}
		}
		all = append(all, batches...)
		rss := make([][]txconsume.Result, workers)
		errs := make([]error, workers)
		runConcurrently(workers, func(w int) { rss[w], errs[w] = p.ProcessBatch(ctx, batches[w]) })
		for w := range batches {
			var be *txconsume.BatchError
			require.Error(t, errs[w], "every batch has a failing message")
			if !errors.As(errs[w], &be) {
				// The whole batch failed (retries used up before any part committed): nothing
				// of it may be there.
				for _, m := range batches[w] {
					require.Zero(t, f.effects(m.ID), m.ID)
					require.Empty(t, f.outcome("g", m.ID), m.ID)
				}
				failed += len(batches[w])
				continue
			}
			for i, m := range batches[w] {
				if err := be.Failed(i); err != nil {
					if m.Properties["fail"] == "yes" {
						require.ErrorIs(t, err, errInjected, m.ID)
					}
					require.Zero(t, f.effects(m.ID), "a failed message left no effect: %s", m.ID)
					require.Empty(t, f.outcome("g", m.ID), m.ID)
					failed++
					continue
				}
				require.NotEqual(t, "yes", m.Properties["fail"], "%s failed in its handler but was not reported", m.ID)
				require.Equal(t, A, rss[w][i], m.ID)
				require.Equal(t, 1, f.effects(m.ID), m.ID)
				applied++
			}
		}
	}
	require.Positive(t, splits.count(), "30 rounds of crossing batches without a deadlock")
	require.GreaterOrEqual(t, failed, len(all), "at least the injected failures")
	require.Equal(t, applied, f.dedupRows(), "one claim per Applied result")

	// Redelivery of everything, one batch at a time: the applied come back Duplicate, the failed
	// apply now; in the end every message has exactly one effect.
	redelivery.Store(true)
	for _, b := range all {
		rs, err := p.ProcessBatch(ctx, b)
		require.NoError(t, err)
		for i, m := range b {
			require.Contains(t, []txconsume.Result{A, D}, rs[i], m.ID)
		}
	}
	total := len(all) * size
	require.Equal(t, total, f.totalEffects())
	require.Equal(t, total, f.dedupRows())
	var distinct, sum int
	require.NoError(t, f.db.Get(&distinct, "SELECT COUNT(DISTINCT msg_key) FROM t_effect"))
	require.NoError(t, f.db.Get(&sum, "SELECT SUM(n) FROM t_hot"))
	require.Equal(t, total, distinct)
	require.Equal(t, 2*total, sum, "every message's two updates, once")
}
