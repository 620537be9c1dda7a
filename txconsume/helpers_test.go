package txconsume_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/txconsume/txconsume/internal/testenv"
	"github.com/txconsume/txconsume/migrations"
	"github.com/txconsume/txconsume/txconsume"
)

func TestMain(m *testing.M) {
	// database/sql pools start goroutines; every pool a test opens must be closed by its end.
	goleak.VerifyTestMain(testenv.M(m),
		// the RocketMQ client, linked in through testenv, starts a cache janitor at init.
		goleak.IgnoreTopFunction("github.com/patrickmn/go-cache.(*janitor).Run"))
}

// fixture is a fresh, migrated database with a t_effect table in which handlers record their
// effects, so tests count effects with SQL rather than trusting return values.
type fixture struct {
	t   *testing.T
	dsn string
	db  *sqlx.DB
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	if testing.Short() {
		t.Skip("integration test: needs MySQL (run without -short)")
	}
	dsn := testenv.MySQLDSN(t)
	db := testenv.OpenMySQL(t, dsn)
	ctx := context.Background()
	require.NoError(t, migrations.Up(ctx, db.DB))
	// msg_key is not unique on purpose: a double apply shows up as two rows.
	_, err := db.ExecContext(ctx, `CREATE TABLE t_effect (
		id BIGINT AUTO_INCREMENT PRIMARY KEY,
		msg_key VARBINARY(255) NOT NULL,
		KEY (msg_key))`)
	require.NoError(t, err)
	_, err = db.ExecContext(ctx, `CREATE TABLE t_counter (name VARCHAR(16) PRIMARY KEY, n BIGINT NOT NULL)`)
	require.NoError(t, err)
	_, err = db.ExecContext(ctx, `INSERT INTO t_counter VALUES ('x', 0), ('y', 0)`)
	require.NoError(t, err)
	_, err = db.ExecContext(ctx, `CREATE TABLE t_order (
		order_no VARCHAR(32) PRIMARY KEY,
		status VARCHAR(16) NOT NULL)`)
	require.NoError(t, err)
	return &fixture{t: t, dsn: dsn, db: db}
}

// pool opens another connection pool on the same database: a second service instance.
// params are added to the DSN as session variables or driver settings.
func (f *fixture) pool(params string) *sqlx.DB {
	return testenv.OpenMySQL(f.t, testenv.DSNWithParams(f.dsn, params))
}

// guardedPool opens a pool through txconsume.Open, whose driver refuses what a handler must not
// do; params as for pool.
func (f *fixture) guardedPool(params string) *sqlx.DB {
	f.t.Helper()
	db, err := txconsume.Open(testenv.DSNWithParams(f.dsn, params))
	require.NoError(f.t, err)
	db.SetMaxOpenConns(64)
	db.SetMaxIdleConns(64)
	f.t.Cleanup(func() { _ = db.Close() })
	require.NoError(f.t, db.Ping())
	return db
}

func (f *fixture) processor(db *sqlx.DB, group string, h txconsume.Handler, opts ...txconsume.Option) *txconsume.Processor {
	f.t.Helper()
	if db == nil {
		db = f.db
	}
	p, err := txconsume.New(db, group, h, opts...)
	require.NoError(f.t, err)
	return p
}

// effects counts the rows the handlers wrote for key.
func (f *fixture) effects(key string) int {
	f.t.Helper()
	var n int
	require.NoError(f.t, f.db.Get(&n, "SELECT COUNT(*) FROM t_effect WHERE msg_key = ?", key))
	return n
}

func (f *fixture) totalEffects() int {
	f.t.Helper()
	var n int
	require.NoError(f.t, f.db.Get(&n, "SELECT COUNT(*) FROM t_effect"))
	return n
}

// outcome returns the stored outcome of key in group, or "" when no row exists.
func (f *fixture) outcome(group, key string) string {
	f.t.Helper()
	var o string
	err := f.db.Get(&o, "SELECT outcome FROM txconsume_dedup WHERE consumer_group = ? AND dedup_key = ?",
		group, txconsume.StoredKey(key))
	if errors.Is(err, sql.ErrNoRows) {
		return ""
	}
	require.NoError(f.t, err)
	return o
}

func (f *fixture) dedupRows() int {
	f.t.Helper()
	var n int
	require.NoError(f.t, f.db.Get(&n, "SELECT COUNT(*) FROM txconsume_dedup"))
	return n
}

