package idemtest

import (
	"context"
	"crypto/rand"
	"math"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/txconsume/txconsume/txconsume/idem"
)

// Timing of the suite. Short TTLs make expiry observable in a test; long ones make sure a record
// does not expire while a subtest looks at it, even on a slow, shared machine. A subtest that
// must see a record both before and after it expires uses watchedTTL: on a loaded machine two
// calls in a row have taken longer than shortTTL, and such a subtest then failed for the wrong
// reason.
const (
	shortTTL     = 300 * time.Millisecond
	watchedTTL   = 3 * time.Second
	longTTL      = time.Minute
	waitFor      = 15 * time.Second
	pollInterval = 20 * time.Millisecond
)

// owner draws a fresh owner token, as the Processor does per attempt.
func owner() string {
	return rand.Text()
}

func newStore(t *testing.T, b Backend) idem.Store {
	t.Helper()
	s, shutdown := b.NewStore(t)
	t.Cleanup(shutdown)
	return s
}

func runStore(t *testing.T, setup func(t *testing.T) Backend) {
	ctx := context.Background()
	key := idem.Key{Group: "g", Topic: "orders", ID: "msg-1"}

	t.Run("FirstAcquireWins", func(t *testing.T) {
		s := newStore(t, setup(t))
		a, err := s.Acquire(ctx, key, owner(), longTTL)
		require.NoError(t, err)
		require.Equal(t, idem.Acquired, a.State)

		a, err = s.Acquire(ctx, key, owner(), longTTL)
		require.NoError(t, err)
		require.Equal(t, idem.InProgress, a.State)
		require.Greater(t, a.Remaining, time.Duration(0))
		require.LessOrEqual(t, a.Remaining, longTTL)
	})

	t.Run("ConcurrentAcquireHasOneWinner", func(t *testing.T) {
		b := setup(t)
		stores := []idem.Store{newStore(t, b), newStore(t, b)}
		const n = 16
		states := make([]idem.State, n)
		errs := make([]error, n)
		start := make(chan struct{})
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				<-start
				var a idem.Acquisition
				a, errs[i] = stores[i%2].Acquire(ctx, key, owner(), longTTL)
				states[i] = a.State
			})
		}
		close(start)
		wg.Wait()
		won := 0
		for i := range n {
			require.NoError(t, errs[i])
			if states[i] == idem.Acquired {
				won++
			} else {
				require.Equal(t, idem.InProgress, states[i])
			}
		}
		require.Equal(t, 1, won)
	})

	t.Run("ConsumedIsReportedWithinRetention", func(t *testing.T) {
		s := newStore(t, setup(t))
		o := owner()
		mustAcquire(t, s, key, o, longTTL)
		require.NoError(t, s.MarkConsumed(ctx, key, o, time.Hour))

		a, err := s.Acquire(ctx, key, owner(), longTTL)
		require.NoError(t, err)
		require.Equal(t, idem.Consumed, a.State)
		require.Greater(t, a.Remaining, longTTL, "remaining retention, not the processing TTL")
		require.LessOrEqual(t, a.Remaining, time.Hour)
	})

	t.Run("ReleaseFreesTheKey", func(t *testing.T) {
		s := newStore(t, setup(t))
		o := owner()
		mustAcquire(t, s, key, o, longTTL)
		require.NoError(t, s.Release(ctx, key, o))
		mustAcquire(t, s, key, owner(), longTTL)
	})

	t.Run("TransitionsCompareTheOwner", func(t *testing.T) {
		s := newStore(t, setup(t))
		o := owner()
		mustAcquire(t, s, key, o, longTTL)

		other := owner()
		require.ErrorIs(t, s.MarkConsumed(ctx, key, other, time.Hour), idem.ErrNotOwner)
		require.ErrorIs(t, s.Release(ctx, key, other), idem.ErrNotOwner)
		requireState(t, s, key, idem.InProgress) // still o's

		require.NoError(t, s.MarkConsumed(ctx, key, o, time.Hour))
		// A CONSUMED record is final: its own owner cannot release it, and another cannot mark it.
		// Its own owner marking it again succeeds and changes nothing: that is a MarkConsumed
		// retried after the store applied it but its answer was lost.
		require.ErrorIs(t, s.Release(ctx, key, o), idem.ErrNotOwner)
		require.ErrorIs(t, s.MarkConsumed(ctx, key, other, time.Hour), idem.ErrNotOwner)
		require.NoError(t, s.MarkConsumed(ctx, key, o, time.Hour))
		requireState(t, s, key, idem.Consumed)

		// A key nobody holds cannot be marked. Releasing it succeeds: the key is free, which is
		// what a Release retried after its answer was lost finds.
		absent := idem.Key{Group: "g", Topic: "orders", ID: "never-acquired"}
		require.ErrorIs(t, s.MarkConsumed(ctx, absent, o, time.Hour), idem.ErrNotOwner)
		require.NoError(t, s.Release(ctx, absent, o))
		mustAcquire(t, s, absent, owner(), longTTL)
	})

	t.Run("ExpiredProcessingIsTakenOver", func(t *testing.T) {
		s := newStore(t, setup(t))
		mustAcquire(t, s, key, owner(), watchedTTL)
		requireState(t, s, key, idem.InProgress)
		eventuallyAcquire(t, s, key)
	})

	t.Run("StaleOwnerCannotClobber", func(t *testing.T) {
		b := setup(t)
		s1, s2 := newStore(t, b), newStore(t, b)
		stale := owner()
		mustAcquire(t, s1, key, stale, shortTTL)
		fresh := eventuallyAcquire(t, s2, key) // stale's record expired and was taken over

		// The stale owner wakes up: it can neither mark nor delete the new owner's record.
		require.ErrorIs(t, s1.MarkConsumed(ctx, key, stale, time.Hour), idem.ErrNotOwner)
		require.ErrorIs(t, s1.Release(ctx, key, stale), idem.ErrNotOwner)
		requireState(t, s1, key, idem.InProgress)

		// The new owner's transitions still work, and after them the stale owner still cannot.
		require.NoError(t, s2.MarkConsumed(ctx, key, fresh, time.Hour))
		require.ErrorIs(t, s1.Release(ctx, key, stale), idem.ErrNotOwner)
		require.ErrorIs(t, s1.MarkConsumed(ctx, key, stale, time.Hour), idem.ErrNotOwner)
		requireState(t, s1, key, idem.Consumed)
	})

	t.Run("ConsumedExpiresAfterRetention", func(t *testing.T) {
		s := newStore(t, setup(t))
		o := owner()
		mustAcquire(t, s, key, o, longTTL)
		require.NoError(t, s.MarkConsumed(ctx, key, o, watchedTTL))
		requireState(t, s, key, idem.Consumed)
		eventuallyAcquire(t, s, key)
	})

	t.Run("LongestDurationsAreKept", func(t *testing.T) {
		// The longest time.Duration (about 292 years) is how a caller says "keep it for good"; a
		// conversion that overflows would turn it into an expiry in the past or a moment away.
		s := newStore(t, setup(t))
		o := owner()
		mustAcquire(t, s, key, o, math.MaxInt64)
		a, err := s.Acquire(ctx, key, owner(), longTTL)
		require.NoError(t, err)
		require.Equal(t, idem.InProgress, a.State)
		require.Greater(t, a.Remaining, 100*365*24*time.Hour)

		require.NoError(t, s.MarkConsumed(ctx, key, o, math.MaxInt64))
		a, err = s.Acquire(ctx, key, owner(), longTTL)
		require.NoError(t, err)
		require.Equal(t, idem.Consumed, a.State)
		require.Greater(t, a.Remaining, 100*365*24*time.Hour)
	})

	t.Run("KeysAreNamespacedAndByteExact", func(t *testing.T) {
		s := newStore(t, setup(t))
		long := strings.Repeat("k", 1000)
		keys := []idem.Key{
			{Group: "g", Topic: "t", ID: "A"},
			// Under a case- and pad-insensitive collation these would all equal "A".
			{Group: "g", Topic: "t", ID: "a"},
			{Group: "g", Topic: "t", ID: "a "},
			{Group: "g", Topic: "t", ID: "A "},
			{Group: "G", Topic: "t", ID: "A"},
			{Group: "g", Topic: "T", ID: "A"},
			{Group: "g", Topic: "t", ID: "é"},
			{Group: "g", Topic: "t", ID: "e"},
			// Same id in another group or topic.
			{Group: "g2", Topic: "t", ID: "A"},
			{Group: "g", Topic: "t2", ID: "A"},
			// Separator characters inside names must not make two keys meet.
			{Group: "x:y", Topic: "z", ID: "A"},
			{Group: "x", Topic: "y:z", ID: "A"},
			{Group: "x", Topic: "y", ID: "z:A"},
			// Long keys that differ only in their last byte.
			{Group: "g", Topic: "t", ID: long + "1"},
			{Group: "g", Topic: "t", ID: long + "2"},
		}
		owners := make([]string, len(keys))
		for i, k := range keys {
			owners[i] = owner()
			a, err := s.Acquire(ctx, k, owners[i], longTTL)
			require.NoError(t, err)
			require.Equal(t, idem.Acquired, a.State, "key %d %v collides with an earlier key", i, k)
		}
		for i, k := range keys {
			require.NoError(t, s.MarkConsumed(ctx, k, owners[i], time.Hour), "key %d", i)
			requireState(t, s, k, idem.Consumed)
		}
	})

	t.Run("UnreachableStoreFails", func(t *testing.T) {
		s := setup(t).Unreachable(t)
		cctx, cancel := context.WithTimeout(ctx, waitFor)
		defer cancel()
		o := owner()
		_, err := s.Acquire(cctx, key, o, longTTL)
		require.Error(t, err)
		err = s.MarkConsumed(cctx, key, o, time.Hour)
		require.Error(t, err)
		require.NotErrorIs(t, err, idem.ErrNotOwner, "an outage is not an ownership answer")
		err = s.Release(cctx, key, o)
		require.Error(t, err)
		require.NotErrorIs(t, err, idem.ErrNotOwner)
	})
}

func mustAcquire(t *testing.T, s idem.Store, key idem.Key, o string, ttl time.Duration) {
	t.Helper()
	a, err := s.Acquire(context.Background(), key, o, ttl)
	require.NoError(t, err)
	require.Equal(t, idem.Acquired, a.State)
}

// requireState checks what an Acquire by a fresh owner reports, without changing the record.
func requireState(t *testing.T, s idem.Store, key idem.Key, want idem.State) {
	t.Helper()
	require.NotEqual(t, idem.Acquired, want, "use mustAcquire")
	a, err := s.Acquire(context.Background(), key, owner(), longTTL)
	require.NoError(t, err)
	require.Equal(t, want, a.State)
}

// eventuallyAcquire polls until a fresh owner acquires key (its record expired) and returns that
// owner.
func eventuallyAcquire(t *testing.T, s idem.Store, key idem.Key) string {
	t.Helper()
	var won string
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		o := owner()
		a, err := s.Acquire(context.Background(), key, o, longTTL)
		require.NoError(c, err)
		require.Equal(c, idem.Acquired, a.State)
		won = o
	}, waitFor, pollInterval)
	return won
}
