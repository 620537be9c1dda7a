package txconsume_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

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
			account INT NOT NULL, amount BIGINT NOT NULL)`,
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
	run := func(b *testing.B, fn func() error) {
		// RunParallel starts GOMAXPROCS*parallelism goroutines: round up to conc.
		procs := runtime.GOMAXPROCS(0)
		b.SetParallelism((conc + procs - 1) / procs)
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if err := fn(); err != nil {
					b.Error(err)
					return
				}
			}
		})
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
	}
	name := fmt.Sprintf("%s/conc=%d", label, conc)
	b.Run(name+"/bare", func(b *testing.B) {
		run(b, func() error { return bareTx(ctx, db, h, []*txconsume.Message{nextMsg()}) })
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