// waitForStatements blocks until n sessions of this test's database are executing a statement
// that starts with prefix (proof that they really run at the same time, e.g. all queued behind
// one transaction's lock), or fails after a generous deadline. It reads the process list rather
// than information_schema.innodb_trx, which on MariaDB does not list every waiting transaction.
func waitForStatements(ctx context.Context, db *sqlx.DB, prefix string, n int) error {
	deadline := time.Now().Add(time.Minute)
	for {
		var got int
		err := db.GetContext(ctx, &got, `SELECT COUNT(*) FROM information_schema.processlist
			WHERE db = DATABASE() AND info LIKE CONCAT(?, '%')`, prefix)
		if err != nil {
			return err
		}
		if got >= n {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("only %d of %d sessions executing %q", got, n, prefix)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitForClaimers waits until n sessions are executing the single-message claim INSERT.
func waitForClaimers(ctx context.Context, db *sqlx.DB, n int) error {
	return waitForStatements(ctx, db, "INSERT INTO txconsume_dedup", n)
}

// recordEffect is the usual handler body: one row per application of the message.
func recordEffect(ctx context.Context, tx *sqlx.Tx, msg *txconsume.Message) error {
	_, err := tx.ExecContext(ctx, "INSERT INTO t_effect (msg_key) VALUES (?)", msg.ID)
	return err
}

// counting wraps a handler and counts its calls.
type counting struct {
	mu    sync.Mutex
	calls map[string]int
	h     txconsume.Handler
}

func count(h txconsume.Handler) *counting { return &counting{calls: map[string]int{}, h: h} }

func (c *counting) handle(ctx context.Context, tx *sqlx.Tx, msg *txconsume.Message) error {
	c.mu.Lock()
	c.calls[msg.ID]++
	c.mu.Unlock()
	return c.h(ctx, tx, msg)
}

func (c *counting) n(id string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.calls[id]
}

// runConcurrently starts n goroutines that call fn(i) at once and waits for all.
func runConcurrently(n int, fn func(i int)) {
	var start, done sync.WaitGroup
	start.Add(1)
	for i := 0; i < n; i++ {
		done.Add(1)
		go func() {
			defer done.Done()
			start.Wait()
			fn(i)
		}()
	}
	start.Done()
	done.Wait()
}

func msg(id string) *txconsume.Message {
	return &txconsume.Message{ID: id, Topic: "orders", Body: []byte("{}")}
}

// crossingUpdates returns a handler that provokes a real deadlock between messages "A" and "B"
// (see crossing). Other messages only record their effect.
func crossingUpdates() txconsume.Handler {
	c := newCrossing()
	return func(ctx context.Context, tx *sqlx.Tx, m *txconsume.Message) error {
		if m.ID == "A" || m.ID == "B" {
			if err := c.updates(ctx, tx, m.ID, func(err error) error { return err }); err != nil {
				return err
			}
		}
		return recordEffect(ctx, tx, m)
	}
}

// crossing makes messages "A" and "B" deadlock for certain: A updates counter x then y, B
// updates y then x, and on their first attempt each waits after its first update until the
// other has made its own, so the second updates cross and InnoDB must pick a victim. Later
// attempts do not wait.
type crossing struct {
	crossed  sync.WaitGroup
	attempts sync.Map // message id -> *atomic.Int32
}

func newCrossing() *crossing {
	c := &crossing{}
	c.crossed.Add(2)
	return c
}

// updates runs id's two updates ("A" or "B"); the second one's error goes through onSecond, which
// returns what updates returns.
func (c *crossing) updates(ctx context.Context, tx *sqlx.Tx, id string, onSecond func(error) error) error {
	first, second := "x", "y"
	if id == "B" {
		first, second = "y", "x"
	}
	n, _ := c.attempts.LoadOrStore(id, new(atomic.Int32))
	attempt := n.(*atomic.Int32).Add(1)
	if _, err := tx.ExecContext(ctx, "UPDATE t_counter SET n = n + 1 WHERE name = ?", first); err != nil {
		return err
	}
	if attempt == 1 {
		c.crossed.Done()
		c.crossed.Wait()
	}
	_, err := tx.ExecContext(ctx, "UPDATE t_counter SET n = n + 1 WHERE name = ?", second)
	return onSecond(err)
}
