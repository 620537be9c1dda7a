package outbox_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/apache/rocketmq-client-go/v2/primitive"
	"github.com/apache/rocketmq-client-go/v2/producer"
	"github.com/stretchr/testify/require"

	"github.com/txconsume/txconsume/internal/testenv"
	"github.com/txconsume/txconsume/txconsume/outbox"
)

func TestRelayPublishes(t *testing.T) {

	t.Run("every message once, in batches, under its enqueue id; the table ends empty", func(t *testing.T) {
		db, _ := newDB(t)
		mq := testenv.NewRocketMQ(t)
		rec := newSends()
		r, err := outbox.NewRelay(db, newProducer(t, mq), outbox.WithHooks(outbox.Hooks{OnSend: rec.hook("r1")}))
		require.NoError(t, err)

		const total = 500
		var want []string
		for b := 0; b < total/50; b++ {
			msgs := make([]outbox.Message, 50)
			for i := range msgs {
				n := b*50 + i
				msgs[i] = outbox.Message{Topic: mq.Topic, Tags: "t", Keys: []string{"k-" + strconv.Itoa(n)},
					Body: []byte("body-" + strconv.Itoa(n)), Properties: map[string]string{"n": strconv.Itoa(n)}}
				if n%2 == 0 {
					msgs[i].ShardingKey = "order-" + strconv.Itoa(n%7)
				}
			}
			enqueue(t, db, msgs...)
		}
		want = pendingIDs(t, db)
		require.Len(t, want, total)

		stop := runRelay(t, r)
		eventually(t, "every row sent", func() bool { return countRows(t, db, "1") == 0 })
		require.NoError(t, stop())

		for _, id := range want {
			require.Len(t, rec.copies(id), 1, "message %s", id)
		}
		require.Equal(t, total, rec.distinct())
		require.Zero(t, rec.failures())
		require.Less(t, len(rec.all), total/4, "messages go in batches, not one by one")
	})
}

// TestRelaysKeepKeyOrder runs two relays on one table while messages are enqueued: no message
// is stored twice, every sharding key's messages are on one queue, in the order they were
// enqueued, and both relays took part.
func TestRelaysKeepKeyOrder(t *testing.T) {
	db, _ := newDB(t)
	mq := testenv.NewRocketMQ(t)
	rec := newSends()
	var relays []*outbox.Relay
	for _, name := range []string{"r1", "r2"} {
		r, err := outbox.NewRelay(db, newProducer(t, mq), outbox.WithBatchSize(16), outbox.WithRetention(time.Hour),
			outbox.WithPollInterval(20*time.Millisecond), outbox.WithHooks(outbox.Hooks{OnSend: rec.hook(name)}))
		require.NoError(t, err)
		relays = append(relays, r)
	}
	for _, r := range relays {
		runRelay(t, r)
	}

	const keys, perKey, writers = 24, 40, 4
	// Each writer owns some keys and enqueues their messages in sequence, several keys per
	// transaction, so each key's enqueue order is its sequence.
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for s := 1; s <= perKey; s++ {
				var msgs []outbox.Message
				for k := w; k < keys; k += writers {
					msgs = append(msgs, outbox.Message{Topic: mq.Topic, ShardingKey: fmt.Sprintf("key-%02d", k),
						Body: []byte(strconv.Itoa(s)), Properties: map[string]string{"seq": strconv.Itoa(s)}})
				}
				tx, err := db.Beginx()
				if err == nil {
					err = outbox.Enqueue(context.Background(), tx, msgs...)
				}
				if err == nil {
					err = tx.Commit()
				}
				if err != nil {
					t.Errorf("writer %d: %v", w, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	eventually(t, "every row sent", func() bool { return countRows(t, db, "sent_at IS NULL") == 0 })

	// The rows are kept (WithRetention), so the table says which key and seq each id has.
	var rows []struct {
		MsgID string `db:"msg_id"`
		Key   string `db:"sharding_key"`
		Props []byte `db:"properties"`
	}
	require.NoError(t, db.Select(&rows, "SELECT msg_id, sharding_key, properties FROM txconsume_outbox"))
	require.Len(t, rows, keys*perKey)
	type sentCopy struct {
		seq int
		placement
	}
	perKeyCopies := map[string][]sentCopy{}
	byRelay := map[string]int{}
	for _, rw := range rows {
		var props map[string]string
		require.NoError(t, json.Unmarshal(rw.Props, &props))
		seq, err := strconv.Atoi(props["seq"])
		require.NoError(t, err)
		cs := rec.copies(rw.MsgID)
		require.Len(t, cs, 1, "message %s (key %s seq %d) stored %d times", rw.MsgID, rw.Key, seq, len(cs))
		perKeyCopies[rw.Key] = append(perKeyCopies[rw.Key], sentCopy{seq: seq, placement: cs[0]})
		byRelay[cs[0].relay]++
	}
	require.Len(t, perKeyCopies, keys)
	queues := fakeQueues(mq.Topic, 4)
	hashSel := producer.NewHashQueueSelector()
	for key, cs := range perKeyCopies {
		sort.Slice(cs, func(i, j int) bool { return cs[i].offset < cs[j].offset })
		m := primitive.NewMessage(mq.Topic, nil).WithShardingKey(key)
		wantQueue := hashSel.Select(m, queues, "").QueueId
		for i, c := range cs {
			require.Equal(t, wantQueue, c.queue, "key %s: every message on the hash selector's queue", key)
			require.Equal(t, i+1, c.seq, "key %s: the broker has its messages in enqueue order", key)
		}
	}
	require.Len(t, byRelay, 2, "both relays sent: %v", byRelay)
	t.Logf("messages sent per relay: %v", byRelay)
}

func fakeQueues(topic string, n int) []*primitive.MessageQueue {
	qs := make([]*primitive.MessageQueue, n)
	for i := range qs {
		qs[i] = &primitive.MessageQueue{Topic: topic, BrokerName: "broker-a", QueueId: i}
	}
	return qs
}
