package outbox_test

import (
	"context"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	rocketmq "github.com/apache/rocketmq-client-go/v2"
	"github.com/apache/rocketmq-client-go/v2/primitive"
	"github.com/jmoiron/sqlx"
	"github.com/stretchr/testify/require"

	"github.com/txconsume/txconsume/internal/testenv"
	"github.com/txconsume/txconsume/migrations"
	"github.com/txconsume/txconsume/txconsume/outbox"
)

// The benchmarks run against the real database and broker, side by side in one run:
//
//	go test -run '^$' -bench . -benchtime 2s ./txconsume/outbox/
//
// BenchmarkRelay compares the relay draining a backlog of committed messages with a plain
// producer loop sending the same messages one SendSync at a time: what publishing through the
// outbox costs (or saves, since the relay sends in batches). BenchmarkRelayLatency measures,
// at a moderate steady load, the time from the enqueuing transaction's commit to the broker's
// acknowledgement, beside the latency of a plain SendSync at the same pace.

// benchBody is the payload of every benchmark message: an order event of typical size.
var benchBody = []byte(`{"order":"ORD-000000","sku":"SKU-42","qty":1,"amount":1999,"currency":"EUR",` +
	`"customer":"C-000000","address":"1 Example Street, 10000 City","note":"leave at the door"}`)

func benchMessage(topic string, i int, keyed bool) outbox.Message {
	m := outbox.Message{Topic: topic, Tags: "shipped", Keys: []string{"ORD-" + strconv.Itoa(i)}, Body: benchBody}
	if keyed {
		m.ShardingKey = "customer-" + strconv.Itoa(i%16)
	}
	return m
}

// plainMessage is the message a producer would send without the outbox.
func plainMessage(m outbox.Message) *primitive.Message {
	pm := primitive.NewMessage(m.Topic, m.Body).WithTag(m.Tags).WithKeys(m.Keys)
	if m.ShardingKey != "" {
		pm.WithShardingKey(m.ShardingKey)
	}
	return pm
}

func benchEnv(b *testing.B) (*sqlx.DB, *testenv.RocketMQ, rocketmq.Producer) {
	b.Helper()
	if testing.Short() {
		b.Skip("-short: needs MySQL and RocketMQ")
	}
	dsn := testenv.DSNWithParams(testenv.MySQLDSN(b), "interpolateParams=true")
	db := testenv.OpenMySQL(b, dsn)
	require.NoError(b, migrations.Up(context.Background(), db.DB))
	mq := testenv.NewRocketMQ(b)
	return db, mq, outbox.StartProducer(b, mq.NameServer)
}

// relayBacklog is the number of messages one iteration of BenchmarkRelay publishes: a burst
// that a relay drains from the table, or a plain loop sends.
const relayBacklog = 2000

func BenchmarkRelay(b *testing.B) {
	ctx := context.Background()
	for _, keyed := range []bool{false, true} {
		name := "keys=none"
		if keyed {
			name = "keys=16"
		}
		db, mq, prod := benchEnv(b)
		var seq int
		burst := func() []outbox.Message {
			msgs := make([]outbox.Message, relayBacklog)
			for i := range msgs {
				msgs[i] = benchMessage(mq.Topic, seq, keyed)
				seq++
			}
			return msgs
		}
		b.Run(name+"/baseline", func(b *testing.B) { // a plain producer loop
			for b.Loop() {
				b.StopTimer()
				msgs := burst()
				b.StartTimer()
				for _, m := range msgs {
					if err := sendRetrying(ctx, prod, plainMessage(m)); err != nil {
						b.Fatal(err)
					}
				}
			}
			b.ReportMetric(float64(b.N*relayBacklog)/b.Elapsed().Seconds(), "msgs/s")
		})
		b.Run(name+"/relay", func(b *testing.B) {
			var sent atomic.Int64
			drained := make(chan struct{}, 1)
			var failed atomic.Int64
			r, err := outbox.NewRelay(db, prod, outbox.WithHooks(outbox.Hooks{OnSend: func(_ context.Context, s outbox.Send) {
				if s.Err != nil {
					failed.Add(1) // the relay backs off and sends again
					return
				}
				if sent.Add(int64(len(s.IDs))) == relayBacklog {
					drained <- struct{}{}
				}
			}}))
			require.NoError(b, err)
			for b.Loop() {
				b.StopTimer()
				sent.Store(0)
				tx, err := db.Beginx()
				require.NoError(b, err)
				require.NoError(b, outbox.Enqueue(ctx, tx, burst()...))
				require.NoError(b, tx.Commit())
				rctx, cancel := context.WithCancel(ctx)
				stopped := make(chan error, 1)
				b.StartTimer()
				go func() { stopped <- r.Run(rctx) }()
				<-drained
				b.StopTimer()
				cancel()
				require.NoError(b, <-stopped)
				b.StartTimer()
			}
			b.ReportMetric(float64(b.N*relayBacklog)/b.Elapsed().Seconds(), "msgs/s")
			b.ReportMetric(float64(failed.Load()), "failed-sends")
		})
	}
}

