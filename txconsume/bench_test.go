package txconsume_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/go-sql-driver/mysql"
	"github.com/jmoiron/sqlx"
	"github.com/stretchr/testify/require"

	"github.com/txconsume/txconsume/internal/testenv"
	"github.com/txconsume/txconsume/migrations"
	"github.com/txconsume/txconsume/txconsume"
)

// The benchmarks compare, on one database in one run, the Processor against the same handler
// in a bare transaction without deduplication: the difference is what exactly-once costs.
//
//	go test -run '^$' -bench . -benchtime 2s ./txconsume/
//
// Each runs with the DSN as given and with interpolateParams=true, which sends queries with
// their arguments inlined in one round trip instead of prepare + execute + close.
//
// The Processor runs on a pool opened with txconsume.Open, the default the documentation
// recommends; BenchmarkProtectionCost compares it with a plain pool.

var benchSeq atomic.Int64

// benchPools are a plain pool and a guarded one (txconsume.Open) on one fresh database.
type benchPools struct{ plain, guarded *sqlx.DB }

func benchDB(b *testing.B, params string) benchPools {
	b.Helper()
	dsn := testenv.DSNWithParams(testenv.MySQLDSN(b), params)
	db := testenv.OpenMySQL(b, dsn)
	guarded, err := txconsume.Open(dsn)
	require.NoError(b, err)
	guarded.SetMaxOpenConns(64)
	guarded.SetMaxIdleConns(64)
	b.Cleanup(func() { _ = guarded.Close() })
	ctx := context.Background()
	require.NoError(b, migrations.Up(ctx, db.DB))
	for _, ddl := range []string{
		`CREATE TABLE t_effect (
			id BIGINT AUTO_INCREMENT PRIMARY KEY, msg_key VARBINARY(255) NOT NULL, KEY (msg_key))`,
		`CREATE TABLE t_account (id INT PRIMARY KEY, balance BIGINT NOT NULL)`,
		`CREATE TABLE t_stock (sku INT PRIMARY KEY, qty BIGINT NOT NULL)`,
		`CREATE TABLE t_ledger (id BIGINT AUTO_INCREMENT PRIMARY KEY, msg_key VARBINARY(255) NOT NULL,
			account INT NOT NULL, amount BIGINT NOT NULL, KEY (msg_key))`,
	} {
		_, err := db.ExecContext(ctx, ddl)
		require.NoError(b, err)
	}
	for i := 0; i < benchRows; i++ {
		_, err := db.ExecContext(ctx, "INSERT INTO t_account VALUES (?, 0)", i)
		require.NoError(b, err)
		_, err = db.ExecContext(ctx, "INSERT INTO t_stock VALUES (?, 1000000000)", i)
		require.NoError(b, err)
	}
	return benchPools{plain: db, guarded: guarded}
}

// benchRows is how many accounts and stock rows the order handler spreads its updates over.
const benchRows = 1000

// orderHandler is a typical business handler, as in the order-service example: it credits an
// account, takes one item from stock and writes a ledger row.
func orderHandler(ctx context.Context, tx *sqlx.Tx, m *txconsume.Message) error {
	n, err := strconv.Atoi(strings.TrimPrefix(m.ID, "bench-"))
	if err != nil {
		return err
	}
	row := n % benchRows
	if _, err := tx.ExecContext(ctx, "UPDATE t_account SET balance = balance + 100 WHERE id = ?", row); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, "UPDATE t_stock SET qty = qty - 1 WHERE sku = ?", row); err != nil {
		return err
	}
	_, err = tx.ExecContext(ctx, "INSERT INTO t_ledger (msg_key, account, amount) VALUES (?, ?, 100)", m.ID, row)
	return err
}

var benchHandlers = []struct {
	name string
	h    txconsume.Handler
}{
	{"handler=insert", benchHandler},
	{"handler=order", orderHandler},
}

var errBench = errors.New("bench: this message fails")

// benchHandler is a small, realistic handler: one insert.
func benchHandler(ctx context.Context, tx *sqlx.Tx, m *txconsume.Message) error {
	_, err := tx.ExecContext(ctx, "INSERT INTO t_effect (msg_key) VALUES (?)", m.ID)
	return err
}

