package txconsume_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/jmoiron/sqlx"

	"github.com/txconsume/txconsume/migrations"
	"github.com/txconsume/txconsume/txconsume"
)

// A handler reports a poison message with Discard, and asks for a later redelivery with
// RetryAfter; the transport adapter reads the delay back.
func ExampleDiscard() {
	err := txconsume.Discard(errors.New("body is not JSON"))
	fmt.Println(err, txconsume.IsDiscard(err))

	retry := fmt.Errorf("charge: %w", txconsume.RetryAfter(30*time.Second, errors.New("payment service down")))
	d, ok := txconsume.RetryDelay(retry)
	fmt.Println(d, ok)
	// Output:
	// txconsume: discarded: body is not JSON true
	// 30s true
}

// Key funcs choose what identifies "the same message".
func ExampleKeyByProperty() {
	msg := &txconsume.Message{
		ID:         "7F0000010001",
		Keys:       []string{"order-42"},
		Properties: map[string]string{"idempotency-key": "pay-42-1"},
	}
	byID, _ := txconsume.KeyByID(msg)
	byKey, _ := txconsume.KeyByFirstKey(msg)
	byProp, _ := txconsume.KeyByProperty("idempotency-key")(msg)
	fmt.Println(byID, byKey, byProp)

	_, err := txconsume.KeyByProperty("missing")(msg)
	fmt.Println(errors.Is(err, txconsume.ErrEmptyKey))
	// Output:
	// 7F0000010001 order-42 pay-42-1
	// true
}

func ExampleResult_String() {
	fmt.Println(txconsume.Applied, txconsume.Duplicate, txconsume.Discarded)
	// Output: applied duplicate discarded
}

// Keys longer than the column are stored hashed; short keys are stored as they are.
func ExampleStoredKey() {
	fmt.Println(txconsume.StoredKey("order-42"))
	long := txconsume.StoredKey(string(make([]byte, 300)))
	fmt.Println(long[:8], len(long))
	// Output:
	// order-42
	// #sha256: 72
}

// Which messages of a batch failed, and which were committed.
func ExampleBatchError() {
	var err error = &txconsume.BatchError{Failures: []txconsume.BatchFailure{
		{Index: 2, MessageID: "m-3", Err: errors.New("constraint violated")},
	}}
	var be *txconsume.BatchError
	if errors.As(err, &be) {
		for i := range 4 {
			fmt.Println(i, be.Failed(i) == nil)
		}
	}
	// Output:
	// 0 true
	// 1 true
	// 2 false
	// 3 true
}

// A complete consumer: migrate, build the Processor, process deliveries.
func ExampleNew() {
	ctx := context.Background()
	// Open's pool keeps a handler's mistakes from committing at no cost; any *sqlx.DB works too.
	db, err := txconsume.Open("app:secret@tcp(127.0.0.1:3306)/shop?interpolateParams=true")
	if err != nil {
		panic(err)
	}
	if err := migrations.Up(ctx, db.DB); err != nil {
		panic(err)
	}
	type orderPaid struct{ OrderNo string }
	p, err := txconsume.New(db, "shop-payments", func(ctx context.Context, tx *sqlx.Tx, m *txconsume.Message) error {
		var ev orderPaid
		if err := json.Unmarshal(m.Body, &ev); err != nil {
			return txconsume.Discard(err)
		}
		_, err := tx.ExecContext(ctx, "UPDATE orders SET status = 'PAID' WHERE order_no = ?", ev.OrderNo)
		return err
	}, txconsume.WithIsolation(sql.LevelReadCommitted))
	if err != nil {
		panic(err)
	}
	r, err := p.Process(ctx, &txconsume.Message{ID: "7F0000010001", Body: []byte(`{"OrderNo":"42"}`)})
	if err != nil {
		return // not acknowledged: the broker redelivers
	}
	fmt.Println(r)
}

// Connector wraps a connector built from a mysql.Config, for a pool configured in code.
func ExampleConnector() {
	cfg := mysql.NewConfig()
	cfg.User, cfg.Passwd, cfg.Net, cfg.Addr, cfg.DBName = "app", "secret", "tcp", "127.0.0.1:3306", "shop"
	cfg.InterpolateParams = true
	connector, err := mysql.NewConnector(cfg)
	if err != nil {
		panic(err)
	}
	db := sqlx.NewDb(sql.OpenDB(txconsume.Connector(connector)), "mysql")
	defer db.Close()
	db.SetMaxOpenConns(32) // more than the deliveries in flight
}

// Row-lock mode: the order's own status proves whether the message was applied.
func ExampleWithRowLock() {
	var db *sqlx.DB // an open pool
	_, _ = txconsume.New(db, "shop-payments", func(ctx context.Context, tx *sqlx.Tx, m *txconsume.Message) error {
		var status string
		if err := tx.GetContext(ctx, &status, "SELECT status FROM t_order WHERE order_no = ? FOR UPDATE", m.Keys[0]); err != nil {
			return err
		}
		if status == "PAID" {
			return txconsume.ErrAlreadyApplied
		}
		_, err := tx.ExecContext(ctx, "UPDATE t_order SET status = 'PAID' WHERE order_no = ?", m.Keys[0])
		return err
	}, txconsume.WithRowLock())
}
