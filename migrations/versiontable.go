package migrations

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/pressly/goose/v3/database"
)

// tableChecker is the part of goose's store that tells whether the version table exists.
type tableChecker interface {
	TableExists(ctx context.Context, db database.DBTxConn) (bool, error)
}

// prepareVersionTable creates goose's version table with its zero-version row, under the
// migration lock, before goose runs.
//
// goose's Provider.Up first asks HasPending, which creates the version table when it is missing
// without taking the session lock; only then does it lock and read the table. MySQL commits a
// CREATE TABLE on its own, so between that and the INSERT of the zero version another instance
// holding the lock can find the table empty and fail with "missing zero version migration" (seen
// with four instances starting at once). Doing both steps here, under the lock, leaves goose
// nothing to create.
func prepareVersionTable(ctx context.Context, db *sql.DB, versionTable string, locker *mysqlLocker) (err error) {
	store, err := database.NewStore(database.DialectMySQL, versionTable)
	if err != nil {
		return err
	}
	checker, ok := store.(tableChecker)
	if !ok {
		return errors.New("migrations: goose store cannot check for its version table")
	}
	conn, err := db.Conn(ctx)
	if err != nil {
		return fmt.Errorf("migrations: connection: %w", err)
	}
	defer conn.Close()
	if err := locker.SessionLock(ctx, conn); err != nil {
		return err
	}
	defer func() {
		err = errors.Join(err, locker.SessionUnlock(context.WithoutCancel(ctx), conn))
	}()

	exists, err := checker.TableExists(ctx, conn)
	if err != nil {
		return fmt.Errorf("migrations: version table: %w", err)
	}
	if !exists {
		if err := store.CreateVersionTable(ctx, conn); err != nil {
			return fmt.Errorf("migrations: create version table: %w", err)
		}
	}
	// A process that died between the two statements left the table without its zero row.
	// (ListMigrations, unlike GetMigration, reads no timestamp: it works without parseTime.)
	applied, err := store.ListMigrations(ctx, conn)
	if err != nil {
		return fmt.Errorf("migrations: read version table: %w", err)
	}
	for _, m := range applied {
		if m.Version == 0 {
			return nil
		}
	}
	if err := store.Insert(ctx, conn, database.InsertRequest{Version: 0}); err != nil {
		return fmt.Errorf("migrations: insert zero version: %w", err)
	}
	return nil
}
