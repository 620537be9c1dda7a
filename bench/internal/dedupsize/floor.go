package dedupsize

import (
	"context"
	"crypto/rand"
	"fmt"
	"time"

	"github.com/jmoiron/sqlx"
)

// floorRecipe changes whenever fillFloor changes.
const floorRecipe = "floor-1"

// fillFloorOnce fills txbench_floor with n keys, unless a run before this one already did.
func fillFloorOnce(ctx context.Context, db *sqlx.DB, n int, log func(string, ...any)) error {
	_, err := keepFilled(ctx, db, "txbench_floor_recipe", fmt.Sprintf("%s rows=%d", floorRecipe, n), func() error {
		log("floor table: filling %s rows", count(n))
		start := time.Now()
		if err := fillFloor(ctx, db, n); err != nil {
			return fmt.Errorf("fill the floor table: %w", err)
		}
		log("floor table: filled %s rows in %s", count(n), time.Since(start).Round(time.Second))
		return nil
	})
	return err
}

// fillFloor replaces txbench_floor's rows with n 16-byte keys spread evenly over the key space,
// inserted in key order as fill does with the dedup table's, so that random keys land among them.
func fillFloor(ctx context.Context, db *sqlx.DB, n int) error {
	for _, s := range []string{"TRUNCATE TABLE txbench_floor", "TRUNCATE TABLE txbench_floor_claimed"} {
		if _, err := db.ExecContext(ctx, s); err != nil {
			return err
		}
	}
	q := fmt.Sprintf(`INSERT INTO txbench_floor (k)
SELECT UNHEX(CONCAT(LPAD(HEX(FLOOR(n * 4294967296 / %d)), 8, '0'), SUBSTR(SHA2(n, 256), 1, 24)))`, n)
	if err := insertNumbered(ctx, db, n, q, func(int) {}); err != nil {
		return err
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
