package outbox

import (
	"context"
	"database/sql"
	"errors"
	"slices"
	"testing"

	"github.com/go-sql-driver/mysql"
	"github.com/jmoiron/sqlx"
	"github.com/stretchr/testify/require"
)

// TestLocksNeverBlockEnqueue: the relay's round and the cleanup of kept rows run in READ
// COMMITTED transactions that lock only the rows and shards they use, so an Enqueue in another
// session never waits for them, even when a row they look for was deleted meanwhile at the end
// of the table. The enqueuing session waits at most one second for a lock
// (innodb_lock_wait_timeout=1), so a wait would fail it. The control shows that the test can
// tell: a naive relay's "SELECT ... FOR UPDATE" of the pending rows under REPEATABLE READ locks
// the gap at the end of the table, and Enqueue waits for it, on MySQL and MariaDB alike.
// (Under REPEATABLE READ, MariaDB 10.11 also blocks Enqueue with the cleanup's DELETE when a row
// it names is gone; MySQL 9.7 does not.)
func TestLocksNeverBlockEnqueue(t *testing.T) {
	ctx := context.Background()

	// setup makes five rows (kept, sent two hours ago, when kept is true) and deletes the last,
	// as another relay would have; it returns the ids, newest first, and a session that
	// enqueues with a 1s lock wait timeout.
	setup := func(t *testing.T, kept bool) (*sqlx.DB, []uint64, func() error) {
		db, open := migratedDB(t)
		enqueuer := open(map[string]string{"innodb_lock_wait_timeout": "1"})
		ids := insertCommitted(t, db, "orders", 5)
		require.Equal(t, ids[0], slices.Max(ids))
		if kept {
			_, err := db.Exec("UPDATE " + Table + " SET sent_at = UTC_TIMESTAMP(6) - INTERVAL 2 HOUR")
			require.NoError(t, err)
		}
		_, err := db.Exec("DELETE FROM "+Table+" WHERE id = ?", ids[0])
		require.NoError(t, err)
		enqueue := func() error {
			tx, err := enqueuer.BeginTxx(ctx, nil)
			require.NoError(t, err)
			defer tx.Rollback()
			if err := Enqueue(ctx, tx, Message{Topic: "orders", Body: []byte("new")}); err != nil {
				return err
			}
			return tx.Commit()
		}
		return db, ids, enqueue
	}
	hold := func(t *testing.T, db *sqlx.DB, iso sql.IsolationLevel) *sqlx.Tx {
		tx, err := db.BeginTxx(ctx, &sql.TxOptions{Isolation: iso})
		require.NoError(t, err)
		t.Cleanup(func() { _ = tx.Rollback() })
		return tx
	}

	t.Run("relay round: shards locked, rows read and marked sent", func(t *testing.T) {
		db, ids, enqueue := setup(t, false)
		tx := hold(t, db, sql.LevelReadCommitted) // as round begins it
		locked, err := lockShards(ctx, tx, candidatesOf(t, tx, ids))
		require.NoError(t, err)
		require.NotEmpty(t, locked)
		rows, err := readRows(ctx, tx, ids) // ids[0] is gone
		require.NoError(t, err)
		require.Len(t, rows, 4)
		require.NoError(t, enqueue(), "Enqueue waited for the round's locks")
		r := &Relay{cfg: defaultRelayConfig()}
		require.NoError(t, r.markSent(ctx, tx, ids[1:]))
		require.NoError(t, enqueue(), "Enqueue waited for the round's update")
	})

	t.Run("cleanup of sent rows", func(t *testing.T) {
		db, ids, enqueue := setup(t, true)
		tx := hold(t, db, sql.LevelReadCommitted) // as deleteSentBatch begins it
		n, err := deleteRows(ctx, tx, ids)
		require.NoError(t, err)
		require.EqualValues(t, 4, n)
		require.NoError(t, enqueue(), "Enqueue waited for the cleanup's delete")
	})

	t.Run("control: a naive relay's locking read under REPEATABLE READ blocks Enqueue", func(t *testing.T) {
		db, _, enqueue := setup(t, false)
		tx := hold(t, db, sql.LevelRepeatableRead)
		var got []uint64
		require.NoError(t, tx.Select(&got, "SELECT id FROM "+Table+" WHERE sent_at IS NULL ORDER BY id LIMIT 100 FOR UPDATE"))
		err := enqueue()
		var me *mysql.MySQLError
		require.True(t, errors.As(err, &me) && me.Number == 1205, "want a lock wait timeout, got %v", err)
	})
}

