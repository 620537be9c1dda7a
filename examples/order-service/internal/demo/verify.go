package demo

import (
	"context"
	"fmt"

	"github.com/jmoiron/sqlx"
)

// effects is what the database says about one consumer's run.
type effects struct {
	Orders       int `db:"orders"`        // orders of the plan
	PaidOnce     int `db:"paid_once"`     // PAID with exactly one ledger entry
	AppliedTwice int `db:"applied_twice"` // more than one ledger entry: paid more than once
	Lost         int `db:"lost"`          // no ledger entry or not PAID: the payment never applied
	LedgerRows   int `db:"ledger_rows"`
	// StockOff is the number of SKUs whose stock went down by a different amount than the sum
	// of their orders' quantities; StockExcess the units taken beyond that sum (or short of it).
	StockOff    int `db:"stock_off"`
	StockExcess int `db:"stock_excess"`
}

// paidOrders counts the orders in status PAID: the cheap query the drain loop polls.
func paidOrders(ctx context.Context, db *sqlx.DB) (int, error) {
	var n int
	err := db.GetContext(ctx, &n, "SELECT COUNT(*) FROM orders WHERE status = 'PAID'")
	return n, err
}

// verify counts the effects of the run in db against the plan's orders and initial stock.
func verify(ctx context.Context, db *sqlx.DB, pl *plan) (effects, error) {
	var e effects
	err := db.GetContext(ctx, &e, `
		SELECT COUNT(*) AS orders,
		       COALESCE(SUM(o.status = 'PAID' AND COALESCE(l.n, 0) = 1), 0) AS paid_once,
		       COALESCE(SUM(COALESCE(l.n, 0) > 1), 0) AS applied_twice,
		       COALESCE(SUM(o.status <> 'PAID' OR COALESCE(l.n, 0) = 0), 0) AS lost,
		       (SELECT COUNT(*) FROM payments_ledger) AS ledger_rows,
		       0 AS stock_off, 0 AS stock_excess
		FROM orders o
		LEFT JOIN (SELECT order_no, COUNT(*) AS n FROM payments_ledger GROUP BY order_no) l
		       ON l.order_no = o.order_no`)
	if err != nil {
		return e, fmt.Errorf("demo: count effects: %w", err)
	}
	// Stock: what each SKU lost must equal the quantities of its paid orders, each counted once.
	var rows []struct {
		SKU       string `db:"sku"`
		Available int    `db:"available"`
		Ordered   int    `db:"ordered"`
	}
	if err := db.SelectContext(ctx, &rows, `
		SELECT s.sku, s.available, COALESCE(SUM(CASE WHEN o.status = 'PAID' THEN o.quantity ELSE 0 END), 0) AS ordered
		FROM stock s LEFT JOIN orders o ON o.sku = s.sku
		GROUP BY s.sku, s.available`); err != nil {
		return e, fmt.Errorf("demo: count stock: %w", err)
	}
	if len(rows) != len(pl.stock) {
		return e, fmt.Errorf("demo: %d SKUs in stock, %d seeded", len(rows), len(pl.stock))
	}
	for _, r := range rows {
		taken := pl.stock[r.SKU] - r.Available
		if taken != r.Ordered {
			e.StockOff++
			e.StockExcess += taken - r.Ordered
		}
	}
	return e, nil
}

// dedupRows counts the keys group recorded in txconsume_dedup.
func dedupRows(ctx context.Context, db *sqlx.DB, group string) (int, error) {
	var n int
	err := db.GetContext(ctx, &n, "SELECT COUNT(*) FROM txconsume_dedup WHERE consumer_group = ?", group)
	return n, err
}
