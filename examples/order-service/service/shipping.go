package service

import (
	"context"

	"github.com/jmoiron/sqlx"

	"github.com/txconsume/txconsume/examples/order-service/order"
	"github.com/txconsume/txconsume/examples/order-service/shipping"
	"github.com/txconsume/txconsume/txconsume"
)

// HandleShipped is the txconsume handler of the shipping service: it records the shipment of an
// order-shipped event. An event that does not parse is discarded (recorded, never retried).
func HandleShipped(ctx context.Context, tx *sqlx.Tx, msg *txconsume.Message) error {
	e, err := order.DecodeShipped(msg.Body)
	if err != nil {
		return txconsume.Discard(err)
	}
	return shipping.ShipTx(ctx, tx, e, msg.ID)
}

// NewShippingProcessor returns the processor of the shipping service: HandleShipped,
// deduplicated by message id (txconsume's default). The order service's outbox gives each event
// an id when it enqueues it and sends it under that id every time, so a copy relayed again
// after a crash is a Duplicate here, like a redelivery.
func NewShippingProcessor(db *sqlx.DB, group string, stats *Stats, more ...txconsume.Hooks) (*txconsume.Processor, error) {
	return txconsume.New(db, group, HandleShipped,
		txconsume.WithLogger(stats.processorLog()),
		txconsume.WithHooks(chainHooks(append(more, txconsume.Hooks{OnResult: stats.OnResult})...)))
}
