package integration

import (
	"testing"

	"github.com/apache/rocketmq-client-go/v2/primitive"
	"github.com/stretchr/testify/require"

	"github.com/txconsume/txconsume/internal/testenv"
)

// TestRMQBatchConsumptionWithFailingMessage: deliveries of up to 16 messages go through ProcessBatch in
// one transaction. Some messages fail their first two deliveries: their batch is redelivered whole (the
// client acknowledges all or nothing), so the batch-mates that were committed come back and are found
// as duplicates. Every message is applied exactly once.
func TestRMQBatchConsumptionWithFailingMessage(t *testing.T) {
	const total, failEvery, failTimes = 480, 40, 2
	e := newRMQEnv(t)
	msgs := make([]*primitive.Message, total)
	fails := 0
	for i := range msgs {
		msgs[i] = e.newMessage(bodyOf(i))
		if i%failEvery == failEvery/2 {
			msgs[i].WithProperty("fail", "1")
			fails++
		}
	}
	// Sent before the consumer starts, so that pulls find full batches waiting.
	testenv.SendAll(e.t, e.prod, msgs)
	w := e.startWorker("consumer", workerSpec{BatchMax: 16, FailTimes: failTimes}, e.stats)

	e.waitFor("every message and the redelivered batch-mates", func() bool {
		return e.stats.applied.Load() >= total && e.stats.duplicate.Load() >= int64(fails)
	})
	require.Equal(t, "shutdown-returned <nil>", lastEvent(w.shutdown()))
	t.Logf("%d messages, %d failing %d times each: %s", total, fails, failTimes, e.stats)

	require.Equal(t, counts{Ledger: total, DistinctKeys: total, Counter: total, Dedup: total}, e.counts())
	require.EqualValues(t, total, e.stats.applied.Load())
	require.Greater(t, e.stats.maxBatch.Load(), int64(1), "deliveries carried several messages")
	require.GreaterOrEqual(t, e.stats.failed.Load(), int64(fails*failTimes))
	require.True(t, e.eventuallyOpenTransactions(func(n int) bool { return n == 0 }), "open transactions after Shutdown")
}
