// Package dedupsize measures how the claim of a new key slows down as txconsume_dedup grows:
// Process with a one-insert handler and 16 workers, on an empty table and on tables filled with
// millions of rows of the same consumer group, for random keys (UUID-like business keys, as
// KeyByFirstKey sees them) and for keys like RocketMQ's UNIQ_KEY (increasing per producer).
//
// Beside them it measures the floor: the same transaction without txconsume, inserting a random
// 16-byte key into a table that holds nothing else, empty and filled to the same sizes. No claim
// table can be narrower than that, so when the floor slows down as much as the claims do, the cause
// is the server's cache (the index outgrew the buffer pool), not the dedup table's layout.
//
// Filling takes minutes for 10 million rows, so the filled databases are kept between runs and
// reused while their recipe (row count, key shape, schema version) is unchanged; the rows a run
// claims are deleted again at its end. `make bench-clean` drops them.
package dedupsize

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/txconsume/txconsume/bench/internal/benchenv"
	"github.com/txconsume/txconsume/bench/internal/report"
	"github.com/txconsume/txconsume/migrations"
	"github.com/txconsume/txconsume/txconsume"
)

// Suite is the name of the suite's rows.
const Suite = "dedup table size"

// Group is the consumer group of the filled rows and of the measured claims: one group, so that
// new keys land among the old ones (the primary key starts with the group).
const Group = "bench"

// DatabasePrefix names the kept databases: DatabasePrefix + row count.
const DatabasePrefix = "txconsume_bench_dedup_"

// Config sizes a run.
type Config struct {
	Sizes    []int         // rows in the table; 0 is an empty table, created afresh
	Duration time.Duration // per measurement
	Workers  int
	Repeats  int
	Log      func(format string, args ...any)
}

// recipeVersion changes whenever the fill below changes.
const recipeVersion = "fill-2"

// Run fills (or reuses) a database per size and measures claims on each.
func Run(ctx context.Context, cfg Config) ([]report.Row, error) {
	base, err := benchenv.BaseDSN()
	if err != nil {
		return nil, err
	}
	dbs := make([]*sqlx.DB, len(cfg.Sizes))
	for i, n := range cfg.Sizes {
		db, cleanup, err := prepare(ctx, base, n, cfg)
		if err != nil {
			return nil, err
		}
		defer cleanup()
		dbs[i] = db
	}
	var rows []report.Row
	for _, kind := range []string{"random", "uniq", "floor"} {
		label := map[string]string{"random": "random keys (UUID-like)", "uniq": "UNIQ_KEY-like keys",
			"floor": "floor: random 16-byte keys, no txconsume"}[kind]
		kindRows := make([]report.Row, len(cfg.Sizes))
		for i, n := range cfg.Sizes {
			kindRows[i] = report.Row{Suite: Suite, Case: fmt.Sprintf("%s, %s rows", label, count(n))}
			if i > 0 {
				kindRows[i].Baseline = kindRows[0].Case
			}
		}
		for r := range cfg.Repeats {
			for i, db := range dbs {
				measureKind := measure
				if kind == "floor" {
					measureKind = measureFloor
				}
				rate, err := measureKind(ctx, db, kind, cfg)
				if err != nil {
					return nil, err
				}
				cfg.Log("dedup table %s, %s rows, run %d: %.0f claims/s", kind, count(cfg.Sizes[i]), r+1, rate)
				kindRows[i].Rates = append(kindRows[i].Rates, rate)
			}
		}
		rows = append(rows, kindRows...)
	}
	return rows, nil
}

func count(n int) string {
	switch {
	case n >= 1_000_000 && n%1_000_000 == 0:
		return strconv.Itoa(n/1_000_000) + "M"
	case n >= 1000 && n%1000 == 0:
		return strconv.Itoa(n/1000) + "k"
	}
	return strconv.Itoa(n)
}

