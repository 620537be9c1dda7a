package integration

import (
	"testing"
	"time"

	"github.com/apache/rocketmq-client-go/v2/primitive"
	"github.com/stretchr/testify/require"

	"github.com/txconsume/txconsume/internal/testenv"
)

// TestRMQExactlyOnceWithResentUniqKeys: 2,000 messages, 300 of them sent a second time with the same
// UNIQ_KEY (what a producer retry after a lost acknowledgement does). Every one of the 2,300 deliveries
// reaches the processor; exactly 2,000 effects are in the database.
func TestRMQExactlyOnceWithResentUniqKeys(t *testing.T) {
	const total, resent = 2000, 300
	e := newRMQEnv(t)

	msgs := make([]*primitive.Message, total)
	for i := range msgs {
		msgs[i] = e.newMessage(bodyOf(i))
	}
	start := time.Now()
	testenv.SendAll(e.t, e.prod, msgs)
	again := make([]*primitive.Message, resent)
	for i := range again {
		again[i] = resend(msgs[i*total/resent])
		require.NotEmpty(t, again[i].GetProperty(primitive.PropertyUniqueClientMessageIdKeyIndex))
	}
	testenv.SendAll(e.t, e.prod, again)
	t.Logf("sent %d messages in %v", total+resent, time.Since(start))

	start = time.Now()
	w := e.startWorker("consumer", workerSpec{}, e.stats)
	e.waitFor("every delivery", func() bool {
		return e.stats.applied.Load()+e.stats.duplicate.Load() >= total+resent
	})
	t.Logf("consumed in %v: %s", time.Since(start), e.stats)

	c := e.counts()
	require.Equal(t, counts{Ledger: total, DistinctKeys: total, Counter: total, Dedup: total}, c)
	require.EqualValues(t, total, e.stats.applied.Load())
	w.shutdown()
	require.GreaterOrEqual(t, e.stats.duplicate.Load(), int64(resent))
}

// TestRMQCrashWindow: for 10% of the messages the first delivery commits its transaction but the
// listener reports failure, as if the process died between commit and acknowledgement. The broker
// redelivers them; the redelivery finds the committed key and changes nothing.
func TestRMQCrashWindow(t *testing.T) {
	const total = 500
	e := newRMQEnv(t)

	msgs := make([]*primitive.Message, total)
	crashes := 0
	for i := range msgs {
		msgs[i] = e.newMessage(bodyOf(i))
		if i%10 == 0 {
			msgs[i].WithProperty("crash", "1")
			crashes++
		}
	}
	// One message per delivery: the test counts each message's results, and a crash fails its
	// whole delivery.
	w := e.startWorker("consumer", workerSpec{Crash: true, BatchMax: 1}, e.stats)
	testenv.SendAll(e.t, e.prod, msgs)
	e.waitFor("every message and every redelivery", func() bool {
		return e.stats.applied.Load()+e.stats.failed.Load() >= total && e.stats.duplicate.Load() >= int64(crashes)
	})
	t.Logf("%s", e.stats)

	require.Equal(t, counts{Ledger: total, DistinctKeys: total, Counter: total, Dedup: total}, e.counts())
	// Every injected crash came back as a duplicate.
	require.EqualValues(t, total-crashes, e.stats.applied.Load())
	require.EqualValues(t, crashes, e.stats.failed.Load())
	require.EqualValues(t, crashes, e.stats.duplicate.Load())
	w.shutdown()
}