func nextMsg() *txconsume.Message {
	return &txconsume.Message{ID: "bench-" + strconv.FormatInt(benchSeq.Add(1), 10), Topic: "bench"}
}

func bareTx(ctx context.Context, db *sqlx.DB, h txconsume.Handler, msgs []*txconsume.Message) error {
	tx, err := db.BeginTxx(ctx, nil)
	if err != nil {
		return err
	}
	for _, m := range msgs {
		if err := h(ctx, tx, m); err != nil {
			_ = tx.Rollback()
			return err
		}
	}
	return tx.Commit()
}

var benchDSNs = []struct{ name, params string }{
	{"dsn=plain", "interpolateParams=false"}, // whatever the DSN given says
	{"dsn=interpolate", "interpolateParams=true"},
}

func BenchmarkPerMessage(b *testing.B) {
	if testing.Short() {
		b.Skip("-short: needs MySQL")
	}
	ctx := context.Background()
	for _, h := range benchHandlers {
		for _, d := range benchDSNs {
			for _, conc := range []int{1, 16} {
				benchPerMessage(ctx, b, h.name+"/"+d.name, h.h, d.params, conc)
			}
		}
	}
}

func benchPerMessage(ctx context.Context, b *testing.B, label string, h txconsume.Handler, params string, conc int) {
	pools := benchDB(b, params)
	db := pools.plain
	p, err := txconsume.New(pools.guarded, "bench", h)
	require.NoError(b, err)
	run := func(b *testing.B, fn func() error) { testenv.RunParallel(b, conc, 1, fn) }
	name := fmt.Sprintf("%s/conc=%d", label, conc)
	b.Run(name+"/bare", func(b *testing.B) {
		run(b, func() error { return bareTx(ctx, db, h, []*txconsume.Message{nextMsg()}) })
	})
	// The bare transaction plus the claim's INSERT, run by hand: what the server spends on the
	// dedup row, without any of the Processor's code. Process can at best match it.
	b.Run(name+"/bare-with-claim-row", func(b *testing.B) {
		run(b, func() error { return bareTx(ctx, db, withClaimRow(h), []*txconsume.Message{nextMsg()}) })
	})
	b.Run(name+"/process", func(b *testing.B) {
		run(b, func() error {
			r, err := p.Process(ctx, nextMsg())
			if err == nil && r != txconsume.Applied {
				err = fmt.Errorf("result %v", r)
			}
			return err
		})
	})
}

// withClaimRow runs the claim's INSERT (as Process writes it) before h, in h's transaction.
func withClaimRow(h txconsume.Handler) txconsume.Handler {
	return func(ctx context.Context, tx *sqlx.Tx, m *txconsume.Message) error {
		if _, err := tx.ExecContext(ctx, "INSERT INTO "+txconsume.DedupTable+
			" (consumer_group, dedup_key, topic, msg_id, outcome, claim_token) VALUES (?, ?, ?, ?, ?, ?)",
			"bench-by-hand", m.ID, m.Topic, m.ID, txconsume.OutcomeApplied, 7); err != nil {
			return err
		}
		return h(ctx, tx, m)
	}
}

// bareBatchWithClaims is a bare batch transaction plus the batch claim, run by hand: the
// multi-row INSERT of every key (when all keys are new, as here, nothing is read back).
func bareBatchWithClaims(ctx context.Context, db *sqlx.DB, h txconsume.Handler, msgs []*txconsume.Message) error {
	tx, err := db.BeginTxx(ctx, nil)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback() }()
	q := "INSERT INTO " + txconsume.DedupTable + " (consumer_group, dedup_key, topic, msg_id, outcome, claim_token) VALUES "
	args := []any{}
	for i, m := range msgs {
		if i > 0 {
			q += ", "
		}
		q += "(?, ?, ?, ?, ?, ?)"
		args = append(args, "bench-by-hand", m.ID, m.Topic, m.ID, txconsume.OutcomeApplied, 7)
	}
	q += " ON DUPLICATE KEY UPDATE claim_token = IF(claim_token = 0, 2, 0)"
	if _, err := tx.ExecContext(ctx, q, args...); err != nil {
		return err
	}
	for _, m := range msgs {
		if err := h(ctx, tx, m); err != nil {
			return err
		}
	}
	return tx.Commit()
}

