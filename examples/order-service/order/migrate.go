package order

import (
	"context"
	"database/sql"
	"embed"
	"fmt"
	"io/fs"

	"github.com/txconsume/txconsume/migrations"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// VersionTable is the goose version table of the business schema. It is not txconsume's
// (migrations.VersionTable) so that the service's migrations and the library's never share
// history, even when both live in one database.
const VersionTable = "order_service_schema_version"

// Migrate applies the business schema (orders, stock, payments_ledger) to db. Instances that
// start together may all call it: migrations.UpFS serialises them on the database's migration
// lock (a MySQL named lock, released if a process dies), and the ones that come second find
// nothing left to do.
func Migrate(ctx context.Context, db *sql.DB) error {
	fsys, err := fs.Sub(migrationFiles, "migrations")
	if err != nil {
		return err
	}
	if err := migrations.UpFS(ctx, db, fsys, VersionTable); err != nil {
		return fmt.Errorf("order: migrate: %w", err)
	}
	return nil
}
