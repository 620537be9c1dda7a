package outbox

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"time"

	"github.com/jmoiron/sqlx"
)

// deleteSentBatch deletes up to batch rows that were sent more than retention ago and reports
// how many it deleted and whether more may be waiting.
//
// It never blocks Enqueue, nor a relay. The ids are read with a plain SELECT (no locks) and
// deleted by primary key alone in a READ COMMITTED transaction, which locks exactly the rows it
// deletes and takes no gap locks: under REPEATABLE READ an id deleted meanwhile by another relay
// would leave a gap lock where it was, and when that gap is the end of the table every INSERT of
// Enqueue would wait for it; and a DELETE that also named sent_at could be run through the
// pending index, locking entries of rows the relays are marking. Naming the ids alone is safe: a
// row's sent_at never changes once set, and ids are never used again.
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
	n, err := deleteRows(ctx, tx, ids)
	if err != nil {
		return 0, false, err
	}
	if err := tx.Commit(); err != nil {
		return 0, false, fmt.Errorf("outbox: cleanup: %w", err)
	}
	return n, len(ids) == batch, nil
}

// deleteRows deletes the rows of ids.
//
// The ids are joined in from a JSON_TABLE, in that order (STRAIGHT_JOIN), so that each row is
// found by primary key (eq_ref) whatever the table's size. "DELETE ... WHERE id IN (...)" is
// not: on a small table MariaDB scans it instead (MySQL ranges over the ids), and a scanning
// DELETE waits for every row it passes that another transaction holds, the rows of an Enqueue
// whose transaction is still open among them; a long business transaction would stall the
// cleanup, which holds the rows it has deleted meanwhile.
const deleteRowsSQL = "DELETE o FROM JSON_TABLE(?, '$[*]' COLUMNS (id BIGINT UNSIGNED PATH '$')) AS d " +
	"STRAIGHT_JOIN " + Table + " AS o ON o.id = d.id"

func deleteRows(ctx context.Context, tx *sqlx.Tx, ids []uint64) (int64, error) {
	list, err := json.Marshal(ids)
	if err != nil {
		return 0, err
	}
	res, err := tx.ExecContext(ctx, deleteRowsSQL, string(list))
	if err != nil {
		return 0, fmt.Errorf("outbox: delete sent rows past the retention: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("outbox: delete sent rows past the retention: %w", err)
	}
	return n, nil
}
