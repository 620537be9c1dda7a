package service

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/apache/rocketmq-client-go/v2"
	"github.com/apache/rocketmq-client-go/v2/primitive"
	"github.com/apache/rocketmq-client-go/v2/producer"
	"github.com/jmoiron/sqlx"

	"github.com/txconsume/txconsume/txconsume/outbox"
)

// relay is the order service's outbox relay, running beside its consumer: it publishes the
// order-shipped events that payments enqueue. A service killed in the middle of a relay round
// loses nothing: the round's transaction rolls back and the next relay to start sends its rows
// again, under the same message ids.
type relay struct {
	prod   rocketmq.Producer
	cancel context.CancelFunc
	done   chan struct{}
	failed chan error // receives Run's error if it stops by itself
}

func startRelay(ctx context.Context, db *sqlx.DB, cfg Config, stats *Stats, log *slog.Logger) (*relay, error) {
	prod, err := rocketmq.NewProducer(
		producer.WithNsResolver(primitive.NewPassthroughResolver(cfg.NameServers)),
		producer.WithGroupName(cfg.Group+"-outbox"),
		// The relay chooses each batch's queue: an order's events stay in one queue, in order.
		producer.WithQueueSelector(outbox.QueueSelector()),
		producer.WithSendMsgTimeout(10*time.Second))
	if err != nil {
		return nil, fmt.Errorf("service: outbox producer: %w", err)
	}
	if err := prod.Start(); err != nil {
		return nil, fmt.Errorf("service: start outbox producer: %w", err)
	}
	rl, err := outbox.NewRelay(db, prod, outbox.WithLogger(log), outbox.WithRetention(cfg.OutboxRetention),
		outbox.WithHooks(outbox.Hooks{OnSend: stats.OnSend}))
	if err != nil {
		_ = prod.Shutdown()
		return nil, err
	}
	// The relay outlives ctx: it stops when the consumer has finished, in stop.
	rctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	r := &relay{prod: prod, cancel: cancel, done: make(chan struct{}), failed: make(chan error, 1)}
	go func() {
		defer close(r.done)
		if err := rl.Run(rctx); err != nil {
			r.failed <- err
		} else if rctx.Err() == nil {
			r.failed <- errors.New("relay stopped")
		}
	}()
	return r, nil
}

// stop ends the relay's round in progress (what it sent is recorded, the rest is left for the
// next start) and shuts its producer down.
func (r *relay) stop() {
	r.cancel()
	<-r.done
	_ = r.prod.Shutdown()
}
