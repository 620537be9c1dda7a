package rmq

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	rocketmq "github.com/apache/rocketmq-client-go/v2"
	"github.com/apache/rocketmq-client-go/v2/consumer"
	"github.com/apache/rocketmq-client-go/v2/primitive"
	"github.com/apache/rocketmq-client-go/v2/producer"
	"github.com/stretchr/testify/require"

	"github.com/txconsume/txconsume/internal/testenv"
	"github.com/txconsume/txconsume/txconsume"
)

// TestRMQShutdownIdleWithEndedContext: with nothing in flight there is nothing to give up on, so
// Shutdown succeeds even when its context has already ended. Several consumers, because the two
// ready cases of a select are picked at random.
//
// The client's Shutdown races, in the client's own code (an unsynchronised "closed" flag), with a
// rebalance still running, which the race detector reports. So each consumer first receives one
// message on its topic and one on its retry topic: both queues are then assigned, and the
// rebalance that Start began is over.
func TestRMQShutdownIdleWithEndedContext(t *testing.T) {
	ended, cancel := context.WithCancel(context.Background())
	cancel()
	for i := range 4 {
		mq := testenv.NewRocketMQ(t)
		retryTopic := "%RETRY%" + mq.Group
		mq.CreateTopic(t, retryTopic, 1)
		prod, err := rocketmq.NewProducer(
			producer.WithNsResolver(primitive.NewPassthroughResolver([]string{mq.NameServer})),
			producer.WithGroupName(mq.Group+"_p"),
			producer.WithInstanceName(testenv.UniqueName(t, "p")),
		)
		require.NoError(t, err)
		require.NoError(t, prod.Start())
		retried := primitive.NewMessage(retryTopic, []byte("retried"))
		retried.WithProperty(primitive.PropertyRetryTopic, mq.Topic)
		for _, m := range []*primitive.Message{primitive.NewMessage(mq.Topic, []byte("first")), retried} {
			_, err = prod.SendSync(context.Background(), m)
			require.NoError(t, err)
		}
		require.NoError(t, prod.Shutdown())

		p := &countingProcessor{}
		c, err := NewConsumer(p,
			WithNameServers(mq.NameServer),
			WithGroup(mq.Group),
			WithSubscription(mq.Topic, "*"),
			WithConsumeFromWhere(consumer.ConsumeFromFirstOffset),
			WithLogger(slog.New(slog.DiscardHandler)),
		)
		require.NoError(t, err)
		require.NoError(t, c.Start())
		require.Eventually(t, func() bool {
			c.mu.Lock()
			defer c.mu.Unlock()
			return p.count() == 2 && c.inflight == 0
		}, time.Minute, 10*time.Millisecond, "both messages consumed and their deliveries returned")
		require.NoError(t, c.Shutdown(ended), "consumer %d", i)
	}
}

// countingProcessor acknowledges everything and counts the messages.
type countingProcessor struct {
	mu   sync.Mutex
	seen int
}

func (p *countingProcessor) Process(context.Context, *txconsume.Message) (txconsume.Result, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.seen++
	return txconsume.Applied, nil
}

func (p *countingProcessor) count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.seen
}
