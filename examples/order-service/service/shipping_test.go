package service_test

import (
	"context"
	"io"
	"log/slog"
	"testing"

	"github.com/jmoiron/sqlx"
	"github.com/stretchr/testify/require"

	"github.com/txconsume/txconsume/examples/order-service/order"
	"github.com/txconsume/txconsume/examples/order-service/service"
	"github.com/txconsume/txconsume/examples/order-service/shipping"
	"github.com/txconsume/txconsume/internal/testenv"
	"github.com/txconsume/txconsume/migrations"
	"github.com/txconsume/txconsume/txconsume"
)

// outboxRow is an order-shipped event as the order service's outbox holds it.
type outboxRow struct {
	MsgID string `db:"msg_id"`
	Topic string `db:"topic"`
	Tags  string `db:"tags"`
	Keys  string `db:"msg_keys"`
	Body  []byte `db:"body"`
}

func TestShippingChain(t *testing.T) {
	ctx := context.Background()
	stats := service.NewStats(slog.New(slog.NewTextHandler(io.Discard, nil)))
	// setupChain returns the order service's database and processor, which ships on order-shipped,
	// and the shipping service's database (a database of its own) and processor.
	setupChain := func(t *testing.T) (orders *sqlx.DB, pay *txconsume.Processor, ships *sqlx.DB, ship *txconsume.Processor) {
		orders, _ = setup(t)
		pay, err := service.NewProcessor(orders, "order-service", "order-shipped", stats)
		require.NoError(t, err)
		ships = testenv.MySQL(t)
		require.NoError(t, migrations.Up(ctx, ships.DB))
		require.NoError(t, shipping.Migrate(ctx, ships.DB))
		ship, err = service.NewShippingProcessor(ships, "shipping-service", stats)
		require.NoError(t, err)
		return orders, pay, ships, ship
	}
	outboxRows := func(t *testing.T, db *sqlx.DB) []outboxRow {
		var rows []outboxRow
		require.NoError(t, db.Select(&rows, "SELECT msg_id, topic, tags, msg_keys, body FROM txconsume_outbox ORDER BY id"))
		return rows
	}
	// delivery is the delivery of an outbox row to the shipping service: under the row's id.
	delivery := func(r outboxRow) *txconsume.Message {
		return &txconsume.Message{ID: r.MsgID, Topic: r.Topic, Tags: r.Tags, Keys: []string{r.Keys}, Body: r.Body}
	}

	t.Run("a payment enqueues one order-shipped event in its transaction; duplicates and failures none", func(t *testing.T) {
		orders, pay, _, _ := setupChain(t)
		r, err := pay.Process(ctx, paidMessage(t, "id-1", "ORD-01"))
		require.NoError(t, err)
		require.Equal(t, txconsume.Applied, r)
		r, err = pay.Process(ctx, paidMessage(t, "id-2", "ORD-01")) // published again
		require.NoError(t, err)
		require.Equal(t, txconsume.Duplicate, r)
		r, err = pay.Process(ctx, paidMessage(t, "id-3", "ORD-99")) // unknown order
		require.NoError(t, err)
		require.Equal(t, txconsume.Discarded, r)
		require.NoError(t, order.SetStock(ctx, orders, "SKU-A", 0))
		_, err = pay.Process(ctx, paidMessage(t, "id-4", "ORD-02")) // out of stock: rolled back
		require.ErrorIs(t, err, order.ErrOutOfStock)

		rows := outboxRows(t, orders)
		require.Len(t, rows, 1)
		require.Equal(t, "order-shipped", rows[0].Topic)
		require.Equal(t, order.TagShipped, rows[0].Tags)
		require.Equal(t, "ORD-01", rows[0].Keys)
		e, err := order.DecodeShipped(rows[0].Body)
		require.NoError(t, err)
		require.Equal(t, order.ShippedEvent{OrderNo: "ORD-01", SKU: "SKU-A", Quantity: 1}, e)
	})

	t.Run("the shipping service ships each event once, by the id the outbox gave it", func(t *testing.T) {
		orders, pay, ships, ship := setupChain(t)
		for _, no := range []string{"ORD-01", "ORD-02"} {
			_, err := pay.Process(ctx, paidMessage(t, "id-"+no, no))
			require.NoError(t, err)
		}
		rows := outboxRows(t, orders)
		require.Len(t, rows, 2)
		for _, row := range rows {
			r, err := ship.Process(ctx, delivery(row))
			require.NoError(t, err)
			require.Equal(t, txconsume.Applied, r)
			// A copy relayed again after a crash, or redelivered: same id.
			r, err = ship.Process(ctx, delivery(row))
			require.NoError(t, err)
			require.Equal(t, txconsume.Duplicate, r)
		}
		garbled := &txconsume.Message{ID: "id-g", Keys: []string{"ORD-03"}, Body: []byte("{")}
		r, err := ship.Process(ctx, garbled)
		require.NoError(t, err)
		require.Equal(t, txconsume.Discarded, r)

		var shipped []struct {
			OrderNo string `db:"order_no"`
			MsgID   string `db:"msg_id"`
		}
		require.NoError(t, ships.Select(&shipped, "SELECT order_no, msg_id FROM shipments ORDER BY order_no"))
		require.Len(t, shipped, 2)
		for i, s := range shipped {
			require.Equal(t, rows[i].Keys, s.OrderNo)
			require.Equal(t, rows[i].MsgID, s.MsgID)
		}
	})
}
