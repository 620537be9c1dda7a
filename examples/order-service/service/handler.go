package service

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/txconsume/txconsume/examples/order-service/order"
	"github.com/txconsume/txconsume/txconsume"
)

// OutOfStockRetry is how long a paid order waits for stock before its payment is tried again.
// The broker redelivers it at the nearest delay level; after the consumer's max reconsume times
// without stock it goes to the dead-letter queue (%DLQ%<group>), where an operator sees it.
const OutOfStockRetry = time.Minute

// HandlePaid is the txconsume handler of order-paid events. The processor calls it inside the
// transaction that records the message's key (the order number), so the payment is applied
// exactly when that record is written: once.
//
// Errors are sorted in three: a message that can never succeed (a body that does not parse, an
// unknown order, a wrong amount) is discarded, which records it as consumed so it stops coming
// back; an order that is paid but out of stock waits for stock and is retried after
// OutOfStockRetry (the customer has paid: dropping the payment is never right); anything else (a
// lost connection, a lock timeout) rolls back and is redelivered.
func HandlePaid(ctx context.Context, tx *sqlx.Tx, msg *txconsume.Message) error {
	e, err := order.DecodePaid(msg.Body)
	if err != nil {
		return txconsume.Discard(err)
	}
	// The key the processor deduplicated by must be this payment's order, or a mislabelled
	// message would claim another order's key.
	if len(msg.Keys) == 0 || msg.Keys[0] != e.OrderNo {
		return txconsume.Discard(fmt.Errorf("message keys %q do not name order %s", msg.Keys, e.OrderNo))
	}
	if err := order.PayTx(ctx, tx, e, msg.ID); err != nil {
		switch {
		case order.IsPermanent(err):
			return txconsume.Discard(err)
		case errors.Is(err, order.ErrOutOfStock):
			return txconsume.RetryAfter(OutOfStockRetry, err)
		}
		return err
	}
	return nil
}

// HandlePaidAndShip returns the handler of an order service that ships what is paid: HandlePaid,
// then the order's order-shipped event enqueued on shippedTopic through the outbox, in the same
// transaction. The payment, the dedup record and the event commit together or not at all, so
// each order's event is published once it is paid, and never for a payment rolled back or
// recognised as a duplicate.
func HandlePaidAndShip(shippedTopic string) txconsume.Handler {
	return func(ctx context.Context, tx *sqlx.Tx, msg *txconsume.Message) error {
		if err := HandlePaid(ctx, tx, msg); err != nil {
			return err
		}
		return order.EnqueueShippedTx(ctx, tx, shippedTopic, msg.Keys[0]) // HandlePaid checked Keys[0]
	}
}

// NewProcessor returns the processor of the order service: HandlePaid (HandlePaidAndShip when
// shippedTopic is set), deduplicated by the order number (the message's first key) rather than
// by message id, so that a payment published twice under two message ids is still applied once.
// Every result is reported to stats, and to the further hooks given (the service's metrics).
func NewProcessor(db *sqlx.DB, group, shippedTopic string, stats *Stats, more ...txconsume.Hooks) (*txconsume.Processor, error) {
	h := HandlePaid
	if shippedTopic != "" {
		h = HandlePaidAndShip(shippedTopic)
	}
	return txconsume.New(db, group, h,
		txconsume.WithKeyFunc(txconsume.KeyByFirstKey),
		txconsume.WithLogger(stats.processorLog()),
		txconsume.WithHooks(chainHooks(append(more, txconsume.Hooks{OnResult: stats.OnResult})...)))
}

// chainHooks calls the hooks of each of hs in turn; OnStart's context is passed along the chain.
func chainHooks(hs ...txconsume.Hooks) txconsume.Hooks {
	return txconsume.Hooks{
		OnStart: func(ctx context.Context, group string, m *txconsume.Message) context.Context {
			for _, h := range hs {
				if h.OnStart != nil {
					if next := h.OnStart(ctx, group, m); next != nil {
						ctx = next
					}
				}
			}
			return ctx
		},
		OnHandler: func(ctx context.Context, m *txconsume.Message, err error, d time.Duration) {
			for _, h := range hs {
				if h.OnHandler != nil {
					h.OnHandler(ctx, m, err, d)
				}
			}
		},
		OnResult: func(ctx context.Context, m *txconsume.Message, r txconsume.Result, err error, d time.Duration) {
			for _, h := range hs {
				if h.OnResult != nil {
					h.OnResult(ctx, m, r, err, d)
				}
			}
		},
		OnRetry: func(ctx context.Context, ms []*txconsume.Message, attempt int, err error, d time.Duration) {
			for _, h := range hs {
				if h.OnRetry != nil {
					h.OnRetry(ctx, ms, attempt, err, d)
				}
			}
		},
		OnInProgress: func(ctx context.Context, m *txconsume.Message, remaining time.Duration) {
			for _, h := range hs {
				if h.OnInProgress != nil {
					h.OnInProgress(ctx, m, remaining)
				}
			}
		},
	}
}
