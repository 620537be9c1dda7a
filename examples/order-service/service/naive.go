package service

import (
	"context"
	"fmt"
	"time"

	"github.com/apache/rocketmq-client-go/v2"
	"github.com/apache/rocketmq-client-go/v2/consumer"
	"github.com/apache/rocketmq-client-go/v2/primitive"
	"github.com/jmoiron/sqlx"

	"github.com/txconsume/txconsume/examples/order-service/order"
	"github.com/txconsume/txconsume/txconsume/rmq"
)

// naiveConsumer consumes order-paid events with order.NaivePay on a plain push consumer, as a
// service written after the article's first listing would. It exists to be compared with the
// txconsume consumer on the same traffic.
type naiveConsumer struct {
	pc rocketmq.PushConsumer
}

func newNaiveConsumer(db *sqlx.DB, cfg Config, stats *Stats) (*naiveConsumer, error) {
	from := consumer.ConsumeFromLastOffset
	if cfg.FromFirstOffset {
		from = consumer.ConsumeFromFirstOffset
	}
	pc, err := rocketmq.NewPushConsumer(
		consumer.WithConsumeFromWhere(from),
		consumer.WithNsResolver(primitive.NewPassthroughResolver(cfg.NameServers)),
		consumer.WithGroupName(cfg.Group),
		consumer.WithConsumeGoroutineNums(cfg.Goroutines))
	if err != nil {
		return nil, fmt.Errorf("service: naive consumer: %w", err)
	}
	err = pc.Subscribe(cfg.Topic, consumer.MessageSelector{Type: consumer.TAG, Expression: order.TagPaid},
		func(ctx context.Context, msgs ...*primitive.MessageExt) (consumer.ConsumeResult, error) {
			for _, m := range msgs {
				start := time.Now()
				// FromMessageExt only converts; it reads the same UNIQ_KEY the demo counts by.
				msg := rmq.FromMessageExt(m)
				e, err := order.DecodePaid(msg.Body)
				if err != nil {
					stats.Record(ctx, ResultDiscarded, msg, time.Since(start), err)
					continue
				}
				applied, err := order.NaivePay(ctx, db, e, msg.ID)
				switch {
				case err != nil && order.IsPermanent(err):
					stats.Record(ctx, ResultDiscarded, msg, time.Since(start), err)
				case err != nil:
					stats.Record(ctx, ResultError, msg, time.Since(start), err)
					return consumer.ConsumeRetryLater, err
				case applied:
					stats.Record(ctx, ResultApplied, msg, time.Since(start), nil)
				default:
					stats.Record(ctx, ResultDuplicate, msg, time.Since(start), nil)
				}
			}
			return consumer.ConsumeSuccess, nil
		})
	if err != nil {
		return nil, fmt.Errorf("service: naive subscribe: %w", err)
	}
	return &naiveConsumer{pc: pc}, nil
}

func (n *naiveConsumer) Start() error { return n.pc.Start() }

// Shutdown shuts the client down. Unlike rmq.Consumer it does not wait for deliveries in flight:
// the client's Shutdown does not, and this consumer is kept as plain as the article's.
func (n *naiveConsumer) Shutdown(context.Context) error { return n.pc.Shutdown() }
