package demo

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/apache/rocketmq-client-go/v2"
	"github.com/apache/rocketmq-client-go/v2/primitive"
	"github.com/apache/rocketmq-client-go/v2/producer"

	"github.com/txconsume/txconsume/examples/order-service/order"
)

// publishers is the number of orders being sent at once.
const publishers = 8

// publisher sends the plan's messages. Each order's messages are sent back to back by one
// goroutine, and the hash queue selector puts them in the order's queue: the consumer pulls them
// in one batch and hands them to different goroutines, so the duplicates of an order are
// consumed concurrently. That is the situation in which a check-then-act deduplication fails.
type publisher struct {
	p    rocketmq.Producer
	sent atomic.Int64
}

func newPublisher(nameServer string) (*publisher, error) {
	p, err := rocketmq.NewProducer(
		producer.WithNsResolver(primitive.NewPassthroughResolver([]string{nameServer})),
		producer.WithGroupName("order-demo-producer"),
		producer.WithQueueSelector(producer.NewHashQueueSelector()),
		producer.WithRetry(2),
		producer.WithSendMsgTimeout(10*time.Second))
	if err != nil {
		return nil, fmt.Errorf("demo: producer: %w", err)
	}
	if err := p.Start(); err != nil {
		return nil, fmt.Errorf("demo: start producer: %w", err)
	}
	return &publisher{p: p}, nil
}

func (pub *publisher) close() { _ = pub.p.Shutdown() }

// publish sends every message of the plan to topic.
func (pub *publisher) publish(ctx context.Context, topic string, pl *plan) error {
	work := make(chan []send)
	errs := make(chan error, publishers)
	var wg sync.WaitGroup
	for range publishers {
		wg.Go(func() {
			for sends := range work {
				for _, s := range sends {
					if err := pub.sendOne(ctx, topic, s); err != nil {
						errs <- err
						return
					}
				}
			}
		})
	}
	var err error
feed:
	for _, sends := range pl.sends {
		select {
		case work <- sends:
		case err = <-errs:
			break feed
		case <-ctx.Done():
			err = ctx.Err()
			break feed
		}
	}
	close(work)
	// Workers that stopped on an error no longer read work; drain them all before returning.
	go func() { wg.Wait(); close(errs) }()
	for e := range errs {
		err = errors.Join(err, e)
	}
	return err
}

// sendOne sends s with its UNIQ_KEY set up front (the producer keeps a key that is already
// set), retrying a failed send with the same key as a producer would.
func (pub *publisher) sendOne(ctx context.Context, topic string, s send) error {
	var lastErr error
	for attempt := range 5 {
		if attempt > 0 {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(time.Duration(attempt) * 200 * time.Millisecond):
			}
		}
		msg, err := order.NewPaidMessage(topic, s.event)
		if err != nil {
			return err
		}
		msg.WithProperty(primitive.PropertyUniqueClientMessageIdKeyIndex, s.uniqKey)
		res, err := pub.p.SendSync(ctx, msg)
		if err == nil {
			if res.MsgID != s.uniqKey {
				return fmt.Errorf("demo: broker returned UNIQ_KEY %s for %s", res.MsgID, s.uniqKey)
			}
			pub.sent.Add(1)
			return nil
		}
		lastErr = err
	}
	return fmt.Errorf("demo: send %s (%s): %w", s.event.OrderNo, s.kind, lastErr)
}
