// Package shipping is the business side of the shipping service, the second service of the
// example: its schema (a shipments table, applied by Migrate) and ShipTx, the transaction body
// that the service runs once per order-shipped event.
//
// Like package order, it knows nothing about deduplication: the service runs ShipTx in a
// txconsume processor's transaction, keyed by the message id that the order service's outbox
// gave the event, so an event relayed twice or delivered twice ships once.
package shipping

import (
	"context"
	"database/sql"
	"embed"
	"fmt"
	"io/fs"

	"github.com/jmoiron/sqlx"

	"github.com/txconsume/txconsume/examples/order-service/order"
	"github.com/txconsume/txconsume/migrations"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// VersionTable is the goose version table of the shipping schema.
const VersionTable = "shipping_service_schema_version"

// Migrate applies the shipping schema to db; instances that start together may all call it (see
// order.Migrate).
func Migrate(ctx context.Context, db *sql.DB) error {
	fsys, err := fs.Sub(migrationFiles, "migrations")
	if err != nil {
		return err
	}
	if err := migrations.UpFS(ctx, db, fsys, VersionTable); err != nil {
		return fmt.Errorf("shipping: migrate: %w", err)
	}
	return nil
}

// ShipTx records the shipment of e through tx. msgID is recorded on the row for audits. Running
// it twice ships twice: deduplication is the processor's job.
func ShipTx(ctx context.Context, tx *sqlx.Tx, e order.ShippedEvent, msgID string) error {
	if _, err := tx.ExecContext(ctx, "INSERT INTO shipments (order_no, sku, quantity, msg_id) VALUES (?, ?, ?, ?)",
		e.OrderNo, e.SKU, e.Quantity, msgID); err != nil {
		return fmt.Errorf("shipping: ship %s: %w", e.OrderNo, err)
	}
	return nil
}
