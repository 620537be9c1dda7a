package integration

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/txconsume/txconsume/internal/testenv"
)

// TestRMQRebalanceWhenAConsumerLeaves: two Consumers of one group (two processes, distinct instance names)
// share the topic's queues. While messages keep arriving, one of them shuts down; the group
// rebalances and the other takes over its queues from the committed offsets. Every message is applied
// exactly once, none is lost, and both instances did part of the work.
func TestRMQRebalanceWhenAConsumerLeaves(t *testing.T) {
	const total = 1200
	e := newRMQEnv(t)
	bStats := &resultStats{}
	a := e.startWorker("a", workerSpec{Label: "a", Instance: testenv.UniqueName(t, "a")}, e.stats)
	b := e.startWorker("b", workerSpec{Label: "b", Instance: testenv.UniqueName(t, "b")}, bStats)
	applied := func() int64 { return e.stats.applied.Load() + bStats.applied.Load() }
	seen := func() int64 {
		return applied() + e.stats.duplicate.Load() + bStats.duplicate.Load()
	}

	// Send at a steady pace from the side, as a live producer would.
	var wg sync.WaitGroup
	wg.Add(1)
	sendErr := make(chan error, 1)
	go func() {
		defer wg.Done()
		for i := 0; i < total; i++ {
			if _, err := testenv.SendSync(context.Background(), e.prod, e.newMessage(bodyOf(i))); err != nil {
				sendErr <- err
				return
			}
			if i%20 == 0 {
				time.Sleep(10 * time.Millisecond) // pacing only; no assertion depends on it
			}
		}
	}()

	// Both instances must have had queues before one leaves, or nothing would be rebalanced.
	e.waitFor("both instances consuming", func() bool {
		return e.stats.applied.Load() > 0 && bStats.applied.Load() > 0
	})
	e.waitFor("a third of the messages", func() bool { return applied() >= total/3 })
	require.Equal(t, "shutdown-returned <nil>", lastEvent(a.shutdown()))
	appliedByA := e.stats.applied.Load()
	t.Logf("instance A left after applying %d (B: %d)", appliedByA, bStats.applied.Load())

	wg.Wait()
	select {
	case err := <-sendErr:
		require.NoError(t, err)
	default:
	}
	e.waitForAfterLeaving("every message", func() bool { return applied() >= total })
	t.Logf("A: %s; B: %s; deliveries seen: %d", e.stats, bStats, seen())

	require.Equal(t, counts{Ledger: total, DistinctKeys: total, Counter: total, Dedup: total}, e.counts())
	require.EqualValues(t, total, applied())
	require.Equal(t, appliedByA, e.stats.applied.Load(), "A applied nothing after its Shutdown returned")
	var byConsumer []struct {
		Consumer string `db:"consumer"`
		N        int    `db:"n"`
	}
	require.NoError(t, e.db.SelectContext(context.Background(), &byConsumer,
		`SELECT consumer, COUNT(*) AS n FROM ledger GROUP BY consumer ORDER BY consumer`))
	require.Len(t, byConsumer, 2)
	require.EqualValues(t, appliedByA, byConsumer[0].N)
	require.EqualValues(t, bStats.applied.Load(), byConsumer[1].N)
	b.shutdown()
}