// sendRetrying sends m until the broker takes it, as a producer loop must (the broker answers
// "busy" under load): at most 5 tries.
func sendRetrying(ctx context.Context, prod rocketmq.Producer, m *primitive.Message) error {
	var err error
	for try := range 5 {
		if _, err = prod.SendSync(ctx, m); err == nil {
			return nil
		}
		time.Sleep(time.Duration(try+1) * 50 * time.Millisecond)
	}
	return err
}

// latencyLoad is the moderate load of BenchmarkRelayLatency: writers goroutines each commit
// one message per transaction, pausing between them, about 500 messages a second in all.
const (
	latencyWriters = 4
	latencyPause   = 8 * time.Millisecond
)

func BenchmarkRelayLatency(b *testing.B) {
	ctx := context.Background()
	db, mq, prod := benchEnv(b)

	b.Run("baseline", func(b *testing.B) { // a plain SendSync at the same pace
		lat := paced(b, func(i int) (time.Time, error) {
			began := time.Now()
			err := sendRetrying(ctx, prod, plainMessage(benchMessage(mq.Topic, i, true)))
			return began, err
		}, nil)
		reportLatency(b, lat)
	})

	b.Run("commit-to-ack", func(b *testing.B) {
		var mu sync.Mutex
		committed := map[string]time.Time{}
		acked := map[string]time.Time{}
		r, err := outbox.NewRelay(db, prod, outbox.WithHooks(outbox.Hooks{OnSend: func(_ context.Context, s outbox.Send) {
			now := time.Now()
			if s.Err != nil {
				return // the relay backs off and sends again: the ack comes later
			}
			mu.Lock()
			for _, id := range s.IDs {
				acked[id] = now
			}
			mu.Unlock()
		}}))
		require.NoError(b, err)
		rctx, cancel := context.WithCancel(ctx)
		stopped := make(chan error, 1)
		go func() { stopped <- r.Run(rctx) }()
		paced(b, func(i int) (time.Time, error) {
			tx, err := db.Beginx()
			if err != nil {
				return time.Time{}, err
			}
			defer tx.Rollback()
			if err := outbox.Enqueue(ctx, tx, benchMessage(mq.Topic, i, true)); err != nil {
				return time.Time{}, err
			}
			var id string
			if err := tx.Get(&id, "SELECT msg_id FROM txconsume_outbox WHERE id = LAST_INSERT_ID()"); err != nil {
				return time.Time{}, err
			}
			if err := tx.Commit(); err != nil {
				return time.Time{}, err
			}
			now := time.Now()
			mu.Lock()
			committed[id] = now
			mu.Unlock()
			return now, nil
		}, func() bool {
			mu.Lock()
			defer mu.Unlock()
			return len(acked) >= len(committed)
		})
		cancel()
		require.NoError(b, <-stopped)
		lat := make([]time.Duration, 0, len(committed))
		for id, c := range committed {
			a, ok := acked[id]
			require.True(b, ok, "message %s never acknowledged", id)
			lat = append(lat, a.Sub(c))
		}
		reportLatency(b, lat)
	})
}

// paced runs op b.N times from latencyWriters goroutines at the moderate load and returns, for
// ops that report no done func, each op's latency (time from the instant op returns to now, or
// the instant op returned when done is given: then it waits until done holds).
func paced(b *testing.B, op func(i int) (time.Time, error), done func() bool) []time.Duration {
	var next atomic.Int64
	var mu sync.Mutex
	var lat []time.Duration
	var wg sync.WaitGroup
	b.ResetTimer()
	for range latencyWriters {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= b.N {
					return
				}
				began, err := op(i)
				if err != nil {
					b.Error(err)
					return
				}
				if done == nil {
					mu.Lock()
					lat = append(lat, time.Since(began))
					mu.Unlock()
				}
				time.Sleep(latencyPause)
			}
		}()
	}
	wg.Wait()
	if done != nil {
		deadline := time.Now().Add(time.Minute)
		for !done() && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
	}
	b.StopTimer()
	return lat
}

func reportLatency(b *testing.B, lat []time.Duration) {
	if len(lat) == 0 {
		return
	}
	slices.Sort(lat)
	q := func(p float64) float64 {
		return float64(lat[min(len(lat)-1, int(p*float64(len(lat))))].Microseconds()) / 1000
	}
	b.ReportMetric(q(0.50), "p50-ms")
	b.ReportMetric(q(0.99), "p99-ms")
	b.ReportMetric(float64(len(lat))/b.Elapsed().Seconds(), "msgs/s")
	b.ReportMetric(0, "ns/op") // paced: the time per op is the pacing's
}
