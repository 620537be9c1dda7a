// Package migrations holds the SQL schema txconsume needs (the deduplication table and the
// tables of the other modes) as goose migrations embedded in the binary, and applies them.
//
// Call Up when a service starts:
//
//	if err := migrations.Up(ctx, db.DB); err != nil { ... }
//
// Up is safe to call from every instance of a service at once: a MySQL named lock
// (GET_LOCK, held for the duration of one connection) serialises the instances, so each
// migration is applied exactly once. Applied versions are tracked in their own table,
// txconsume_goose_version, so the library's migrations never mix with a service's own goose
// history.
//
// The files are also exported as FS for teams that run migrations with their own tooling.
package migrations

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

// FS holds the migration files (*.sql, goose format, numbered NNNNN_name.sql).
//
//go:embed *.sql
var FS embed.FS

// VersionTable is the table in which applied migration versions are recorded.
const VersionTable = "txconsume_goose_version"

// DefaultLockTimeout is how long Up and Down wait for another instance that is migrating
// the same database before giving up, unless the context ends earlier.
const DefaultLockTimeout = 5 * time.Minute

// ErrNoApplied is returned by Down when no migration is applied.
var ErrNoApplied = errors.New("migrations: no applied migration to roll back")

// NewProvider returns a goose provider over FS for db, with the version table VersionTable and
// the MySQL session lock that Up uses. It is exported for tools that need more than Up, Down
// and Statuses (for example DownTo); most code should call Up. Do not call the provider's Close
// unless db should be closed too: goose closes the *sql.DB it was given.
func NewProvider(db *sql.DB) (*goose.Provider, error) {
	return goose.NewProvider(goose.DialectMySQL, db, FS,
		goose.WithTableName(VersionTable),
		goose.WithSessionLocker(newMySQLLocker(DefaultLockTimeout)),
		// Go migrations registered globally by the application belong to its own history.
		goose.WithDisableGlobalRegistry(true),
	)
}

// Up applies every pending migration. It is a no-op when the schema is current, and safe to call
// concurrently from several processes: they wait for each other on a named lock.
func Up(ctx context.Context, db *sql.DB) error {
	return UpFS(ctx, db, FS, VersionTable)
}

// UpFS applies the goose SQL migrations in fsys (files named like 00001_name.sql at its root),
// recording them in versionTable, with the same guarantees as Up: instances that start together
// wait for each other on the database's migration lock and each migration is applied once. A
// service can use it for its own schema beside txconsume's; give it a version table of its own.
func UpFS(ctx context.Context, db *sql.DB, fsys fs.FS, versionTable string) error {
	locker := newMySQLLocker(DefaultLockTimeout)
	if err := prepareVersionTable(ctx, db, versionTable, locker); err != nil {
		return err
	}
	p, err := goose.NewProvider(goose.DialectMySQL, db, fsys,
		goose.WithTableName(versionTable),
		goose.WithSessionLocker(locker),
		goose.WithDisableGlobalRegistry(true),
	)
	if err != nil {
		return fmt.Errorf("migrations: %w", err)
	}
	if _, err := p.Up(ctx); err != nil {
		return fmt.Errorf("migrations: up: %w", err)
	}
	return nil
}

// Down rolls back the most recently applied migration (one step). It returns ErrNoApplied when
// there is nothing to roll back. Rolling back drops tables and the data in them.
func Down(ctx context.Context, db *sql.DB) error {
	p, err := NewProvider(db)
	if err != nil {
		return err
	}
	if _, err := p.Down(ctx); err != nil {
		if errors.Is(err, goose.ErrNoNextVersion) {
			return ErrNoApplied
		}
		return fmt.Errorf("migrations: down: %w", err)
	}
	return nil
}

// Status is the state of one migration.
type Status struct {
	Version int64
	Name    string // file name, e.g. 00001_txconsume_dedup.sql
	Applied bool
}

// Statuses reports every known migration in version order and whether it is applied. It does not
// take the migration lock and does not create the version table.
func Statuses(ctx context.Context, db *sql.DB) ([]Status, error) {
	p, err := NewProvider(db)
	if err != nil {
		return nil, err
	}
	applied := map[int64]bool{}
	// Read the version table directly: goose's own Status scans timestamps into time.Time,
	// which fails on DSNs without parseTime=true.
	rows, err := db.QueryContext(ctx, "SELECT version_id, is_applied FROM "+VersionTable+" ORDER BY id")
	if err != nil && !isNoSuchTable(err) {
		return nil, fmt.Errorf("migrations: status: %w", err)
	}
	if err == nil {
		defer rows.Close()
		for rows.Next() {
			var v int64
			var ok bool
			if err := rows.Scan(&v, &ok); err != nil {
				return nil, fmt.Errorf("migrations: status: %w", err)
			}
			applied[v] = ok
		}
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("migrations: status: %w", err)
		}
	}
	var out []Status
	for _, s := range p.ListSources() {
		out = append(out, Status{Version: s.Version, Name: baseName(s.Path), Applied: applied[s.Version]})
	}
	return out, nil
}

func baseName(p string) string {
	for i := len(p) - 1; i >= 0; i-- {
		if p[i] == '/' {
			return p[i+1:]
		}
	}
	return p
}
