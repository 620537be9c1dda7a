package demo

import (
	"context"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/apache/rocketmq-client-go/v2/primitive"
	"github.com/jmoiron/sqlx"

	"github.com/txconsume/txconsume/examples/order-service/order"
)

const skus = 20

// plan is the traffic of one run: the orders and, per order, the messages that pay it.
type plan struct {
	orders []order.Order
	sends  [][]send // sends[i] pays orders[i]: the original first, then the re-sends
	// copies counts the messages sent per UNIQ_KEY (2 for a same-id re-send).
	copies                map[string]int
	messages              int
	sameIDDups, newIDDups int
	stock                 map[string]int // initial stock per SKU
}

// send is one message to publish.
type send struct {
	uniqKey string
	event   order.PaidEvent
	kind    string // "original", "same-id", "new-id"
}

func newPlan(cfg *Config) *plan {
	rng := rand.New(rand.NewPCG(cfg.Seed, 0x0d3e))
	p := &plan{copies: make(map[string]int), stock: make(map[string]int)}
	paidAt := time.Now().UTC().Truncate(time.Millisecond)
	for i := range cfg.Orders {
		o := order.Order{
			OrderNo:     fmt.Sprintf("ORD-%06d", i+1),
			SKU:         fmt.Sprintf("SKU-%02d", i%skus),
			Quantity:    1 + rng.IntN(3),
			AmountCents: int64(500 + rng.IntN(20000)),
		}
		p.orders = append(p.orders, o)
		// Enough stock for every order twice over: the naive consumer's double payments must
		// show up as double payments, not as out-of-stock discards.
		p.stock[o.SKU] += 2 * o.Quantity
		ev := order.PaidEvent{OrderNo: o.OrderNo, PaymentID: fmt.Sprintf("PAY-%06d", i+1), AmountCents: o.AmountCents, PaidAt: paidAt}
		orig := send{uniqKey: primitive.CreateUniqID(), event: ev, kind: "original"}
		s := []send{orig}
		if rng.Float64() < cfg.SameIDResends {
			s = append(s, send{uniqKey: orig.uniqKey, event: ev, kind: "same-id"})
			p.sameIDDups++
		}
		if rng.Float64() < cfg.NewIDResends {
			s = append(s, send{uniqKey: primitive.CreateUniqID(), event: ev, kind: "new-id"})
			p.newIDDups++
		}
		for _, m := range s {
			p.copies[m.uniqKey]++
		}
		p.messages += len(s)
		p.sends = append(p.sends, s)
	}
	return p
}

// seed migrates the business schema and inserts the plan's orders and stock into db.
func (p *plan) seed(ctx context.Context, db *sqlx.DB) error {
	if err := order.Migrate(ctx, db.DB); err != nil {
		return err
	}
	if err := order.CreateOrders(ctx, db, p.orders); err != nil {
		return err
	}
	for sku, n := range p.stock {
		if err := order.SetStock(ctx, db, sku, n); err != nil {
			return err
		}
	}
	return nil
}

// ordersPaid returns the settled check of a consumer of the plan's payments: every order paid,
// every message sent reported consumed.
func (p *plan) ordersPaid(db *sqlx.DB) func(context.Context) (map[string]int, bool, error) {
	return func(ctx context.Context) (map[string]int, bool, error) {
		paid, err := paidOrders(ctx, db)
		return p.copies, paid == len(p.orders), err
	}
}

// ordersShipped returns the settled check of the shipping service: the order service's outbox
// holds one event per order and has sent them all, the shipping database has a shipment for
// every order, and every event must be reported consumed (at least once).
func (p *plan) ordersShipped(orders, ships *sqlx.DB) func(context.Context) (map[string]int, bool, error) {
	return func(ctx context.Context) (map[string]int, bool, error) {
		events, err := outboxEvents(ctx, orders)
		if err != nil {
			return nil, false, err
		}
		for _, e := range events {
			if !e.Sent {
				return nil, false, nil
			}
		}
		var shipped int
		if err := ships.GetContext(ctx, &shipped, "SELECT COUNT(DISTINCT order_no) FROM shipments"); err != nil {
			return nil, false, err
		}
		return idCopies(events), len(events) == len(p.orders) && shipped == len(p.orders), nil
	}
}