// prepare returns a pool on a database whose dedup table holds n rows of Group, and a cleanup
// that deletes the rows the run added (kept databases) or drops the database (empty ones).
func prepare(ctx context.Context, base string, n int, cfg Config) (*sqlx.DB, func(), error) {
	if n == 0 {
		name, drop, err := benchenv.TempDatabase(ctx, base, "txbench_dedup_empty")
		if err != nil {
			return nil, nil, err
		}
		db, err := setup(ctx, base, name, cfg.Workers)
		if err != nil {
			drop()
			return nil, nil, err
		}
		return db, func() { _ = db.Close(); drop() }, nil
	}
	name := DatabasePrefix + strconv.Itoa(n)
	if err := benchenv.Exec(ctx, base, "CREATE DATABASE IF NOT EXISTS `"+name+"`"); err != nil {
		return nil, nil, err
	}
	db, err := setup(ctx, base, name, cfg.Workers)
	if err != nil {
		return nil, nil, err
	}
	statuses, err := migrations.Statuses(ctx, db.DB)
	if err != nil {
		_ = db.Close()
		return nil, nil, err
	}
	recipe := fmt.Sprintf("%s rows=%d group=%s schema=%s keys=uuid-like-sorted", recipeVersion, n, Group,
		statuses[len(statuses)-1].Name)
	reused, err := keepFilled(ctx, db, "txbench_recipe", recipe, func() error {
		cfg.Log("dedup table: filling %s rows into %s (kept for later runs while the recipe stays %q)", count(n), name, recipe)
		start := time.Now()
		if err := fill(ctx, db, n, cfg.Log); err != nil {
			return err
		}
		cfg.Log("dedup table: filled %s rows in %s", count(n), time.Since(start).Round(time.Second))
		return nil
	})
	if err != nil {
		_ = db.Close()
		return nil, nil, err
	}
	if reused {
		cfg.Log("dedup table: reusing %s (%s rows)", name, count(n))
	}
	if err := fillFloorOnce(ctx, db, n, cfg.Log); err != nil {
		_ = db.Close()
		return nil, nil, err
	}
	return db, func() {
		// The claims of this run go, so that the next run finds n rows again.
		cctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		_, _ = db.ExecContext(cctx, "DELETE FROM "+txconsume.DedupTable+" WHERE consumer_group = ?", Group+"-run")
		deleteRecorded[string](cctx, db, "txbench_claimed", "dedup_key", txconsume.DedupTable, "consumer_group = ? AND", Group)
		deleteRecorded[[]byte](cctx, db, "txbench_floor_claimed", "k", "txbench_floor", "")
		_ = db.Close()
	}, nil
}

func setup(ctx context.Context, base, name string, workers int) (*sqlx.DB, error) {
	db, err := benchenv.OpenGuarded(base, name, workers+4)
	if err != nil {
		return nil, err
	}
	if err := migrations.Up(ctx, db.DB); err != nil {
		_ = db.Close()
		return nil, err
	}
	for _, s := range []string{
		`CREATE TABLE IF NOT EXISTS txbench_recipe (recipe VARCHAR(255) NOT NULL)`,
		`CREATE TABLE IF NOT EXISTS txbench_claimed (dedup_key VARBINARY(255) NOT NULL)`,
		`CREATE TABLE IF NOT EXISTS txbench_floor (k BINARY(16) NOT NULL PRIMARY KEY)`,
		`CREATE TABLE IF NOT EXISTS txbench_floor_recipe (recipe VARCHAR(255) NOT NULL)`,
		`CREATE TABLE IF NOT EXISTS txbench_floor_claimed (k BINARY(16) NOT NULL)`,
		`DROP TABLE IF EXISTS t_effect`,
		`CREATE TABLE t_effect (id BIGINT AUTO_INCREMENT PRIMARY KEY, msg_key VARBINARY(255) NOT NULL, KEY (msg_key))`,
	} {
		if _, err := db.ExecContext(ctx, s); err != nil {
			_ = db.Close()
			return nil, err
		}
	}
	return db, nil
}

// keySQL is a UUID-like key (8-4-4-4-12 lower-case hex) for row number n of total: the first 8
// digits grow with n, spread evenly over their range, the others come from SHA2(n, 256). The rows are
// inserted in key order, which bulk-loads fast; their keys are spread over the same range as
// random UUIDs, so random claims land among them.
const keySQL = `CONCAT(LOWER(LPAD(HEX(FLOOR(n * 4294967296 / %d)), 8, '0')), '-', SUBSTR(SHA2(n, 256), 1, 4), '-4',
	SUBSTR(SHA2(n, 256), 5, 3), '-a', SUBSTR(SHA2(n, 256), 8, 3), '-', SUBSTR(SHA2(n, 256), 11, 12))`

