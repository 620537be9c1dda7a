// Package order is the business side of the order service: its schema (orders, stock and a
// payments ledger, applied by Migrate), the order-paid event, and PayTx, the transaction body
// that the consumer runs once per payment.
//
// Nothing in this package knows about deduplication. The consumer in cmd/order-service gives
// PayTx to a txconsume processor, which runs it in the transaction that records the message's
// business key, so a payment is applied exactly once however often it is delivered.
package order

import (
	"context"
	"fmt"
	"strings"

	"github.com/jmoiron/sqlx"
)

// Order statuses.
const (
	StatusCreated = "CREATED"
	StatusPaid    = "PAID"
)

// Order is a row of the orders table as it is created, before payment.
type Order struct {
	OrderNo     string `db:"order_no"`
	SKU         string `db:"sku"`
	Quantity    int    `db:"quantity"`
	AmountCents int64  `db:"amount_cents"`
}

// insertChunk keeps multi-row INSERTs well below max_allowed_packet and placeholder limits.
const insertChunk = 500

// CreateOrders inserts orders in status CREATED, several rows per statement.
func CreateOrders(ctx context.Context, db sqlx.ExecerContext, orders []Order) error {
	for len(orders) > 0 {
		n := min(len(orders), insertChunk)
		args := make([]any, 0, 4*n)
		for _, o := range orders[:n] {
			args = append(args, o.OrderNo, o.SKU, o.Quantity, o.AmountCents)
		}
		q := "INSERT INTO orders (order_no, sku, quantity, amount_cents) VALUES " +
			strings.TrimSuffix(strings.Repeat("(?, ?, ?, ?), ", n), ", ")
		if _, err := db.ExecContext(ctx, q, args...); err != nil {
			return fmt.Errorf("order: create orders: %w", err)
		}
		orders = orders[n:]
	}
	return nil
}

// SetStock sets the units available for sku.
func SetStock(ctx context.Context, db sqlx.ExecerContext, sku string, available int) error {
	_, err := db.ExecContext(ctx,
		"INSERT INTO stock (sku, available) VALUES (?, ?) ON DUPLICATE KEY UPDATE available = ?",
		sku, available, available)
	if err != nil {
		return fmt.Errorf("order: set stock of %s: %w", sku, err)
	}
	return nil
}
