package order

import (
	"context"
	"fmt"

	"github.com/jmoiron/sqlx"
)

// NaivePay is the deduplication the article starts from, written without txconsume so the
// demo can show what it lets through. Do not copy it.
//
// It reads the order, returns (false, nil) if it is already paid, and otherwise runs PayTx
// and commits. The read and the write are in one transaction, but that does not help: the read
// is a plain consistent read that takes no lock, so two deliveries of one payment that run at
// the same time both see CREATED, both pay, and the second one's UPDATEs simply wait for the
// first one's commit and then apply again. Adding FOR UPDATE to the read would serialise
// them, but then every consumer must know which row to lock; txconsume's dedup record works
// for any handler.
func NaivePay(ctx context.Context, db *sqlx.DB, e PaidEvent, msgID string) (applied bool, err error) {
	tx, err := db.BeginTxx(ctx, nil)
	if err != nil {
		return false, err
	}
	defer tx.Rollback()
	paid, err := isPaidTx(ctx, tx, e.OrderNo)
	if err != nil || paid {
		return false, err
	}
	if err := PayTx(ctx, tx, e, msgID); err != nil {
		return false, err
	}
	return true, tx.Commit()
}

// isPaidTx is the "SELECT ... if (order != null) return" check.
func isPaidTx(ctx context.Context, tx *sqlx.Tx, orderNo string) (bool, error) {
	var status string
	if err := tx.GetContext(ctx, &status, "SELECT status FROM orders WHERE order_no = ?", orderNo); err != nil {
		return false, fmt.Errorf("order: read %s: %w", orderNo, err)
	}
	return status == StatusPaid, nil
}
