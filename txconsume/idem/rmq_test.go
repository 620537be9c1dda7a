package idem_test

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/apache/rocketmq-client-go/v2/consumer"
	"github.com/apache/rocketmq-client-go/v2/primitive"
	"github.com/apache/rocketmq-client-go/v2/producer"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/txconsume/txconsume/internal/testenv"
	"github.com/txconsume/txconsume/txconsume"
	"github.com/txconsume/txconsume/txconsume/idem"
	"github.com/txconsume/txconsume/txconsume/rmq"
)

// The status-mode processor plugs into the RocketMQ adapter unchanged.
var _ rmq.Processor = (*idem.Processor)(nil)

// TestRocketMQ runs the idem processor behind rmq.Consumer on the real broker, with each store:
// 200 messages, 40 of them sent a second time with the same UNIQ_KEY (a producer retry after a
// lost acknowledgement) right after the first copies, and 20 whose handler fails on the first
// delivery. Every message is applied once, every copy sent again ends duplicate, each of the 20
// failed and was then applied once, and the effects table holds exactly one row per message.
func TestRocketMQ(t *testing.T) {
	stores := map[string]func(t *testing.T, dsn string) idem.Store{
		"MySQL": func(t *testing.T, dsn string) idem.Store {
			return idem.NewMySQLStore(testenv.OpenMySQL(t, dsn).DB)
		},
		"Redis": func(t *testing.T, _ string) idem.Store {
			client, prefix := testenv.Redis(t)
			return idem.NewRedisStore(client, prefix)
		},
	}
	for name, newStore := range stores {
		t.Run(name, func(t *testing.T) {
			const total, resent, failing = 200, 40, 20
			dsn, db := setupMySQL(t)
			effects := mysqlEffects{db: db}
			mq := testenv.NewRocketMQ(t)
			// Created up front so that the consumer knows the retry topic's route from its start.
			mq.CreateTopic(t, "%RETRY%"+mq.Group, 1)

			// The handler fails every copy of a marked message that comes from the topic itself
			// (ReconsumeTimes 0), not the redeliveries of the retry topic. The broker may deliver
			// such a copy more than once (a producer retry stores a second copy, a rebalance
			// redelivers from the last committed offset), so a marked message may fail more
			// than once; what is counted is which messages failed.
			var failedMu sync.Mutex
			failedBodies := map[string]int{} // body of a marked message -> failures
			p, err := idem.New(newStore(t, dsn), mq.Group, func(ctx context.Context, msg *txconsume.Message) error {
				if msg.Properties["fail"] != "" && msg.ReconsumeTimes == 0 {
					failedMu.Lock()
					failedBodies[string(msg.Body)]++
					failedMu.Unlock()
					return fmt.Errorf("injected failure of %s", msg.ID)
				}
				return effects.Record(ctx, string(msg.Body))
			}, idem.WithLogger(slog.New(slog.DiscardHandler)))
			require.NoError(t, err)

			var applied, duplicate, failed atomic.Int64
			counted := processorFunc(func(ctx context.Context, msg *txconsume.Message) (txconsume.Result, error) {
				r, err := p.Process(ctx, msg)
				switch {
				case err != nil:
					failed.Add(1)
				case r == txconsume.Applied:
					applied.Add(1)
				case r == txconsume.Duplicate:
					duplicate.Add(1)
				}
				return r, err
			})

			prod := mq.StartProducer(t, producer.WithRetry(2))

			c, err := rmq.NewConsumer(counted,
				rmq.WithNameServers(mq.NameServer),
				rmq.WithGroup(mq.Group),
				rmq.WithSubscription(mq.Topic, "*"),
				rmq.WithConsumeFromWhere(consumer.ConsumeFromFirstOffset),
				rmq.WithRetryDelayLevel(1),
				rmq.WithGoroutines(8),
				rmq.WithLogger(slog.New(slog.DiscardHandler)),
			)
			require.NoError(t, err)
			require.NoError(t, c.Start())
			t.Cleanup(func() {
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				require.NoError(t, c.Shutdown(ctx))
			})

			msgs := make([]*primitive.Message, total)
			var marked []string
			for i := range msgs {
				msgs[i] = primitive.NewMessage(mq.Topic, fmt.Appendf(nil, "m-%04d", i))
				if i%(total/failing) == 1 {
					msgs[i].WithProperty("fail", "first")
					marked = append(marked, string(msgs[i].Body))
				}
			}
			require.Len(t, marked, failing)
			testenv.SendAll(t, prod, msgs)
			again := make([]*primitive.Message, resent)
			for i := range again {
				orig := msgs[i*total/resent]
				again[i] = primitive.NewMessage(orig.Topic, orig.Body)
				again[i].WithProperties(orig.GetProperties()) // keeps the UNIQ_KEY
			}
			testenv.SendAll(t, prod, again)

			// The broker may deliver more copies than were sent: a producer retry or a consumer's
			// send-back whose answer timed out on a loaded machine adds one. Those are duplicates
			// too; what may not happen is a second application.
			require.EventuallyWithT(t, func(c *assert.CollectT) {
				require.EqualValues(c, total, applied.Load())
				require.GreaterOrEqual(c, duplicate.Load(), int64(resent))
			}, 90*time.Second, 100*time.Millisecond, "every delivery consumed")

			require.EqualValues(t, total, applied.Load())
			require.GreaterOrEqual(t, duplicate.Load(), int64(resent))
			require.GreaterOrEqual(t, failed.Load(), int64(failing))
			failedMu.Lock()
			failedMsgs, failures := slices.Collect(maps.Keys(failedBodies)), 0
			for _, n := range failedBodies {
				failures += n
			}
			failedMu.Unlock()
			require.ElementsMatch(t, marked, failedMsgs, "each marked message failed, no other")
			var rows, distinct int
			require.NoError(t, db.QueryRow("SELECT COUNT(*), COUNT(DISTINCT effect_key) FROM idem_effects").Scan(&rows, &distinct))
			require.Equal(t, total, rows, "one effect per message")
			require.Equal(t, total, distinct)
			for _, body := range marked {
				var n int
				require.NoError(t, db.QueryRow("SELECT COUNT(*) FROM idem_effects WHERE effect_key = ?", body).Scan(&n))
				require.Equal(t, 1, n, "%s applied once after its failure", body)
			}
			t.Logf("applied=%d duplicate=%d failed deliveries=%d (%d injected failures of %d messages)",
				applied.Load(), duplicate.Load(), failed.Load(), failures, failing)
		})
	}
}

type processorFunc func(ctx context.Context, msg *txconsume.Message) (txconsume.Result, error)

func (f processorFunc) Process(ctx context.Context, msg *txconsume.Message) (txconsume.Result, error) {
	return f(ctx, msg)
}
