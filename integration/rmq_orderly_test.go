package integration

import (
	"context"
	"fmt"
	"strconv"
	"testing"

	"github.com/apache/rocketmq-client-go/v2/primitive"
	"github.com/apache/rocketmq-client-go/v2/producer"
	"github.com/stretchr/testify/require"
)

// TestRMQOrderlySequencesStayIncreasing: orders' events are sent with the order as sharding key, so each
// order's events share a queue; some are sent twice (right behind the original, and again at the
// end), some first deliveries fail. Every order's effects are exactly its sequence 1..N, applied in
// that order, each one seeing its predecessor already applied.
func TestRMQOrderlySequencesStayIncreasing(t *testing.T) {
	const orders, perOrder = 16, 20
	const total = orders * perOrder
	e := newRMQEnv(t, producer.WithQueueSelector(producer.NewHashQueueSelector()))
	ctx := context.Background()
	for _, stmt := range []string{
		`CREATE TABLE order_seq (order_id VARCHAR(32) PRIMARY KEY, last_seq INT NOT NULL) ENGINE = InnoDB`,
		`CREATE TABLE order_effects (id BIGINT AUTO_INCREMENT PRIMARY KEY, order_id VARCHAR(32) NOT NULL,
			seq INT NOT NULL, prev_seq INT NOT NULL) ENGINE = InnoDB`,
	} {
		_, err := e.db.ExecContext(ctx, stmt)
		require.NoError(t, err)
	}

	w := e.startWorker("consumer", workerSpec{Handler: "orderly", Orderly: true, SuspendMillis: 100, FailTimes: 1}, e.stats)

	event := func(o, s int) *primitive.Message {
		m := e.newMessage(fmt.Sprintf("order-%02d/%02d", o, s))
		m.WithShardingKey(fmt.Sprintf("order-%02d", o))
		m.WithProperty("order", fmt.Sprintf("order-%02d", o))
		m.WithProperty("seq", strconv.Itoa(s))
		return m
	}
	var sent []*primitive.Message
	dups, fails := 0, 0
	for s := 1; s <= perOrder; s++ {
		for o := 0; o < orders; o++ {
			m := event(o, s)
			if (o+s)%13 == 0 {
				m.WithProperty("fail", "1")
				fails++
			}
			e.send(m)
			sent = append(sent, m)
			if (o*perOrder+s)%10 == 0 {
				e.send(resend(m)) // duplicate right behind the original
				dups++
			}
		}
	}
	for i := 0; i < len(sent); i += 16 {
		e.send(resend(sent[i])) // late duplicate, after later events of the same order
		dups++
	}
	e.waitFor("every event and every duplicate", func() bool {
		return e.stats.applied.Load() >= total && e.stats.duplicate.Load() >= int64(dups)
	})
	t.Logf("%d events, %d duplicates sent, %d first deliveries failed: %s", total, dups, fails, e.stats)
	w.shutdown()

	var effects []struct {
		Order string `db:"order_id"`
		Seq   int    `db:"seq"`
		Prev  int    `db:"prev_seq"`
	}
	require.NoError(t, e.db.SelectContext(ctx, &effects, `SELECT order_id, seq, prev_seq FROM order_effects ORDER BY id`))
	require.Len(t, effects, total)
	next := make(map[string]int)
	for _, ef := range effects {
		require.Equal(t, next[ef.Order]+1, ef.Seq, "order %s applied out of order or twice", ef.Order)
		require.Equal(t, ef.Seq-1, ef.Prev, "order %s: event %d did not see %d applied", ef.Order, ef.Seq, ef.Seq-1)
		next[ef.Order] = ef.Seq
	}
	require.Len(t, next, orders)
	for o, last := range next {
		require.Equal(t, perOrder, last, "order %s", o)
	}
	var dedup int
	require.NoError(t, e.db.GetContext(ctx, &dedup, `SELECT COUNT(*) FROM txconsume_dedup`))
	require.Equal(t, total, dedup)
	require.EqualValues(t, fails, e.stats.failed.Load())
}
