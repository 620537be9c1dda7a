package txconsume

import (
	"context"
	"time"

	"github.com/jmoiron/sqlx"
)

// Message is one delivery from a broker, reduced to what deduplication and handlers need.
// It carries no broker types, so the core can be driven by any transport and by tests.
type Message struct {
	// ID is the stable message id: RocketMQ's UNIQ_KEY (primitive.MessageExt.MsgId), which stays the
	// same across redeliveries and producer retries. It is the default deduplication key.
	ID string
	// Topic and Tags of the message.
	Topic, Tags string
	// Keys are the business keys the producer set (RocketMQ KEYS).
	Keys []string
	// Body is the payload.
	Body []byte
	// Properties are the user properties of the message.
	Properties map[string]string
	// ReconsumeTimes counts earlier failed deliveries of this message.
	ReconsumeTimes int32
	// BornAt is when the producer created the message (RocketMQ's born timestamp), the start of
	// its time in queue; zero when the transport does not know it.
	BornAt time.Time
}

// Handler applies a message's business effects using tx, the transaction in which the
// deduplication key is claimed. It must do all its database work through tx, return every error
// it gets from tx, and must not commit or roll tx back: the Processor does (see "What a handler
// must not do" in the package documentation for what happens otherwise). Return Discard(err) to
// stop a poison message from coming back, ErrAlreadyApplied in row-lock mode when the effect
// already exists, or any other error to have the delivery retried.
type Handler func(ctx context.Context, tx *sqlx.Tx, msg *Message) error

// Result says what processing a message did.
type Result int

const (
	// Applied means the handler ran and its effects were committed with the deduplication record.
	Applied Result = iota + 1
	// Duplicate means the key had already been consumed; the handler did not run (or, in row-lock
	// mode, reported ErrAlreadyApplied) and nothing was written.
	Duplicate
	// Discarded means the handler returned Discard(err); its writes were rolled back and the key is
	// recorded as consumed so the message is not delivered to the handler again.
	Discarded
)

// String returns the result's name in lower case.
func (r Result) String() string {
	switch r {
	case Applied:
		return "applied"
	case Duplicate:
		return "duplicate"
	case Discarded:
		return "discarded"
	default:
		return "unknown"
	}
}
