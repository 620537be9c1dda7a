package dedupsize

import (
	"context"
	"crypto/rand"
	"fmt"
	"strings"
	"time"

	"github.com/jmoiron/sqlx"
)

// floorRecipe changes whenever fillFloor changes.
const floorRecipe = "floor-1"

// fillFloorOnce fills txbench_floor with n keys, unless a run before this one already did.
func fillFloorOnce(ctx context.Context, db *sqlx.DB, n int, log func(string, ...any)) error {
	recipe := fmt.Sprintf("%s rows=%d", floorRecipe, n)
	var have string
	_ = db.GetContext(ctx, &have, "SELECT recipe FROM txbench_floor_recipe")
	if have == recipe {
		return nil
	}
	log("floor table: filling %s rows", count(n))
	start := time.Now()
	if err := fillFloor(ctx, db, n); err != nil {
		return fmt.Errorf("fill the floor table: %w", err)
	}
	for _, s := range []string{"DELETE FROM txbench_floor_recipe", "INSERT INTO txbench_floor_recipe VALUES (?)"} {
		if _, err := db.ExecContext(ctx, s, recipe); err != nil && !strings.HasPrefix(s, "DELETE") {
			return err
		}
	}
	log("floor table: filled %s rows in %s", count(n), time.Since(start).Round(time.Second))
	return nil
}

// fillFloor replaces txbench_floor's rows with n 16-byte keys spread evenly over the key space,
// inserted in key order as fill does with the dedup table's, so that random keys land among them.
func fillFloor(ctx context.Context, db *sqlx.DB, n int) error {
	for _, s := range []string{"TRUNCATE TABLE txbench_floor", "TRUNCATE TABLE txbench_floor_claimed"} {
		if _, err := db.ExecContext(ctx, s); err != nil {
			return err
		}
	}
	if err := makeDigits(ctx, db); err != nil {
		return err
	}
	const chunk = 250_000
	for lo := 0; lo < n; lo += chunk {
		q := fmt.Sprintf(`INSERT INTO txbench_floor (k)
SELECT UNHEX(CONCAT(LPAD(HEX(FLOOR(n * 4294967296 / %d)), 8, '0'), SUBSTR(SHA2(n, 256), 1, 24)))
FROM (SELECT a.d * 1000 + b.d + %d AS n FROM txbench_digits a JOIN txbench_digits b
      WHERE a.d * 1000 + b.d < %d ORDER BY n) s`, n, lo, min(chunk, n-lo))
		if _, err := db.ExecContext(ctx, q); err != nil {
			return err
		}
	}
	_, err := db.ExecContext(ctx, "ANALYZE TABLE txbench_floor")
	return err
}

// measureFloor runs, with cfg.Workers goroutines for cfg.Duration, the transaction a claim would
// be without txconsume and with the narrowest possible claim: insert a random 16-byte key into
// txbench_floor, then the handler's insert, then commit. It returns transactions per second.
func measureFloor(ctx context.Context, db *sqlx.DB, _ string, cfg Config) (float64, error) {
	rate, keys, err := drive(ctx, cfg, func(ctx context.Context) ([]byte, error) {
		k := make([]byte, 16)
		_, _ = rand.Read(k)
		return k, floorTransaction(ctx, db, k)
	})
	if err != nil {
		return 0, err
	}
	return rate, recordKeys(context.WithoutCancel(ctx), db, "txbench_floor_claimed (k)", keys)
}

func floorTransaction(ctx context.Context, db *sqlx.DB, k []byte) error {
	tx, err := db.BeginTxx(ctx, nil)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback() }()
	if _, err := tx.ExecContext(ctx, "INSERT INTO txbench_floor (k) VALUES (?)", k); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, "INSERT INTO t_effect (msg_key) VALUES (?)", uuidLike()); err != nil {
		return err
	}
	return tx.Commit()
}

// deleteFloorKeys deletes the keys recorded by recordFloorKeys, 500 per statement.
func deleteFloorKeys(ctx context.Context, db *sqlx.DB) {
	for {
		var keys [][]byte
		if err := db.SelectContext(ctx, &keys, "SELECT k FROM txbench_floor_claimed LIMIT 500"); err != nil || len(keys) == 0 {
			return
		}
		args := make([]any, len(keys))
		for i, k := range keys {
			args[i] = k
		}
		in := "(?" + strings.Repeat(",?", len(keys)-1) + ")"
		for _, table := range []string{"txbench_floor", "txbench_floor_claimed"} {
			if _, err := db.ExecContext(ctx, "DELETE FROM "+table+" WHERE k IN "+in, args...); err != nil {
				return
			}
		}
	}
}
