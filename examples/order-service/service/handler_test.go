package service_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/txconsume/txconsume/examples/order-service/order"
	"github.com/txconsume/txconsume/examples/order-service/service"
	"github.com/txconsume/txconsume/internal/testenv"
	"github.com/txconsume/txconsume/migrations"
	"github.com/txconsume/txconsume/txconsume"
)

func TestMain(m *testing.M) {
	// The RocketMQ client, linked in through rmq, starts a cache janitor at init.
	goleak.VerifyTestMain(testenv.M(m), goleak.IgnoreTopFunction("github.com/patrickmn/go-cache.(*janitor).Run"))
}

const orders = 20

// setup returns a database with both schemas, orders ORD-01..ORD-20 (1 x SKU-A each, 1000 cents)
// and 100 units of SKU-A, and the service's processor on it.
func setup(t *testing.T) (*sqlx.DB, *txconsume.Processor) {
	t.Helper()
	db := testenv.MySQL(t)
	ctx := context.Background()
	require.NoError(t, migrations.Up(ctx, db.DB))
	require.NoError(t, order.Migrate(ctx, db.DB))
	var list []order.Order
	for i := 1; i <= orders; i++ {
		list = append(list, order.Order{OrderNo: fmt.Sprintf("ORD-%02d", i), SKU: "SKU-A", Quantity: 1, AmountCents: 1000})
	}
	require.NoError(t, order.CreateOrders(ctx, db, list))
	require.NoError(t, order.SetStock(ctx, db, "SKU-A", 100))
	p, err := service.NewProcessor(db, "order-service", "", service.NewStats(slog.New(slog.NewTextHandler(io.Discard, nil))))
	require.NoError(t, err)
	return db, p
}

// paidMessage is the delivery of a payment of orderNo under message id id, as rmq hands it over.
func paidMessage(t *testing.T, id, orderNo string) *txconsume.Message {
	t.Helper()
	m, err := order.NewPaidMessage("order-paid", order.PaidEvent{
		OrderNo: orderNo, PaymentID: "PAY-" + orderNo, AmountCents: 1000, PaidAt: time.Now(),
	})
	require.NoError(t, err)
	return &txconsume.Message{ID: id, Topic: m.Topic, Tags: m.GetTags(), Keys: []string{orderNo}, Body: m.Body}
}

type totals struct {
	Paid   int `db:"paid"`
	Ledger int `db:"ledger"`
	Stock  int `db:"stock"`
}

func readTotals(t *testing.T, db *sqlx.DB) totals {
	t.Helper()
	var tot totals
	require.NoError(t, db.Get(&tot, `SELECT
		(SELECT COUNT(*) FROM orders WHERE status = 'PAID') AS paid,
		(SELECT COUNT(*) FROM payments_ledger) AS ledger,
		(SELECT available FROM stock WHERE sku = 'SKU-A') AS stock`))
	return tot
}

func TestProcessor(t *testing.T) {
	ctx := context.Background()
	t.Run("a payment re-sent under a new message id is a duplicate", func(t *testing.T) {
		db, p := setup(t)
		r, err := p.Process(ctx, paidMessage(t, "id-1", "ORD-01"))
		require.NoError(t, err)
		require.Equal(t, txconsume.Applied, r)
		r, err = p.Process(ctx, paidMessage(t, "id-2", "ORD-01"))
		require.NoError(t, err)
		require.Equal(t, txconsume.Duplicate, r)
		require.Equal(t, totals{Paid: 1, Ledger: 1, Stock: 99}, readTotals(t, db))
	})

	t.Run("concurrent deliveries of each payment apply it once", func(t *testing.T) {
		// Four deliveries per order at once: two share a message id (a redelivery), two carry
		// new ids (re-publications). Exactly one per order may be applied. 60 deliveries in
		// flight stay below the pool's 64 connections, as the service keeps its pool larger than
		// its consumer goroutines: the processor may need a connection besides the transactions.
		db, p := setup(t)
		const perOrder, concurrentOrders = 4, 15
		results := make([][]txconsume.Result, concurrentOrders)
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := range concurrentOrders {
			results[i] = make([]txconsume.Result, perOrder)
			orderNo := fmt.Sprintf("ORD-%02d", i+1)
			for j := range perOrder {
				id := fmt.Sprintf("%s-m%d", orderNo, max(j, 1)) // m1, m1, m2, m3
				wg.Go(func() {
					<-start
					r, err := p.Process(ctx, paidMessage(t, id, orderNo))
					if err != nil {
						t.Errorf("%s %s: %v", orderNo, id, err)
					}
					results[i][j] = r
				})
			}
		}
		close(start)
		wg.Wait()
		for i, rs := range results {
			applied := 0
			for _, r := range rs {
				require.Contains(t, []txconsume.Result{txconsume.Applied, txconsume.Duplicate}, r)
				if r == txconsume.Applied {
					applied++
				}
			}
			require.Equal(t, 1, applied, "ORD-%02d: %v", i+1, rs)
		}
		require.Equal(t, totals{Paid: concurrentOrders, Ledger: concurrentOrders, Stock: 100 - concurrentOrders}, readTotals(t, db))
	})

	t.Run("a paid order without stock is retried later, never discarded", func(t *testing.T) {
		// No stock is a temporary condition (a delivery of goods is on its way): the payment
		// must be applied once the stock is there, not dropped.
		db, p := setup(t)
		require.NoError(t, order.SetStock(ctx, db, "SKU-A", 0))
		m := paidMessage(t, "id-s", "ORD-05")
		r, err := p.Process(ctx, m)
		require.ErrorIs(t, err, order.ErrOutOfStock)
		require.Zero(t, r)
		d, ok := txconsume.RetryDelay(err)
		require.True(t, ok, "the delivery asks to be redelivered later: %v", err)
		require.Equal(t, service.OutOfStockRetry, d)
		require.Equal(t, totals{}, readTotals(t, db), "nothing written, nothing recorded")

		require.NoError(t, order.SetStock(ctx, db, "SKU-A", 1))
		r, err = p.Process(ctx, m)
		require.NoError(t, err)
		require.Equal(t, txconsume.Applied, r)
		require.Equal(t, totals{Paid: 1, Ledger: 1, Stock: 0}, readTotals(t, db))
	})

	t.Run("poison messages are discarded and stay discarded", func(t *testing.T) {
		db, p := setup(t)
		unknown := paidMessage(t, "id-u", "ORD-99")
		garbled := &txconsume.Message{ID: "id-g", Keys: []string{"ORD-02"}, Body: []byte("{")}
		mislabelled := paidMessage(t, "id-m", "ORD-03")
		mislabelled.Keys = []string{"ORD-04"}
		for _, m := range []*txconsume.Message{unknown, garbled, mislabelled} {
			r, err := p.Process(ctx, m)
			require.NoError(t, err, m.ID)
			require.Equal(t, txconsume.Discarded, r, m.ID)
			r, err = p.Process(ctx, m)
			require.NoError(t, err, m.ID)
			require.Equal(t, txconsume.Duplicate, r, "a redelivery of %s is not handled again", m.ID)
		}
		require.Equal(t, totals{Stock: 100}, readTotals(t, db))
	})
}
