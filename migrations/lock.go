package migrations

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/pressly/goose/v3/lock"
)

// mysqlLocker is a goose lock.SessionLocker built on MySQL named locks. GET_LOCK belongs to the
// connection (session) that took it and is released by RELEASE_LOCK or when that connection
// closes, so a crashed migrator never leaves the lock behind (unlike a lock row in a table).
// MariaDB implements the same functions.
type mysqlLocker struct {
	timeout time.Duration
}

var _ lock.SessionLocker = (*mysqlLocker)(nil)

func newMySQLLocker(timeout time.Duration) *mysqlLocker { return &mysqlLocker{timeout: timeout} }

// lockName is per database: named locks are server-wide, and services that keep their schemas
// in different databases of one server must not wait for each other. MySQL limits lock names to
// 64 characters, so the database name is hashed.
func lockName(ctx context.Context, conn *sql.Conn) (string, error) {
	var dbName sql.NullString
	if err := conn.QueryRowContext(ctx, "SELECT DATABASE()").Scan(&dbName); err != nil {
		return "", fmt.Errorf("migrations: current database: %w", err)
	}
	if !dbName.Valid {
		return "", errors.New("migrations: the connection has no default database (set one in the DSN)")
	}
	sum := sha256.Sum256([]byte(dbName.String))
	return "txconsume_migrate_" + hex.EncodeToString(sum[:16]), nil
}

func (l *mysqlLocker) SessionLock(ctx context.Context, conn *sql.Conn) error {
	name, err := lockName(ctx, conn)
	if err != nil {
		return err
	}
	wait := l.timeout
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) < wait {
		wait = time.Until(dl)
	}
	secs := int64(math.Ceil(wait.Seconds()))
	if secs < 0 {
		secs = 0
	}
	// GET_LOCK returns 1 when taken, 0 on timeout, NULL on error (e.g. the thread was killed).
	// The driver aborts the query if ctx ends first.
	var got sql.NullInt64
	if err := conn.QueryRowContext(ctx, "SELECT GET_LOCK(?, ?)", name, secs).Scan(&got); err != nil {
		return fmt.Errorf("migrations: take lock %s: %w", name, err)
	}
	if !got.Valid || got.Int64 != 1 {
		return fmt.Errorf("migrations: lock %s not acquired within %s: another instance is migrating", name, wait)
	}
	return nil
}

func (l *mysqlLocker) SessionUnlock(ctx context.Context, conn *sql.Conn) error {
	name, err := lockName(ctx, conn)
	if err != nil {
		return err
	}
	// RELEASE_LOCK returns 1 when released, 0 when held by another session, NULL when nobody
	// held it: anything but 1 means this session did not own the lock.
	var rel sql.NullInt64
	if err := conn.QueryRowContext(ctx, "SELECT RELEASE_LOCK(?)", name).Scan(&rel); err != nil {
		return fmt.Errorf("migrations: release lock %s: %w", name, err)
	}
	if !rel.Valid || rel.Int64 != 1 {
		return fmt.Errorf("migrations: release lock %s: not held by this session", name)
	}
	return nil
}

// isNoSuchTable reports MySQL error 1146 (table doesn't exist).
func isNoSuchTable(err error) bool {
	var me *mysql.MySQLError
	return errors.As(err, &me) && me.Number == 1146
}
