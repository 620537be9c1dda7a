package outbox

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/jmoiron/sqlx"
)

// deleteSentBatch deletes up to batch rows that were sent more than retention ago and reports
// how many it deleted and whether more may be waiting.
//
// It never blocks Enqueue. The ids are read with a plain SELECT (no locks) and deleted by
// primary key in a READ COMMITTED transaction, which takes record locks on the rows it deletes
// and no gap locks: under REPEATABLE READ an id deleted meanwhile by another relay would leave
// a gap lock where it was, and when that gap is the end of the table every INSERT of Enqueue
// would wait for it. The DELETE checks sent_at again, so it deletes nothing that is pending.
func deleteSentBatch(ctx context.Context, db *sqlx.DB, retention time.Duration, batch int) (int64, bool, error) {
	var ids []uint64
	err := db.SelectContext(ctx, &ids, "SELECT id FROM "+Table+
		" WHERE sent_at < UTC_TIMESTAMP(6) - INTERVAL ? MICROSECOND ORDER BY sent_at LIMIT ?", retention.Microseconds(), batch)
	if err != nil {
		return 0, false, fmt.Errorf("outbox: select sent rows past the retention: %w", err)
	}
	if len(ids) == 0 {
		return 0, false, nil
	}
	tx, err := db.BeginTxx(ctx, &sql.TxOptions{Isolation: sql.LevelReadCommitted})
	if err != nil {
		return 0, false, fmt.Errorf("outbox: cleanup: %w", err)
	}
	defer func() { _ = tx.Rollback() }()
	n, err := deleteSent(ctx, tx, retention, ids)
	if err != nil {
		return 0, false, err
	}
	if err := tx.Commit(); err != nil {
		return 0, false, fmt.Errorf("outbox: cleanup: %w", err)
	}
	return n, len(ids) == batch, nil
}

// deleteSent deletes the rows of ids that are still sent more than retention ago.
func deleteSent(ctx context.Context, tx *sqlx.Tx, retention time.Duration, ids []uint64) (int64, error) {
	args := make([]any, 0, len(ids)+1)
	args = append(args, retention.Microseconds())
	for _, id := range ids {
		args = append(args, id)
	}
	res, err := tx.ExecContext(ctx, "DELETE FROM "+Table+" WHERE sent_at < UTC_TIMESTAMP(6) - INTERVAL ? MICROSECOND AND id IN ("+
		placeholders(len(ids))+")", args...)
	if err != nil {
		return 0, fmt.Errorf("outbox: delete sent rows past the retention: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("outbox: delete sent rows past the retention: %w", err)
	}
	return n, nil
}
