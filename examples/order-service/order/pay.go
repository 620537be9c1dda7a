package order

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/jmoiron/sqlx"
)

// Business errors. A message that fails with ErrUnknownOrder or ErrAmountMismatch will fail the
// same way every time (IsPermanent), so the consumer discards it. ErrOutOfStock is temporary:
// the order is paid, and stock can come in; the consumer tries the payment again later.
var (
	ErrUnknownOrder   = errors.New("order: unknown order")
	ErrAmountMismatch = errors.New("order: paid amount differs from the order's amount")
	ErrOutOfStock     = errors.New("order: not enough stock")
)

// PayTx applies a payment: it marks the order paid, takes the order's quantity out of stock and
// appends a ledger entry, all through tx. msgID is recorded on the ledger entry for audits.
//
// PayTx does not ask "is this order already paid?". That check is what deduplication is for, and
// done here it would be the racy check-then-act of the naive consumer (see NaivePay): two
// deliveries of one payment could both read "not paid" before either commits. The txconsume
// processor runs PayTx in the transaction that records the message's key, so a second delivery
// never reaches it. Without that, running PayTx twice pays twice, which is what lets the demo
// count double payments honestly.
func PayTx(ctx context.Context, tx *sqlx.Tx, e PaidEvent, msgID string) error {
	var o struct {
		SKU         string `db:"sku"`
		Quantity    int    `db:"quantity"`
		AmountCents int64  `db:"amount_cents"`
	}
	err := tx.GetContext(ctx, &o, "SELECT sku, quantity, amount_cents FROM orders WHERE order_no = ?", e.OrderNo)
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("%w: %s", ErrUnknownOrder, e.OrderNo)
	}
	if err != nil {
		return fmt.Errorf("order: load %s: %w", e.OrderNo, err)
	}
	if o.AmountCents != e.AmountCents {
		return fmt.Errorf("%w: order %s costs %d, paid %d", ErrAmountMismatch, e.OrderNo, o.AmountCents, e.AmountCents)
	}
	if _, err := tx.ExecContext(ctx,
		"UPDATE orders SET status = 'PAID', payment_id = ?, paid_at = ? WHERE order_no = ?",
		e.PaymentID, e.PaidAt.UTC(), e.OrderNo); err != nil {
		return fmt.Errorf("order: mark %s paid: %w", e.OrderNo, err)
	}
	res, err := tx.ExecContext(ctx,
		"UPDATE stock SET available = available - ? WHERE sku = ? AND available >= ?", o.Quantity, o.SKU, o.Quantity)
	if err != nil {
		return fmt.Errorf("order: take stock for %s: %w", e.OrderNo, err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return err
	} else if n == 0 {
		return fmt.Errorf("%w: %d x %s for order %s", ErrOutOfStock, o.Quantity, o.SKU, e.OrderNo)
	}
	if _, err := tx.ExecContext(ctx,
		"INSERT INTO payments_ledger (order_no, payment_id, amount_cents, msg_id) VALUES (?, ?, ?, ?)",
		e.OrderNo, e.PaymentID, e.AmountCents, msgID); err != nil {
		return fmt.Errorf("order: ledger entry for %s: %w", e.OrderNo, err)
	}
	return nil
}

// IsPermanent reports whether err is a business error that redelivery cannot fix. Running out
// of stock is not one.
func IsPermanent(err error) bool {
	return errors.Is(err, ErrUnknownOrder) || errors.Is(err, ErrAmountMismatch)
}
