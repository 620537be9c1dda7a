package order

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"time"

	"github.com/pressly/goose/v3"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// VersionTable is the goose version table of the business schema. It is not goose's default
// (goose_db_version) so that the service's migrations and txconsume's own never share history,
// even when both live in one database.
const VersionTable = "order_service_schema_version"

// migrateLockWait bounds how long a starting instance waits for another one's migrations.
const migrateLockWait = 2 * time.Minute

// Migrate applies the business schema (orders, stock, payments_ledger) to db. Instances that
// start together may all call it: a MySQL named lock (GET_LOCK) scoped to the current
// database serialises them, and the ones that come second find nothing left to do.
func Migrate(ctx context.Context, db *sql.DB) error {
	fsys, err := fs.Sub(migrationFiles, "migrations")
	if err != nil {
		return err
	}
	p, err := goose.NewProvider(goose.DialectMySQL, db, fsys,
		goose.WithTableName(VersionTable),
		goose.WithSessionLocker(namedLock{wait: migrateLockWait}),
		goose.WithDisableGlobalRegistry(true))
	if err != nil {
		return fmt.Errorf("order: migrations: %w", err)
	}
	if _, err := p.Up(ctx); err != nil {
		return fmt.Errorf("order: migrate: %w", err)
	}
	return nil
}

// namedLock is a goose SessionLocker on MySQL's GET_LOCK. The lock belongs to the connection goose
// runs the migrations on, so it is released if the process dies: no stale lock survives a crash.
// Its name is a hash of the database name (GET_LOCK names are server-wide and at most 64
// characters), so migrations of different databases on one server do not wait for each other.
type namedLock struct{ wait time.Duration }

const lockName = "SHA1(CONCAT('order-service migrations ', DATABASE()))"

func (l namedLock) SessionLock(ctx context.Context, conn *sql.Conn) error {
	var got sql.NullInt64
	if err := conn.QueryRowContext(ctx, "SELECT GET_LOCK("+lockName+", ?)", int(l.wait.Seconds())).Scan(&got); err != nil {
		return fmt.Errorf("order: migration lock: %w", err)
	}
	if !got.Valid || got.Int64 != 1 {
		return errors.New("order: migration lock: another instance held it for " + l.wait.String())
	}
	return nil
}

func (namedLock) SessionUnlock(ctx context.Context, conn *sql.Conn) error {
	_, err := conn.ExecContext(ctx, "SELECT RELEASE_LOCK("+lockName+")")
	return err
}