// TestRoundsNeverWait: two relays' rounds, each holding other shards, and an Enqueue whose
// transaction is still open never make a round wait, although the server scans the whole table
// for a statement naming half its rows (which it does on a small table): a round reads its rows
// without locks, and its UPDATE skips the locked rows that are not its own. (Reading them with
// FOR UPDATE, or deleting them, waits for every locked row the scan passes, and two relays
// deleting at once deadlock: both failed this test.)
func TestRoundsNeverWait(t *testing.T) {
	ctx := context.Background()
	db, open := migratedDB(t)
	other := open(map[string]string{"innodb_lock_wait_timeout": "1"})
	ids := insertCommitted(t, db, "orders", 400)
	var mine, theirs []uint64
	for _, c := range candidatesOf(t, db, ids) {
		if c.Shard%2 == 0 {
			mine = append(mine, c.ID)
		} else {
			theirs = append(theirs, c.ID)
		}
	}
	enq, err := open(nil).BeginTxx(ctx, nil)
	require.NoError(t, err)
	defer enq.Rollback()
	require.NoError(t, Enqueue(ctx, enq, Message{Topic: "orders", Body: []byte("not committed yet")}))

	r := &Relay{cfg: defaultRelayConfig()}
	round := func(db *sqlx.DB, ids []uint64) *sqlx.Tx {
		tx, err := db.BeginTxx(ctx, &sql.TxOptions{Isolation: sql.LevelReadCommitted})
		require.NoError(t, err)
		t.Cleanup(func() { _ = tx.Rollback() })
		rows, err := readRows(ctx, tx, ids)
		require.NoError(t, err)
		require.Len(t, rows, len(ids))
		require.NoError(t, r.markSent(ctx, tx, ids), "a round waited")
		return tx
	}
	tx1 := round(other, mine)
	tx2 := round(other, theirs)
	require.NoError(t, tx2.Commit())
	require.NoError(t, tx1.Commit())
	var marked int
	require.NoError(t, db.Get(&marked, "SELECT COUNT(*) FROM "+Table+" WHERE sent_at IS NOT NULL"))
	require.Equal(t, 400, marked)
}

// TestCleanupLoop: the cleanup that Run starts beside its rounds deletes exactly the rows marked
// sent, whatever their ids. Pending rows with ids below, between and above the sent ones stay,
// and so do the rows of an Enqueue whose transaction is still open (it took the lowest id and
// commits last, as AUTO_INCREMENT allows); that transaction, whose session waits at most one
// second for a lock, goes on enqueuing and commits while the cleanup runs. A cleanup that
// deleted ranges of ids, or the rows "up to the last one sent", fails this test, and so does one
// that held locks Enqueue waits for.
func TestCleanupLoop(t *testing.T) {
	ctx := context.Background()
	db, open := migratedDB(t)
	enqueuer := open(map[string]string{"innodb_lock_wait_timeout": "1"})
	openTx, err := enqueuer.BeginTxx(ctx, nil)
	require.NoError(t, err)
	defer openTx.Rollback()
	require.NoError(t, Enqueue(ctx, openTx, Message{Topic: "orders", Body: []byte("open, first")}))

	a := insertCommitted(t, db, "orders", 3)
	b := insertCommitted(t, db, "orders", 3)
	c := insertCommitted(t, db, "orders", 3)
	d := insertCommitted(t, db, "orders", 3)
	markSent := func(ids []uint64) {
		q, args, err := sqlx.In("UPDATE "+Table+" SET sent_at = UTC_TIMESTAMP(6) WHERE id IN (?)", ids)
		require.NoError(t, err)
		_, err = db.Exec(q, args...)
		require.NoError(t, err)
	}
	markSent(b)
	markSent(d)
	ids := func(where string) []uint64 {
		var got []uint64
		require.NoError(t, db.Select(&got, "SELECT id FROM "+Table+" WHERE "+where+" ORDER BY id DESC"))
		return got
	}

	r := &Relay{db: db, cfg: defaultRelayConfig()}
	cleanupCtx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		r.cleanupLoop(cleanupCtx)
	}()
	defer func() {
		stop()
		<-done
	}()

	waitFor(t, "the sent rows deleted", func() bool { return len(ids("sent_at IS NOT NULL")) == 0 })
	require.NoError(t, Enqueue(ctx, openTx, Message{Topic: "orders", Body: []byte("open, second")}),
		"Enqueue waited for the cleanup")
	require.NoError(t, openTx.Commit())
	opened := ids("body LIKE 'open, %'")
	require.Len(t, opened, 2)
	require.Less(t, opened[1], a[len(a)-1], "the open transaction's first row has the lowest id")
	require.Equal(t, slices.Concat(opened[:1], c, a, opened[1:]), ids("1"), "every pending row stays")

	// The loop goes on: rows marked later are deleted too, and still only they.
	markSent(c)
	waitFor(t, "the rows sent later deleted", func() bool { return len(ids("sent_at IS NOT NULL")) == 0 })
	require.Equal(t, slices.Concat(opened[:1], a, opened[1:]), ids("1"))
}
