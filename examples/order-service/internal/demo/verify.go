package demo

import (
	"context"
	"fmt"

	"github.com/jmoiron/sqlx"

	"github.com/txconsume/txconsume/txconsume/outbox"
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

// outboxEvent is an order-shipped event in the order service's outbox table.
type outboxEvent struct {
	OrderNo string `db:"order_no"`
	MsgID   string `db:"msg_id"`
	Sent    bool   `db:"sent"`
}

// outboxEvents reads the order-shipped events of the order service's outbox. The service keeps
// them after sending (-outbox-retention), marked sent.
func outboxEvents(ctx context.Context, db *sqlx.DB) ([]outboxEvent, error) {
	var events []outboxEvent
	err := db.SelectContext(ctx, &events,
		"SELECT msg_keys AS order_no, msg_id, sent_at IS NOT NULL AS sent FROM "+outbox.Table+" ORDER BY id")
	return events, err
}

// chainOutcome counts the effects of the order-shipped chain: the events in the order service's
// outbox, and the shipments in the shipping service's database, against the plan's orders.
func chainOutcome(ctx context.Context, lib, ship *consumerRun, shipping Outcome, pl *plan) (*Chain, error) {
	c := &Chain{Relayed: lib.svc.tally.snapshot().Relayed, Shipping: shipping}
	events, err := outboxEvents(ctx, lib.db)
	if err != nil {
		return nil, fmt.Errorf("demo: read the outbox: %w", err)
	}
	idOf := make(map[string]string, len(events)) // order -> the id of its event
	perOrder := make(map[string]int, len(events))
	for _, e := range events {
		c.Enqueued++
		if e.Sent {
			c.Sent++
		}
		idOf[e.OrderNo] = e.MsgID
		perOrder[e.OrderNo]++
	}
	for _, n := range perOrder {
		if n > 1 {
			c.EnqueuedTwice++
		}
	}
	var rows []struct {
		OrderNo string `db:"order_no"`
		MsgID   string `db:"msg_id"`
	}
	if err := ship.db.SelectContext(ctx, &rows, "SELECT order_no, msg_id FROM shipments"); err != nil {
		return nil, fmt.Errorf("demo: count shipments: %w", err)
	}
	shipments := make(map[string]int, len(rows))
	for _, r := range rows {
		c.ShipmentRows++
		shipments[r.OrderNo]++
		if r.MsgID != idOf[r.OrderNo] {
			c.ForeignIDs++
		}
	}
	for _, o := range pl.orders {
		switch shipments[o.OrderNo] {
		case 0:
			c.Lost++
		case 1:
			c.ShippedOnce++
		default:
			c.ShippedTwice++
		}
	}
	c.Shipping.Missing = ship.svc.tally.missing(idCopies(events))
	if c.Shipping.DedupRows, err = dedupRows(ctx, ship.db, ship.group); err != nil {
		return nil, fmt.Errorf("demo: count the shipping service's dedup rows: %w", err)
	}
	return c, nil
}

// idCopies is the copies of each event that the shipping service must have reported consumed.
func idCopies(events []outboxEvent) map[string]int {
	copies := make(map[string]int, len(events))
	for _, e := range events {
		copies[e.MsgID] = 1
	}
	return copies
}