func BenchmarkBatch32(b *testing.B) {
	if testing.Short() {
		b.Skip("-short: needs MySQL")
	}
	ctx := context.Background()
	const size = 32
	batch := func() []*txconsume.Message {
		ms := make([]*txconsume.Message, size)
		for i := range ms {
			ms[i] = nextMsg()
		}
		return ms
	}
	for _, d := range benchDSNs {
		pools := benchDB(b, d.params)
		db := pools.plain
		p, err := txconsume.New(pools.guarded, "bench", benchHandler)
		require.NoError(b, err)
		report := func(b *testing.B) {
			b.ReportMetric(float64(b.N*size)/b.Elapsed().Seconds(), "msgs/s")
		}
		b.Run(d.name+"/bare", func(b *testing.B) {
			for b.Loop() {
				if err := bareTx(ctx, db, benchHandler, batch()); err != nil {
					b.Fatal(err)
				}
			}
			report(b)
		})
		b.Run(d.name+"/bare-with-claim-rows", func(b *testing.B) {
			for b.Loop() {
				if err := bareBatchWithClaims(ctx, db, benchHandler, batch()); err != nil {
					b.Fatal(err)
				}
			}
			report(b)
		})
		b.Run(d.name+"/process-batch", func(b *testing.B) {
			for b.Loop() {
				if _, err := p.ProcessBatch(ctx, batch()); err != nil {
					b.Fatal(err)
				}
			}
			report(b)
		})
		// One message in the middle of every batch fails: the price of the fallback, an
		// optimistic run up to the failure plus a run of the whole batch with savepoints.
		failing, err := txconsume.New(pools.guarded, "bench", func(ctx context.Context, tx *sqlx.Tx, m *txconsume.Message) error {
			if err := benchHandler(ctx, tx, m); err != nil {
				return err
			}
			if m.Properties["fail"] != "" {
				return errBench
			}
			return nil
		})
		require.NoError(b, err)
		b.Run(d.name+"/process-batch-one-fails", func(b *testing.B) {
			for b.Loop() {
				ms := batch()
				ms[size/2].Properties = map[string]string{"fail": "1"}
				if _, err := failing.ProcessBatch(ctx, ms); !errors.Is(err, errBench) {
					b.Fatal(err)
				}
			}
			report(b)
		})
		b.Run(d.name+"/process-each", func(b *testing.B) {
			for b.Loop() {
				for _, m := range batch() {
					if _, err := p.Process(ctx, m); err != nil {
						b.Fatal(err)
					}
				}
			}
			report(b)
		})
	}
}

// rowLockHandler is a handler written for row-lock mode: it locks its business row, looks for its
// own effect, and reports ErrAlreadyApplied when it finds it.
func rowLockHandler(ctx context.Context, tx *sqlx.Tx, m *txconsume.Message) error {
	n, err := strconv.Atoi(strings.TrimPrefix(m.ID, "bench-"))
	if err != nil {
		return err
	}
	row := n % benchRows
	var balance int64
	if err := tx.GetContext(ctx, &balance, "SELECT balance FROM t_account WHERE id = ? FOR UPDATE", row); err != nil {
		return err
	}
	var seen int
	if err := tx.GetContext(ctx, &seen, "SELECT COUNT(*) FROM t_ledger WHERE msg_key = ?", m.ID); err != nil {
		return err
	}
	if seen > 0 {
		return txconsume.ErrAlreadyApplied
	}
	if _, err := tx.ExecContext(ctx, "UPDATE t_account SET balance = balance + 100 WHERE id = ?", row); err != nil {
		return err
	}
	_, err = tx.ExecContext(ctx, "INSERT INTO t_ledger (msg_key, account, amount) VALUES (?, ?, 100)", m.ID, row)
	return err
}

