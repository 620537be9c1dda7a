package order

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/stretchr/testify/require"

	"github.com/txconsume/txconsume/internal/testenv"
)

// setup returns a migrated database with one order (ORD-1: 2 x SKU-A for 1500 cents) and 10
// units of SKU-A in stock.
func setup(t *testing.T) *sqlx.DB {
	t.Helper()
	db := testenv.MySQL(t)
	ctx := context.Background()
	require.NoError(t, Migrate(ctx, db.DB))
	require.NoError(t, CreateOrders(ctx, db, []Order{{OrderNo: "ORD-1", SKU: "SKU-A", Quantity: 2, AmountCents: 1500}}))
	require.NoError(t, SetStock(ctx, db, "SKU-A", 10))
	return db
}

func paidEvent(orderNo string) PaidEvent {
	return PaidEvent{OrderNo: orderNo, PaymentID: "PAY-" + orderNo, AmountCents: 1500, PaidAt: time.Now()}
}

type effects struct {
	Status      string `db:"status"`
	Stock       int    `db:"stock"`
	LedgerRows  int    `db:"ledger_rows"`
	LedgerCents int64  `db:"ledger_cents"`
}

func readEffects(t *testing.T, db *sqlx.DB, orderNo string) effects {
	t.Helper()
	var e effects
	require.NoError(t, db.Get(&e, `SELECT
		(SELECT status FROM orders WHERE order_no = ?) AS status,
		(SELECT available FROM stock WHERE sku = 'SKU-A') AS stock,
		(SELECT COUNT(*) FROM payments_ledger WHERE order_no = ?) AS ledger_rows,
		(SELECT COALESCE(SUM(amount_cents), 0) FROM payments_ledger WHERE order_no = ?) AS ledger_cents`,
		orderNo, orderNo, orderNo))
	return e
}

func payInTx(t *testing.T, db *sqlx.DB, e PaidEvent) error {
	t.Helper()
	tx, err := db.Beginx()
	require.NoError(t, err)
	defer tx.Rollback()
	if err := PayTx(context.Background(), tx, e, "msg-"+e.OrderNo); err != nil {
		return err
	}
	return tx.Commit()
}

func TestMigrate(t *testing.T) {
	t.Run("concurrent instances all succeed and apply each migration once", func(t *testing.T) {
		dsn := testenv.MySQLDSN(t)
		const instances = 4
		var wg sync.WaitGroup
		errs := make([]error, instances)
		for i := range instances {
			db := testenv.OpenMySQL(t, dsn) // one pool per instance, as separate processes would have
			wg.Go(func() { errs[i] = Migrate(context.Background(), db.DB) })
		}
		wg.Wait()
		for i, err := range errs {
			require.NoError(t, err, "instance %d", i)
		}
		db := testenv.OpenMySQL(t, dsn)
		var applied []int64
		require.NoError(t, db.Select(&applied,
			"SELECT version_id FROM "+VersionTable+" WHERE version_id > 0 AND is_applied ORDER BY id"))
		require.Equal(t, []int64{1, 2, 3}, applied)
		for _, table := range []string{"orders", "stock", "payments_ledger"} {
			var n int
			require.NoError(t, db.Get(&n, "SELECT COUNT(*) FROM "+table), table)
		}
		require.NoError(t, Migrate(context.Background(), db.DB), "a second run finds nothing to do")
	})
}

func TestPayTx(t *testing.T) {
	t.Run("marks the order paid, takes stock and writes one ledger entry", func(t *testing.T) {
		db := setup(t)
		require.NoError(t, payInTx(t, db, paidEvent("ORD-1")))
		require.Equal(t, effects{Status: StatusPaid, Stock: 8, LedgerRows: 1, LedgerCents: 1500}, readEffects(t, db, "ORD-1"))
	})
	t.Run("has no duplicate check of its own: a second run pays twice", func(t *testing.T) {
		// This is why the consumer needs txconsume, and what the demo counts as "applied twice".
		db := setup(t)
		require.NoError(t, payInTx(t, db, paidEvent("ORD-1")))
		require.NoError(t, payInTx(t, db, paidEvent("ORD-1")))
		require.Equal(t, effects{Status: StatusPaid, Stock: 6, LedgerRows: 2, LedgerCents: 3000}, readEffects(t, db, "ORD-1"))
	})
	t.Run("business errors write nothing; only running out of stock is temporary", func(t *testing.T) {
		db := setup(t)
		unknown := paidEvent("ORD-404")
		wrongAmount := paidEvent("ORD-1")
		wrongAmount.AmountCents = 1
		for _, c := range []struct {
			e    PaidEvent
			want error
		}{{unknown, ErrUnknownOrder}, {wrongAmount, ErrAmountMismatch}} {
			err := payInTx(t, db, c.e)
			require.ErrorIs(t, err, c.want)
			require.True(t, IsPermanent(err))
		}
		require.NoError(t, SetStock(context.Background(), db, "SKU-A", 1))
		err := payInTx(t, db, paidEvent("ORD-1"))
		require.ErrorIs(t, err, ErrOutOfStock)
		require.False(t, IsPermanent(err), "the order is paid and stock can come in")
		require.Equal(t, effects{Status: StatusCreated, Stock: 1}, readEffects(t, db, "ORD-1"))
	})
}

func TestNaivePay(t *testing.T) {
	t.Run("skips an order that is already paid", func(t *testing.T) {
		db := setup(t)
		applied, err := NaivePay(context.Background(), db, paidEvent("ORD-1"), "m1")
		require.NoError(t, err)
		require.True(t, applied)
		applied, err = NaivePay(context.Background(), db, paidEvent("ORD-1"), "m2")
		require.NoError(t, err)
		require.False(t, applied)
		require.Equal(t, 1, readEffects(t, db, "ORD-1").LedgerRows)
	})
	t.Run("two deliveries that check before either commits both pay", func(t *testing.T) {
		// The interleaving that concurrent consumers produce by chance, made deterministic:
		// both transactions read the order, then both apply the payment.
		db := setup(t)
		ctx := context.Background()
		e := paidEvent("ORD-1")
		tx1, err := db.Beginx()
		require.NoError(t, err)
		defer tx1.Rollback()
		tx2, err := db.Beginx()
		require.NoError(t, err)
		defer tx2.Rollback()
		for i, tx := range []*sqlx.Tx{tx1, tx2} {
			paid, err := isPaidTx(ctx, tx, e.OrderNo)
			require.NoError(t, err)
			require.False(t, paid, "tx%d", i+1)
		}
		for i, tx := range []*sqlx.Tx{tx1, tx2} {
			require.NoError(t, PayTx(ctx, tx, e, fmt.Sprint("m", i+1)))
			require.NoError(t, tx.Commit())
		}
		require.Equal(t, effects{Status: StatusPaid, Stock: 6, LedgerRows: 2, LedgerCents: 3000}, readEffects(t, db, "ORD-1"))
	})
}