// fill replaces the table's rows with n rows of Group, created over the last 7 days (as with the
// recommended retention), in chunks of 250,000 rows generated on the server. Every row carries a
// topic and a 32-digit message id, as the claims of Process do (a RocketMQ UNIQ_KEY is 32 hex
// digits), so that the table is as wide as a consumer's.
func fill(ctx context.Context, db *sqlx.DB, n int, log func(string, ...any)) error {
	for _, s := range []string{"TRUNCATE TABLE " + txconsume.DedupTable, "TRUNCATE TABLE txbench_claimed"} {
		if _, err := db.ExecContext(ctx, s); err != nil {
			return err
		}
	}
	span := (7 * 24 * time.Hour).Microseconds() / int64(n)
	start := time.Now()
	q := fmt.Sprintf(`INSERT INTO `+txconsume.DedupTable+` (consumer_group, dedup_key, topic, msg_id, created_at)
SELECT '%s', `+keySQL+`, 'bench', UPPER(SUBSTR(SHA2(n, 256), 1, 32)), UTC_TIMESTAMP(6) - INTERVAL 7 DAY + INTERVAL n * %d MICROSECOND`,
		Group, n, span)
	err := insertNumbered(ctx, db, n, q, func(done int) {
		if (done/numberedChunk)%8 == 0 || done == n {
			log("dedup table: %s of %s rows, %.0f rows/s", count(done), count(n), float64(done)/time.Since(start).Seconds())
		}
	})
	if err != nil {
		return fmt.Errorf("fill: %w", err)
	}
	_, err = db.ExecContext(ctx, "ANALYZE TABLE "+txconsume.DedupTable)
	return err
}

// numberedChunk is how many rows one statement of insertNumbered inserts.
const numberedChunk = 250_000

// insertNumbered runs insertSelect, an INSERT ... SELECT whose expressions use n, over the row
// numbers n = 0 to total-1 in order, numberedChunk rows per statement, the numbers generated on the
// server by cross-joining txbench_digits (0 to 999, created here). progress gets the rows inserted
// so far after each statement.
func insertNumbered(ctx context.Context, db *sqlx.DB, total int, insertSelect string, progress func(done int)) error {
	for _, s := range []string{"DROP TABLE IF EXISTS txbench_digits", "CREATE TABLE txbench_digits (d INT PRIMARY KEY)"} {
		if _, err := db.ExecContext(ctx, s); err != nil {
			return err
		}
	}
	var digits strings.Builder
	digits.WriteString("INSERT INTO txbench_digits VALUES (0)")
	for i := 1; i < 1000; i++ {
		fmt.Fprintf(&digits, ",(%d)", i)
	}
	if _, err := db.ExecContext(ctx, digits.String()); err != nil {
		return err
	}
	for lo := 0; lo < total; lo += numberedChunk {
		hi := min(lo+numberedChunk, total)
		q := insertSelect + fmt.Sprintf(`
FROM (SELECT a.d * 1000 + b.d + %d AS n FROM txbench_digits a JOIN txbench_digits b
      WHERE a.d * 1000 + b.d < %d ORDER BY n) s`, lo, hi-lo)
		if _, err := db.ExecContext(ctx, q); err != nil {
			return err
		}
		progress(hi)
	}
	return nil
}

// keepFilled calls fill unless recipeTable (one row, one column) says the tables were filled by
// recipe before, and then records recipe there. reused is true when fill was not called.
func keepFilled(ctx context.Context, db *sqlx.DB, recipeTable, recipe string, fill func() error) (reused bool, err error) {
	var have string
	_ = db.GetContext(ctx, &have, "SELECT recipe FROM "+recipeTable)
	if have == recipe {
		return true, nil
	}
	if err := fill(); err != nil {
		return false, err
	}
	if _, err := db.ExecContext(ctx, "DELETE FROM "+recipeTable); err != nil {
		return false, err
	}
	_, err = db.ExecContext(ctx, "INSERT INTO "+recipeTable+" VALUES (?)", recipe)
	return false, err
}

var seq atomic.Int64

// measure runs Process with cfg.Workers goroutines for cfg.Duration and returns claims per second.
func measure(ctx context.Context, db *sqlx.DB, kind string, cfg Config) (float64, error) {
	p, err := txconsume.New(db, Group, func(ctx context.Context, tx *sqlx.Tx, m *txconsume.Message) error {
		_, err := tx.ExecContext(ctx, "INSERT INTO t_effect (msg_key) VALUES (?)", m.ID)
		return err
	})
	if err != nil {
		return 0, err
	}
	defer p.Close()
	// A producer's UNIQ_KEY: its address and process, then a counter.
	prefix := "7F000001" + strings.ToUpper(benchenv.RandomHex(6)) + fmt.Sprintf("%08X", time.Now().Unix())
	rate, keys, err := drive(ctx, cfg, func(ctx context.Context) (string, error) {
		id := prefix + fmt.Sprintf("%08X", seq.Add(1))
		if kind == "random" {
			id = uuidLike()
		}
		r, err := p.Process(ctx, &txconsume.Message{ID: id, Topic: "bench"})
		if err == nil && r != txconsume.Applied {
			err = fmt.Errorf("claim of new key %s: %s", id, r)
		}
		return id, err
	})
	if err != nil {
		return 0, err
	}
	return rate, recordKeys(context.WithoutCancel(ctx), db, "txbench_claimed (dedup_key)", keys)
}

