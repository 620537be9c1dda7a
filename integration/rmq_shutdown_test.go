package integration

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestRMQShutdownWaitsForSlowHandler: Shutdown begins while a handler is inside its transaction. It
// returns only after that transaction committed, leaves no transaction open, and a Consumer started
// again in the same group applies the rest without applying anything twice.
func TestRMQShutdownWaitsForSlowHandler(t *testing.T) {
	const before, after = 200, 100
	e := newRMQEnv(t)

	w := e.startWorker("first", workerSpec{Handler: "slow"}, e.stats)

	for i := 0; i < before; i++ {
		m := e.newMessage(bodyOf(i))
		if i == before/2 {
			m.WithProperty("slow", "1")
		}
		e.send(m)
	}
	w.awaitEvent("slow-entered")
	w.send("shutdown")
	w.awaitEvent("draining") // Shutdown has begun and stopped intake
	require.True(t, e.eventuallyOpenTransactions(func(n int) bool { return n > 0 }),
		"the slow handler's transaction is open while Shutdown waits")
	w.send("release")
	events := w.shutdown()
	require.Equal(t, []string{"slow-entered", "draining", "slow message applied", "shutdown-returned <nil>"}, events,
		"Shutdown returned after the slow transaction committed")
	require.True(t, e.eventuallyOpenTransactions(func(n int) bool { return n == 0 }),
		"no transaction left open after Shutdown")
	first := e.counts()
	t.Logf("after shutdown: %+v, %s", first, e.stats)
	require.Equal(t, first.Ledger, first.DistinctKeys)
	require.Equal(t, first.Ledger, first.Counter)
	require.EqualValues(t, first.Ledger, e.stats.applied.Load())

	// Restart in the same group; what was left (and what was held during the shutdown) comes again.
	for i := before; i < before+after; i++ {
		e.send(e.newMessage(bodyOf(i)))
	}
	w = e.startWorker("restarted", workerSpec{Handler: "slow"}, e.stats)
	e.waitForAfterLeaving("every message after the restart", func() bool { return e.stats.applied.Load() >= before+after })
	total := before + after
	require.Equal(t, counts{Ledger: total, DistinctKeys: total, Counter: total, Dedup: total}, e.counts())
	var slow int
	require.NoError(t, e.db.GetContext(context.Background(), &slow,
		`SELECT COUNT(*) FROM ledger WHERE body = ?`, bodyOf(before/2)))
	require.Equal(t, 1, slow)
	t.Logf("after restart: %s", e.stats)
	w.shutdown()
}
