package txconsume

import (
	"context"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
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

// TestLaneLimiterStress runs batches that acquire, conflict, commit and release at once while
// the limit falls and grows, and while waiters' contexts end, some at the moment a lane is
// handed to them. A lane never given back, or a hand-over lost, leaves waiters blocked for
// good: the run then does not end.
func TestLaneLimiterStress(t *testing.T) {
	const workers, rounds = 16, 3000
	var (
		l       laneLimiter
		holders atomic.Int64 // batches between a successful acquire and their release
		granted atomic.Int64
		wg      sync.WaitGroup
	)
	for w := range workers {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), uint64(time.Now().UnixNano())))
			for range rounds {
				ctx, cancel := context.WithCancel(context.Background())
				switch rng.IntN(4) {
				case 0:
					cancel() // ended before it asks: it may still get a free lane at once
				case 1:
					go cancel() // ends while it waits, racing a release's hand-over
				case 2:
					time.AfterFunc(time.Duration(rng.IntN(100))*time.Microsecond, cancel)
				}
				err := l.acquire(ctx)
				cancel()
				if err != nil {
					assert.ErrorIs(t, err, context.Canceled)
					continue
				}
				granted.Add(1)
				holders.Add(1)
				switch rng.IntN(8) {
				case 0:
					l.conflicted() // the limit falls to half the batches in flight
				case 1, 2:
					for range rng.IntN(4 * laneGrowthRounds) {
						l.committed() // the limit grows, up to no limit at all
					}
				}
				runtime.Gosched()
				holders.Add(-1)
				l.release()
			}
		})
	}
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	// A run takes a second or two; 30s without a single lane granted means the waiters are
	// stuck for good.
	progress := time.NewTicker(30 * time.Second)
	defer progress.Stop()
	for last := int64(-1); ; {
		select {
		case <-done:
		case <-progress.C:
			if n := granted.Load(); n != last {
				last = n
				continue
			}
			l.mu.Lock()
			limit, inFlight, waiting := l.limit, l.inFlight, len(l.waiting)
			l.mu.Unlock()
			t.Fatalf("batches wait for a lane that never comes: limit %d, in flight %d, waiting %d, holders %d",
				limit, inFlight, waiting, holders.Load())
		}
		break
	}
	require.Positive(t, granted.Load())
	require.Zero(t, l.inFlight, "every lane given back")
	require.Empty(t, l.waiting)
	l.limit = 1
	require.NoError(t, l.acquire(context.Background()), "a free lane is taken at once")
}
