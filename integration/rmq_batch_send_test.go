package integration

import (
	"context"
	"fmt"
	"testing"

	"github.com/apache/rocketmq-client-go/v2/primitive"
	"github.com/stretchr/testify/require"

	"github.com/txconsume/txconsume/internal/testenv"
)

// TestRMQBatchSendDedupByBusinessKey: the Go client sets no UNIQ_KEY on the messages of a batch send
// (SendSync with several messages), so a batch sent twice arrives under new ids, and deduplication by
// id would apply it twice. With txconsume.KeyByFirstKey the producer's business key is the
// deduplication key: every order is applied once. Some first deliveries fail, to show that a
// redelivery through the retry topic keeps the message's id (ORIGIN_MESSAGE_ID).
func TestRMQBatchSendDedupByBusinessKey(t *testing.T) {
	const orders, batch = 60, 10
	e := newRMQEnv(t)

	var sent []*primitive.Message
	sendBatches := func(copyOf bool) {
		for b := 0; b < orders/batch; b++ {
			msgs := make([]*primitive.Message, batch)
			for i := range msgs {
				n := b*batch + i
				if copyOf {
					msgs[i] = resend(sent[n])
					continue
				}
				msgs[i] = e.newMessage(bodyOf(n), fmt.Sprintf("order-%d", n))
				if n%7 == 0 {
					msgs[i].WithProperty("fail", "1")
				}
				sent = append(sent, msgs[i])
			}
			res, err := testenv.SendSync(context.Background(), e.prod, msgs...)
			require.NoError(t, err)
			require.Equal(t, primitive.SendOK, res.Status)
			for _, m := range msgs {
				require.Empty(t, m.GetProperty(primitive.PropertyUniqueClientMessageIdKeyIndex),
					"the client sets no UNIQ_KEY on batch-sent messages")
			}
		}
	}
	sendBatches(false)
	sendBatches(true) // the producer sends every batch again, as after a lost acknowledgement

	w := e.startWorker("consumer", workerSpec{KeyByFirstKey: true, FailTimes: 1}, e.stats)
	e.waitFor("both copies of every order", func() bool {
		// Deliveries carry several messages, and a failed one comes back whole: its committed
		// messages add duplicates before the failed ones are applied, so wait for both counts.
		return e.stats.applied.Load() >= orders && e.stats.applied.Load()+e.stats.duplicate.Load() >= 2*orders
	})
	t.Logf("%s", e.stats)

	require.Equal(t, counts{Ledger: orders, DistinctKeys: orders, Counter: orders, Dedup: orders}, e.counts())
	require.EqualValues(t, orders, e.stats.applied.Load())
	w.shutdown()
	idsByKey := w.ids()
	require.Len(t, idsByKey, orders)
	for key, ids := range idsByKey {
		// Two sends, two ids; the failed first deliveries came back under the id they had.
		require.Len(t, ids, 2, "ids of %s: %v", key, ids)
	}
}
