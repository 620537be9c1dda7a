package txconsume

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestLaneLimiter(t *testing.T) {
	ctx := context.Background()
	acquireN := func(t *testing.T, l *laneLimiter, n int) {
		for range n {
			require.NoError(t, l.acquire(ctx))
		}
	}
	t.Run("no limit until a conflict", func(t *testing.T) {
		var l laneLimiter
		acquireN(t, &l, 100)
		l.committed()
		require.Zero(t, l.limit)
	})
	t.Run("a conflict with no other batch in flight leaves the limit to the parts", func(t *testing.T) {
		var l laneLimiter
		acquireN(t, &l, 1)
		concurrent, limit := l.conflicted()
		require.False(t, concurrent)
		require.Zero(t, limit)
	})
	t.Run("conflicts halve the batches in flight, down to one", func(t *testing.T) {
		var l laneLimiter
		acquireN(t, &l, 8)
		concurrent, limit := l.conflicted()
		require.True(t, concurrent)
		require.Equal(t, 4, limit)
		for range 5 {
			l.release()
		}
		concurrent, limit = l.conflicted() // 3 in flight
		require.True(t, concurrent)
		require.Equal(t, 1, limit)
		l.release()
		l.release()
		concurrent, limit = l.conflicted() // 1 in flight: only smaller parts can help now
		require.False(t, concurrent)
		require.Equal(t, 1, limit)
	})
	t.Run("commits without conflicts raise the limit by one, then lift it", func(t *testing.T) {
		l := laneLimiter{limit: 2}
		for range 2*laneGrowthRounds - 1 {
			l.committed()
		}
		require.Equal(t, 2, l.limit)
		l.committed()
		require.Equal(t, 3, l.limit)
		for range 3*laneGrowthRounds - 1 {
			l.committed()
		}
		acquireN(t, &l, 3)
		l.conflicted()
		require.Equal(t, 1, l.limit, "a conflict also forfeits the credit")
		l.committed()
		require.Equal(t, 1, l.limit)

		l = laneLimiter{limit: maxLanes}
		for range maxLanes * laneGrowthRounds {
			l.committed()
		}
		require.Zero(t, l.limit)
	})
	t.Run("at the limit a batch waits for a lane, handed over in arrival order", func(t *testing.T) {
		l := laneLimiter{limit: 1}
		acquireN(t, &l, 1)
		got := make(chan int, 2)
		for i := range 2 {
			go func() {
				if l.acquire(ctx) == nil {
					got <- i
				}
			}()
			require.Eventually(t, func() bool { l.mu.Lock(); defer l.mu.Unlock(); return len(l.waiting) == i+1 },
				5*time.Second, time.Millisecond)
		}
		select {
		case i := <-got:
			t.Fatalf("waiter %d got a lane while the only one was taken", i)
		case <-time.After(50 * time.Millisecond):
		}
		l.release()
		require.Equal(t, 0, <-got)
		l.release()
		require.Equal(t, 1, <-got)
		require.Equal(t, 1, l.inFlight)
	})
	t.Run("a waiter whose context ends leaves without a lane", func(t *testing.T) {
		l := laneLimiter{limit: 1}
		acquireN(t, &l, 1)
		cctx, cancel := context.WithCancel(ctx)
		done := make(chan error)
		go func() { done <- l.acquire(cctx) }()
		require.Eventually(t, func() bool { l.mu.Lock(); defer l.mu.Unlock(); return len(l.waiting) == 1 },
			5*time.Second, time.Millisecond)
		cancel()
		require.ErrorIs(t, <-done, context.Canceled)
		l.release()
		require.Zero(t, l.inFlight)
		require.Empty(t, l.waiting)
		acquireN(t, &l, 1)
	})
	t.Run("a raised limit hands the new lane to a waiter", func(t *testing.T) {
		l := laneLimiter{limit: 1}
		acquireN(t, &l, 1)
		done := make(chan error)
		go func() { done <- l.acquire(ctx) }()
		require.Eventually(t, func() bool { l.mu.Lock(); defer l.mu.Unlock(); return len(l.waiting) == 1 },
			5*time.Second, time.Millisecond)
		for range laneGrowthRounds {
			l.committed()
		}
		require.NoError(t, <-done)
		require.Equal(t, 2, l.inFlight)
	})
}
