package order

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/apache/rocketmq-client-go/v2/primitive"
)

// TagPaid is the RocketMQ tag of order-paid events.
const TagPaid = "OrderPaid"

// PaidEvent says that the payment provider captured the money for an order. It is the body of
// an order-paid message, encoded as JSON.
type PaidEvent struct {
	OrderNo     string    `json:"order_no"`
	PaymentID   string    `json:"payment_id"`
	AmountCents int64     `json:"amount_cents"`
	PaidAt      time.Time `json:"paid_at"`
}

// Validate reports what is missing from e.
func (e PaidEvent) Validate() error {
	switch {
	case e.OrderNo == "":
		return errors.New("order_no is empty")
	case e.PaymentID == "":
		return errors.New("payment_id is empty")
	case e.AmountCents <= 0:
		return fmt.Errorf("amount_cents is %d", e.AmountCents)
	}
	return nil
}

// DecodePaid parses an order-paid message body.
func DecodePaid(body []byte) (PaidEvent, error) {
	var e PaidEvent
	if err := json.Unmarshal(body, &e); err != nil {
		return PaidEvent{}, fmt.Errorf("order: decode paid event: %w", err)
	}
	if err := e.Validate(); err != nil {
		return PaidEvent{}, fmt.Errorf("order: invalid paid event: %w", err)
	}
	return e, nil
}

// NewPaidMessage builds the RocketMQ message for e on topic. The order number goes into KEYS:
// it is the business key the consumer deduplicates by, so a second event for the same order
// (a re-send with a new message id) is recognised as the same payment. It is also the sharding
// key, so a producer using producer.NewHashQueueSelector keeps one order's events in one queue.
func NewPaidMessage(topic string, e PaidEvent) (*primitive.Message, error) {
	if err := e.Validate(); err != nil {
		return nil, fmt.Errorf("order: invalid paid event: %w", err)
	}
	body, err := json.Marshal(e)
	if err != nil {
		return nil, err
	}
	msg := primitive.NewMessage(topic, body)
	msg.WithTag(TagPaid)
	msg.WithKeys([]string{e.OrderNo})
	msg.WithShardingKey(e.OrderNo)
	return msg, nil
}
