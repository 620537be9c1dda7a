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
	"github.com/go-sql-driver/mysql"
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
//
// Each case fails nearly every run for a relay that gets one thing wrong. Rounds larger than
// the backlog: relays that skip locked rows rather than shards let one relay send a key's newer
// rows while the other still sends its older ones. Rounds of 4 rows over 8 keys: each read of
// the pending rows serves several rounds, during which the other relay takes shards, and a
// relay that went on sending a shard it had skipped would overtake the other relay's rows.
func TestRelaysKeepKeyOrder(t *testing.T) {
	for _, c := range []struct{ keys, batch int }{{24, 256}, {8, 4}} {
		t.Run(fmt.Sprintf("%d keys, rounds of %d", c.keys, c.batch), func(t *testing.T) {
			testRelaysKeepKeyOrder(t, c.keys, c.batch)
		})
	}
}

func testRelaysKeepKeyOrder(t *testing.T, keys, batch int) {
	db, _ := newDB(t)
	mq := testenv.NewRocketMQ(t)
	rec := newSends()
	var relays []*outbox.Relay
	var running []chan struct{} // closed by each relay's first status report: its loop runs
	for _, name := range []string{"r1", "r2"} {
		looping := make(chan struct{})
		var once sync.Once
		onStatus := func(context.Context, []outbox.TopicStatus) { once.Do(func() { close(looping) }) }
		r, err := outbox.NewRelay(db, newProducer(t, mq), outbox.WithBatchSize(batch), outbox.WithRetention(time.Hour),
			outbox.WithPollInterval(20*time.Millisecond),
			outbox.WithHooks(outbox.Hooks{OnSend: rec.hook(name), OnStatus: onStatus}))
		require.NoError(t, err)
		relays = append(relays, r)
		running = append(running, looping)
	}
	for _, r := range relays {
		runRelay(t, r)
	}
	// Both relays are past their start before anything is enqueued: on a loaded machine the
	// first one could otherwise send every row before the second one's loop began.
	for i, looping := range running {
		select {
		case <-looping:
		case <-time.After(time.Minute):
			t.Fatalf("relay r%d never reached its loop", i+1)
		}
	}

	const perKey, writers = 40, 4
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

func TestRelayLimits(t *testing.T) {
	t.Run("the largest message Enqueue accepts and an empty body reach the broker", func(t *testing.T) {
		db, _ := newDB(t)
		mq := testenv.NewRocketMQ(t)
		rec := newSends()
		r, err := outbox.NewRelay(db, newProducer(t, mq), outbox.WithHooks(outbox.Hooks{OnSend: rec.hook("r")}))
		require.NoError(t, err)
		enqueue(t, db, largestMessage(mq.Topic), largestMessage(mq.Topic), outbox.Message{Topic: mq.Topic},
			outbox.Message{Topic: mq.Topic, Body: []byte("small")})
		ids := pendingIDs(t, db)
		stop := runRelay(t, r)
		eventually(t, "every row sent", func() bool { return countRows(t, db, "1") == 0 })
		require.NoError(t, stop())
		require.Zero(t, rec.failures())
		for _, id := range ids {
			require.Len(t, rec.copies(id), 1)
		}
	})
}

// TestRelayResendsUnrecordedSends: the relay's database connection dies after the broker stored
// a batch and before the rows were deleted. The transaction rolls back, and the next round sends
// the same rows again under the same ids, which is what lets consumers drop the copies.
func TestRelayResendsUnrecordedSends(t *testing.T) {
	db, _ := newDB(t)
	mq := testenv.NewRocketMQ(t)
	rec := newSends()
	hook, first, release := pauseFirstSend(rec.hook("r"))
	r, err := outbox.NewRelay(testenv.OpenMySQL(t, dsnOf(t, db)), newProducer(t, mq), outbox.WithBatchSize(20),
		outbox.WithBackoff(10*time.Millisecond, 50*time.Millisecond), outbox.WithHooks(outbox.Hooks{OnSend: hook}))
	require.NoError(t, err)
	var msgs []outbox.Message
	for i := range 60 {
		msgs = append(msgs, outbox.Message{Topic: mq.Topic, Body: []byte(strconv.Itoa(i))})
	}
	enqueue(t, db, msgs...)
	ids := pendingIDs(t, db)
	stop := runRelay(t, r)

	s := <-first
	require.NoError(t, s.Err)
	killed := killTransactions(t, db)
	require.Equal(t, 1, killed, "the relay's round is the one open transaction")
	close(release)
	eventually(t, "every row sent", func() bool { return countRows(t, db, "1") == 0 })
	require.NoError(t, stop())

	resent := map[string]bool{}
	for _, id := range s.IDs {
		resent[id] = true
		require.Len(t, rec.copies(id), 2, "message %s: sent, not recorded, sent again", id)
	}
	for _, id := range ids {
		if !resent[id] {
			require.Len(t, rec.copies(id), 1, "message %s", id)
		}
	}
}

// TestRelayShutdown: Run's context ends while a round has sent part of its rows. The round
// records what was sent, releases the rest, and Run returns nil; another relay sends the rest.
func TestRelayShutdown(t *testing.T) {
	db, _ := newDB(t)
	mq := testenv.NewRocketMQ(t)
	rec := newSends()
	hook, first, release := pauseFirstSend(rec.hook("r1"))
	r1, err := outbox.NewRelay(db, newProducer(t, mq), outbox.WithHooks(outbox.Hooks{OnSend: hook}))
	require.NoError(t, err)
	// Five sharding keys: five sends in one round.
	var msgs []outbox.Message
	for i := range 50 {
		msgs = append(msgs, outbox.Message{Topic: mq.Topic, ShardingKey: "key-" + strconv.Itoa(i%5), Body: []byte(strconv.Itoa(i))})
	}
	enqueue(t, db, msgs...)
	ctx, cancel := context.WithCancel(context.Background())
	wait := startRelay(t, ctx, r1)

	s := <-first
	require.NoError(t, s.Err)
	cancel()
	close(release)
	require.NoError(t, wait(), "a relay stopped by its context returns nil")

	require.Equal(t, 50-len(s.IDs), countRows(t, db, "sent_at IS NULL"), "the first send is recorded, the rest released")
	for _, id := range s.IDs {
		require.Zero(t, countRows(t, db, "sent_at IS NULL AND msg_id = '"+id+"'"))
	}
	r2, err := outbox.NewRelay(db, newProducer(t, mq), outbox.WithHooks(outbox.Hooks{OnSend: rec.hook("r2")}))
	require.NoError(t, err)
	stop := runRelay(t, r2)
	eventually(t, "the rest sent by another relay", func() bool { return countRows(t, db, "1") == 0 })
	require.NoError(t, stop())
	require.Equal(t, 50, rec.distinct())
	for _, id := range s.IDs {
		require.Len(t, rec.copies(id), 1)
	}
}

// TestRelayWakeUp: a relay that polls once an hour still sends at once what is enqueued in its
// process, even when the transaction commits a while after Enqueue woke it.
func TestRelayWakeUp(t *testing.T) {
	db, _ := newDB(t)
	mq := testenv.NewRocketMQ(t)
	rec := newSends()
	r, err := outbox.NewRelay(db, newProducer(t, mq), outbox.WithPollInterval(time.Hour),
		outbox.WithHooks(outbox.Hooks{OnSend: rec.hook("r")}))
	require.NoError(t, err)
	stop := runRelay(t, r)
	time.Sleep(500 * time.Millisecond) // the relay's first rounds are over: it waits for the hour

	for i, delay := range []time.Duration{0, 20 * time.Millisecond, 90 * time.Millisecond} {
		tx, err := db.Beginx()
		require.NoError(t, err)
		require.NoError(t, outbox.Enqueue(context.Background(), tx, outbox.Message{Topic: mq.Topic, Body: []byte("x")}))
		time.Sleep(delay) // the transaction commits after the wake-up
		require.NoError(t, tx.Commit())
		eventually(t, "the message sent", func() bool { return rec.distinct() == i+1 })
	}
	require.NoError(t, stop())
}

// TestRelayBrokerUnreachable: while sends fail, the relay backs off, keeps every row and keeps
// running; it stops cleanly when asked.
func TestRelayBrokerUnreachable(t *testing.T) {
	db, _ := newDB(t)
	mq := *testenv.NewRocketMQ(t)
	mq.NameServer = closedAddr(t)
	rec := newSends()
	r, err := outbox.NewRelay(db, newProducer(t, &mq), outbox.WithBackoff(50*time.Millisecond, 400*time.Millisecond),
		outbox.WithHooks(outbox.Hooks{OnSend: rec.hook("r")}))
	require.NoError(t, err)
	enqueue(t, db, outbox.Message{Topic: mq.Topic, Body: []byte("a")}, outbox.Message{Topic: mq.Topic, Body: []byte("b")})
	stop := runRelay(t, r)
	eventually(t, "several failed sends", func() bool { return rec.failures() >= 3 })
	time.Sleep(time.Second)
	require.NoError(t, stop())
	require.Equal(t, 2, countRows(t, db, "sent_at IS NULL"), "every row kept")
	require.Zero(t, rec.distinct())
	// Without backoff a failing send to a dead name server is retried thousands of times a second.
	require.Less(t, rec.failures(), 40, "the relay backs off between attempts")
}

// TestRelayRefusesForeignSelector: a producer that chose the queue without outbox.QueueSelector
// stops the relay after its first send, which is recorded as sent.
func TestRelayRefusesForeignSelector(t *testing.T) {
	db, _ := newDB(t)
	mq := testenv.NewRocketMQ(t)
	rec := newSends()
	r, err := outbox.NewRelay(db, newProducer(t, mq, producer.WithQueueSelector(producer.NewHashQueueSelector())),
		outbox.WithHooks(outbox.Hooks{OnSend: rec.hook("r")}))
	require.NoError(t, err)
	enqueue(t, db, outbox.Message{Topic: mq.Topic, ShardingKey: "k", Body: []byte("a")})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	err = startRelay(t, ctx, r)()
	require.ErrorIs(t, err, outbox.ErrProducerSelector)
	require.ErrorContains(t, err, "producer.WithQueueSelector(outbox.QueueSelector())")
	require.Zero(t, countRows(t, db, "sent_at IS NULL"), "the message reached the broker and is not sent again")
	require.Equal(t, 1, rec.distinct())
}

// TestRelayRoundDoesNotBlockEnqueue: while a relay's round holds its shards and rows (its send
// is slow), Enqueue in another session, which waits at most one second for any lock, goes
// through.
func TestRelayRoundDoesNotBlockEnqueue(t *testing.T) {
	db, dsn := newDB(t)
	cfg, err := mysql.ParseDSN(dsn)
	require.NoError(t, err)
	cfg.Params = map[string]string{"innodb_lock_wait_timeout": "1"}
	enqueuer := testenv.OpenMySQL(t, cfg.FormatDSN())
	mq := testenv.NewRocketMQ(t)
	hook, inSend, release := pauseFirstSend(func(context.Context, outbox.Send) {})
	r, err := outbox.NewRelay(db, newProducer(t, mq), outbox.WithHooks(outbox.Hooks{OnSend: hook}))
	require.NoError(t, err)
	var msgs []outbox.Message
	for i := range 20 {
		msgs = append(msgs, outbox.Message{Topic: mq.Topic, ShardingKey: strconv.Itoa(i % 3), Body: []byte("x")})
	}
	enqueue(t, db, msgs...)
	stop := runRelay(t, r)
	<-inSend
	for range 5 {
		enqueue(t, enqueuer, outbox.Message{Topic: mq.Topic, ShardingKey: "0", Body: []byte("during the round")})
	}
	close(release)
	eventually(t, "every row sent", func() bool { return countRows(t, db, "1") == 0 })
	require.NoError(t, stop())
}