// drive runs step with cfg.Workers goroutines for cfg.Duration and returns steps per second and
// the keys of the steps that succeeded, for the cleanup to delete. A step that fails for another
// reason than the end of the measurement ends it with its error.
func drive[K any](ctx context.Context, cfg Config, step func(ctx context.Context) (K, error)) (float64, []K, error) {
	ctx, cancel := context.WithTimeout(ctx, cfg.Duration)
	defer cancel()
	var firstErr error
	var once sync.Once
	var wg sync.WaitGroup
	var mu sync.Mutex
	var keys []K
	start := time.Now()
	for range cfg.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine []K
			defer func() { mu.Lock(); keys = append(keys, mine...); mu.Unlock() }()
			for ctx.Err() == nil {
				k, err := step(ctx)
				if err != nil {
					if ctx.Err() == nil {
						once.Do(func() { firstErr = err })
					}
					return
				}
				mine = append(mine, k)
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	if firstErr != nil {
		return 0, nil, firstErr
	}
	return float64(len(keys)) / elapsed.Seconds(), keys, nil
}

// recordKeys notes the keys a measurement inserted in into (a table and its one column), so that
// the cleanup can delete them.
func recordKeys[K any](ctx context.Context, db *sqlx.DB, into string, keys []K) error {
	for lo := 0; lo < len(keys); lo += 1000 {
		chunk := keys[lo:min(lo+1000, len(keys))]
		q := "INSERT INTO " + into + " VALUES (?)" + strings.Repeat(",(?)", len(chunk)-1)
		args := make([]any, len(chunk))
		for i, k := range chunk {
			args[i] = k
		}
		if _, err := db.ExecContext(ctx, q, args...); err != nil {
			return err
		}
	}
	return nil
}

// deleteRecorded deletes the keys that recordKeys noted in recorded (their column column) from
// table, 500 per statement, and then from recorded. scope, with scopeArgs, narrows table's rows
// to those of the measurement ("consumer_group = ? AND"), or is empty.
func deleteRecorded[K any](ctx context.Context, db *sqlx.DB, recorded, column, table, scope string, scopeArgs ...any) {
	for {
		var keys []K
		if err := db.SelectContext(ctx, &keys, "SELECT "+column+" FROM "+recorded+" LIMIT 500"); err != nil || len(keys) == 0 {
			return
		}
		args := slices.Clone(scopeArgs)
		for _, k := range keys {
			args = append(args, k)
		}
		in := column + " IN (?" + strings.Repeat(",?", len(keys)-1) + ")"
		if _, err := db.ExecContext(ctx, "DELETE FROM "+table+" WHERE "+scope+" "+in, args...); err != nil {
			return
		}
		if _, err := db.ExecContext(ctx, "DELETE FROM "+recorded+" WHERE "+in, args[len(scopeArgs):]...); err != nil {
			return
		}
	}
}

// uuidLike returns a random version-4 UUID in its text form.
func uuidLike() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

// ErrNoSizes is returned for a Config without sizes.
var ErrNoSizes = errors.New("dedupsize: no table sizes")

// Clean drops the filled databases kept between runs.
func Clean(ctx context.Context, log func(string, ...any)) error {
	base, err := benchenv.BaseDSN()
	if err != nil {
		return err
	}
	db, err := benchenv.Open(base, "", 1)
	if err != nil {
		return err
	}
	defer db.Close()
	var names []string
	if err := db.SelectContext(ctx, &names, "SELECT schema_name FROM information_schema.schemata WHERE schema_name LIKE ?",
		DatabasePrefix+"%"); err != nil {
		return err
	}
	for _, n := range names {
		if _, err := db.ExecContext(ctx, "DROP DATABASE `"+n+"`"); err != nil {
			return err
		}
		log("dropped %s", n)
	}
	return nil
}
