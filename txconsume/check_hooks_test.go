package txconsume_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/stretchr/testify/require"

	"github.com/txconsume/txconsume/internal/testenv"
	"github.com/txconsume/txconsume/migrations"
	"github.com/txconsume/txconsume/txconsume"
)

func TestProcessorCheck(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: needs MySQL (run without -short)")
	}
	ctx := context.Background()
	noop := func(context.Context, *sqlx.Tx, *txconsume.Message) error { return nil }

	t.Run("an unmigrated schema is named with what to run", func(t *testing.T) {
		db := testenv.MySQL(t)
		p, err := txconsume.New(db, "g", noop)
		require.NoError(t, err)
		err = p.Check(ctx)
		require.ErrorIs(t, err, migrations.ErrNotMigrated)
		require.ErrorContains(t, err, "group g")
		require.ErrorContains(t, err, "migrations.Up")

		require.NoError(t, migrations.Up(ctx, db.DB))
		require.NoError(t, p.Check(ctx))
	})
	t.Run("row-lock mode needs no txconsume table", func(t *testing.T) {
		p, err := txconsume.New(testenv.MySQL(t), "g", noop, txconsume.WithRowLock())
		require.NoError(t, err)
		require.NoError(t, p.Check(ctx))
	})
	t.Run("an unreachable database is said so", func(t *testing.T) {
		// Port 1 (tcpmux) is not served on this loopback: the connection is refused.
		db, err := sqlx.Open("mysql", "u:p@tcp(127.0.0.1:1)/x?timeout=2s")
		require.NoError(t, err)
		t.Cleanup(func() { _ = db.Close() })
		p, err := txconsume.New(db, "g", noop)
		require.NoError(t, err)
		require.ErrorContains(t, p.Check(ctx), "database unreachable")
	})
}

// TestHooksContext: the context OnStart returns is the one the handler runs under and the one
// OnHandler and OnResult receive, in Process and in ProcessBatch, and every message OnStart saw
// gets exactly one OnResult.
func TestHooksContext(t *testing.T) {
	ctx := context.Background()
	type key struct{}
	type seen struct {
		mu                         sync.Mutex
		started, handled, finished map[string][]string // msg id -> context value at each hook
	}
	setup := func(t *testing.T, h txconsume.Handler) (*txconsume.Processor, *seen) {
		f := newFixture(t)
		s := &seen{started: map[string][]string{}, handled: map[string][]string{}, finished: map[string][]string{}}
		value := func(ctx context.Context) string { v, _ := ctx.Value(key{}).(string); return v }
		hooks := txconsume.Hooks{
			OnStart: func(ctx context.Context, group string, m *txconsume.Message) context.Context {
				s.mu.Lock()
				defer s.mu.Unlock()
				s.started[m.ID] = append(s.started[m.ID], group)
				return context.WithValue(ctx, key{}, "span-of-"+m.ID)
			},
			OnHandler: func(ctx context.Context, m *txconsume.Message, _ error, _ time.Duration) {
				s.mu.Lock()
				defer s.mu.Unlock()
				s.handled[m.ID] = append(s.handled[m.ID], value(ctx))
			},
			OnResult: func(ctx context.Context, m *txconsume.Message, _ txconsume.Result, _ error, _ time.Duration) {
				s.mu.Lock()
				defer s.mu.Unlock()
				s.finished[m.ID] = append(s.finished[m.ID], value(ctx))
			},
		}
		wrapped := func(ctx context.Context, tx *sqlx.Tx, m *txconsume.Message) error {
			if got := value(ctx); got != "span-of-"+m.ID {
				return errors.New("handler context lacks OnStart's value: " + got)
			}
			return h(ctx, tx, m)
		}
		return f.processor(nil, "grp", wrapped, txconsume.WithHooks(hooks)), s
	}
	ok := func(context.Context, *sqlx.Tx, *txconsume.Message) error { return nil }

	t.Run("Process", func(t *testing.T) {
		p, s := setup(t, ok)
		r, err := p.Process(ctx, msg("a"))
		require.NoError(t, err)
		require.Equal(t, txconsume.Applied, r)
		r, err = p.Process(ctx, msg("a"))
		require.NoError(t, err)
		require.Equal(t, txconsume.Duplicate, r)
		require.Equal(t, []string{"grp", "grp"}, s.started["a"])
		require.Equal(t, []string{"span-of-a"}, s.handled["a"], "the duplicate never ran the handler")
		require.Equal(t, []string{"span-of-a", "span-of-a"}, s.finished["a"])
	})
	t.Run("ProcessBatch, with a fallback to savepoints", func(t *testing.T) {
		p, s := setup(t, func(_ context.Context, _ *sqlx.Tx, m *txconsume.Message) error {
			if m.ID == "bad" {
				return errors.New("fails")
			}
			return nil
		})
		rs, err := p.ProcessBatch(ctx, msgs("a", "bad", "b"))
		var be *txconsume.BatchError
		require.ErrorAs(t, err, &be)
		require.Equal(t, []txconsume.Result{txconsume.Applied, 0, txconsume.Applied}, rs)
		for _, id := range []string{"a", "bad", "b"} {
			require.Equal(t, []string{"grp"}, s.started[id], id)
			require.Equal(t, []string{"span-of-" + id}, s.finished[id], id)
			require.NotEmpty(t, s.handled[id], id)
			for _, v := range s.handled[id] {
				require.Equal(t, "span-of-"+id, v, id)
			}
		}
	})
}
