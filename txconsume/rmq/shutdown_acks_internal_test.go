package rmq

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
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

// gateProcessor acknowledges every message and counts it by body; messages whose body starts
// with "gate" wait until release is closed.
type gateProcessor struct {
	mu      sync.Mutex
	seen    map[string]int
	entered chan struct{}
	release chan struct{}
}

func newGateProcessor() *gateProcessor {
	return &gateProcessor{seen: map[string]int{}, entered: make(chan struct{}, 1024), release: make(chan struct{})}
}

func (p *gateProcessor) Process(_ context.Context, m *txconsume.Message) (txconsume.Result, error) {
	if strings.HasPrefix(string(m.Body), "gate") {
		p.entered <- struct{}{}
		<-p.release
	}
	p.mu.Lock()
	p.seen[string(m.Body)]++
	p.mu.Unlock()
	return txconsume.Applied, nil
}

func (p *gateProcessor) count(body string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.seen[body]
}

// TestRMQShutdownKeepsTheLastAcks: Shutdown begins while deliveries are inside the Processor;
// they are acknowledged and Shutdown returns. The client records an acknowledgement after the
// callback returned, and its own Shutdown drops what is recorded later, so without waiting for
// the client (settle) an acknowledged message, and every later one of its queue, came again to
// the next consumer of the group (in 1 of about 10 rounds of the first subtest on a 2-core
// machine). A consumer started again in the group must get exactly the messages that were not
// acknowledged.
func TestRMQShutdownKeepsTheLastAcks(t *testing.T) {
	// round runs one topic of one queue: the consumer, with goroutines slots, gets every message;
	// those named gateNN block until Shutdown has begun; Shutdown returns; a second consumer of
	// the group, with one slot (so redeliveries come in queue order, before the sentinel sent
	// last), records what comes again.
	round := func(t *testing.T, goroutines int, bodies []string) (first, second *gateProcessor) {
		mq := testenv.NewRocketMQ(t)
		topic := mq.CreateTopic(t, testenv.UniqueName(t, "one"), 1)
		retryTopic := mq.CreateTopic(t, "%RETRY%"+mq.Group, 1)
		prod, err := rocketmq.NewProducer(
			producer.WithNsResolver(primitive.NewPassthroughResolver([]string{mq.NameServer})),
			producer.WithGroupName(mq.Group+"_p"),
			producer.WithInstanceName(testenv.UniqueName(t, "p")),
		)
		require.NoError(t, err)
		require.NoError(t, prod.Start())
		defer func() { require.NoError(t, prod.Shutdown()) }()
		send := func(body string) {
			_, err := prod.SendSync(context.Background(), primitive.NewMessage(topic, []byte(body)))
			require.NoError(t, err)
		}
		// settled waits until consumer p has received a message on the group's retry topic
		// too: then the rebalance its Start began is over, which the client's Shutdown would
		// otherwise race with in the client's own code (an unsynchronised flag).
		settled := func(p *gateProcessor, body string) {
			m := primitive.NewMessage(retryTopic, []byte(body))
			m.WithProperty(primitive.PropertyRetryTopic, topic)
			_, err := prod.SendSync(context.Background(), m)
			require.NoError(t, err)
			require.Eventually(t, func() bool { return p.count(body) == 1 }, time.Minute, 10*time.Millisecond)
		}
		start := func(p Processor, goroutines int) *Consumer {
			c, err := NewConsumer(p,
				WithNameServers(mq.NameServer),
				WithGroup(mq.Group),
				WithSubscription(topic, "*"),
				WithConsumeFromWhere(consumer.ConsumeFromFirstOffset),
				WithGoroutines(goroutines),
				WithLogger(slog.New(slog.DiscardHandler)),
			)
			require.NoError(t, err)
			require.NoError(t, c.Start())
			return c
		}

		first = newGateProcessor()
		c := start(first, goroutines)
		gated := 0
		for _, b := range bodies {
			send(b)
			if strings.HasPrefix(b, "gate") {
				gated++
			}
		}
		for range gated {
			select {
			case <-first.entered:
			case <-time.After(time.Minute):
				t.Fatal("the gated messages never reached the processor")
			}
		}
		settled(first, "probe-first")
		done := make(chan error, 1)
		go func() { done <- c.Shutdown(context.Background()) }()
		require.Eventually(t, func() bool {
			c.mu.Lock()
			defer c.mu.Unlock()
			return c.state == stateDraining
		}, time.Minute, time.Millisecond)
		close(first.release)
		require.NoError(t, <-done)

		second = newGateProcessor()
		close(second.release)
		c2 := start(second, 1)
		send("sentinel")
		require.Eventually(t, func() bool { return second.count("sentinel") == 1 }, time.Minute, 10*time.Millisecond)
		settled(second, "probe-second")
		require.NoError(t, c2.Shutdown(context.Background()))
		return first, second
	}
	named := func(prefix string, from, to int) []string {
		var out []string
		for i := from; i < to; i++ {
			out = append(out, fmt.Sprintf("%s%02d", prefix, i))
		}
		return out
	}

	t.Run("deliveries that finish during Shutdown are not delivered again", func(t *testing.T) {
		bodies := named("gate", 0, 16)
		for r := range 10 {
			first, second := round(t, len(bodies), bodies)
			for _, b := range bodies {
				require.Equal(t, 1, first.count(b), b)
				require.Zero(t, second.count(b), "round %d: %s was acknowledged before Shutdown returned, yet came again", r, b)
			}
		}
	})

	t.Run("held messages come again, the acknowledged ones do not", func(t *testing.T) {
		// Four slots: the four gated messages take them; once they finish, the next four
		// deliveries are held by Shutdown, and the rest are never delivered.
		acked, rest := named("gate", 0, 4), named("rest", 4, 40)
		for r := range 5 {
			first, second := round(t, len(acked), append(append([]string{}, acked...), rest...))
			for _, b := range acked {
				require.Equal(t, 1, first.count(b), b)
				require.Zero(t, second.count(b), "round %d: %s was acknowledged before Shutdown returned, yet came again", r, b)
			}
			for _, b := range rest {
				require.Zero(t, first.count(b), "%s reached the Processor after Shutdown began", b)
				require.Equal(t, 1, second.count(b), "round %d: %s was never acknowledged and must come again", r, b)
			}
		}
	})
}