// BenchmarkRowLock compares row-lock mode (no dedup table: the handler's own lock and check)
// with the same handler in a bare transaction, at 16 goroutines.
func BenchmarkRowLock(b *testing.B) {
	if testing.Short() {
		b.Skip("-short: needs MySQL")
	}
	ctx := context.Background()
	pools := benchDB(b, "interpolateParams=true")
	db := pools.plain
	p, err := txconsume.New(pools.guarded, "bench", rowLockHandler, txconsume.WithRowLock())
	require.NoError(b, err)
	const conc = 16
	run := func(b *testing.B, fn func() error) { testenv.RunParallel(b, conc, 1, fn) }
	b.Run("dsn=interpolate/conc=16/bare", func(b *testing.B) {
		run(b, func() error { return bareTx(ctx, db, rowLockHandler, []*txconsume.Message{nextMsg()}) })
	})
	b.Run("dsn=interpolate/conc=16/row-lock", func(b *testing.B) {
		run(b, func() error {
			r, err := p.Process(ctx, nextMsg())
			if err == nil && r != txconsume.Applied {
				err = fmt.Errorf("result %v", r)
			}
			return err
		})
	})
}

// contentionHandler returns a handler that credits one of rows accounts (the message's number,
// scrambled, modulo rows) and writes a ledger row. With 20 rows (a popular product's stock, a
// merchant's balance) concurrent batches collide; with 1000 they rarely do.
func contentionHandler(rows int) txconsume.Handler {
	return func(ctx context.Context, tx *sqlx.Tx, m *txconsume.Message) error {
		n, err := strconv.Atoi(strings.TrimPrefix(m.ID, "bench-"))
		if err != nil {
			return err
		}
		// Scrambled, so that the rows of consecutive messages come in no order: a batch locks its
		// rows in an order of its own, as hot rows in real traffic do.
		x := uint64(n)
		x ^= x >> 33
		x *= 0xff51afd7ed558ccd
		x ^= x >> 33
		row := int(x % uint64(rows))
		if _, err := tx.ExecContext(ctx, "UPDATE t_account SET balance = balance + 100 WHERE id = ?", row); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, "INSERT INTO t_ledger (msg_key, account, amount) VALUES (?, ?, 100)", m.ID, row)
		return err
	}
}

// BenchmarkRowContention compares, at 16 goroutines on 20 hot rows and on 1000 cold ones, one
// message per transaction (bare, with the retry a hand-written consumer needs, and Process) with
// ProcessBatch of 16: batches of hot-row messages deadlock with each other, and ProcessBatch
// splits the transactions that lose.
func BenchmarkRowContention(b *testing.B) {
	if testing.Short() {
		b.Skip("-short: needs MySQL")
	}
	ctx := context.Background()
	pools := benchDB(b, "interpolateParams=true")
	db := pools.plain
	const conc, size = 16, 16
	run := func(b *testing.B, perOp int, fn func() error) { testenv.RunParallel(b, conc, perOp, fn) }
	for _, rows := range []int{20, benchRows} {
		h := contentionHandler(rows)
		p, err := txconsume.New(pools.guarded, "bench", h)
		require.NoError(b, err)
		name := fmt.Sprintf("rows=%d/conc=%d", rows, conc)
		b.Run(name+"/bare", func(b *testing.B) {
			run(b, 1, func() error {
				m := nextMsg()
				for {
					// A hand-written consumer's transaction, retried on a lock conflict.
					err := bareTx(ctx, db, h, []*txconsume.Message{m})
					if !isLockConflict(err) {
						return err
					}
				}
			})
		})
		b.Run(name+"/process", func(b *testing.B) {
			run(b, 1, func() error {
				_, err := p.Process(ctx, nextMsg())
				return err
			})
		})
		b.Run(fmt.Sprintf("%s/process-batch-%d", name, size), func(b *testing.B) {
			run(b, size, func() error {
				ms := make([]*txconsume.Message, size)
				for i := range ms {
					ms[i] = nextMsg()
				}
				_, err := p.ProcessBatch(ctx, ms)
				return err
			})
		})
	}
}

func isLockConflict(err error) bool {
	var me *mysql.MySQLError
	return errors.As(err, &me) && (me.Number == 1213 || me.Number == 1205)
}
