package order

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/jmoiron/sqlx"

	"github.com/txconsume/txconsume/txconsume/outbox"
)

// TagShipped is the RocketMQ tag of order-shipped events.
const TagShipped = "OrderShipped"

// ShippedEvent says that a paid order is to be shipped. The order service emits it, through the
// outbox, in the transaction that applies the payment; it is the body of an order-shipped
// message, encoded as JSON.
type ShippedEvent struct {
	OrderNo  string `json:"order_no" db:"order_no"`
	SKU      string `json:"sku" db:"sku"`
	Quantity int    `json:"quantity" db:"quantity"`
}

// Validate reports what is missing from e.
func (e ShippedEvent) Validate() error {
	switch {
	case e.OrderNo == "":
		return errors.New("order_no is empty")
	case e.SKU == "":
		return errors.New("sku is empty")
	case e.Quantity <= 0:
		return fmt.Errorf("quantity is %d", e.Quantity)
	}
	return nil
}

// DecodeShipped parses an order-shipped message body.
func DecodeShipped(body []byte) (ShippedEvent, error) {
	var e ShippedEvent
	if err := json.Unmarshal(body, &e); err != nil {
		return ShippedEvent{}, fmt.Errorf("order: decode shipped event: %w", err)
	}
	if err := e.Validate(); err != nil {
		return ShippedEvent{}, fmt.Errorf("order: invalid shipped event: %w", err)
	}
	return e, nil
}

// EnqueueShippedTx enqueues the order-shipped event of orderNo on topic through tx, with
// outbox.Enqueue: the event exists exactly when tx commits, and a relay publishes it then. The
// order number is the event's key and sharding key, so one order's events stay in order.
func EnqueueShippedTx(ctx context.Context, tx *sqlx.Tx, topic, orderNo string) error {
	var e ShippedEvent
	if err := tx.GetContext(ctx, &e, "SELECT order_no, sku, quantity FROM orders WHERE order_no = ?", orderNo); err != nil {
		return fmt.Errorf("order: load %s to ship it: %w", orderNo, err)
	}
	body, err := json.Marshal(e)
	if err != nil {
		return err
	}
	return outbox.Enqueue(ctx, tx, outbox.Message{
		Topic: topic, Tags: TagShipped, Keys: []string{orderNo}, ShardingKey: orderNo, Body: body,
	})
}
