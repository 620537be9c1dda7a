package migrations

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
)

// ErrNotMigrated is wrapped by the error of Check when the database lacks migrations that this
// build embeds.
var ErrNotMigrated = errors.New("migrations: schema not migrated")

// Check reports whether every migration embedded in this build is applied to db. It only reads
// the version table (no lock, nothing created), so it is cheap enough for a readiness probe. When
// migrations are pending, the error wraps ErrNotMigrated, names them and says how to apply them:
// migrations.Up at start-up, or `txconsume migrate up`. Versions newer than this build knows
// (applied by a newer release of the service) are not an error.
//
// A team that applies FS with its own goose tooling passes Check when it records the versions in
// VersionTable (goose.WithTableName(migrations.VersionTable)).
func Check(ctx context.Context, db *sql.DB) error {
	statuses, err := Statuses(ctx, db)
	if err != nil {
		return err
	}
	var pending []string
	applied := 0
	for _, s := range statuses {
		if s.Applied {
			applied++
		} else {
			pending = append(pending, s.Name)
		}
	}
	if len(pending) == 0 {
		return nil
	}
	state := fmt.Sprintf("%d of %d migrations applied, pending: %s", applied, len(statuses), strings.Join(pending, ", "))
	if applied == 0 {
		state = fmt.Sprintf("none of the %d migrations applied (no %s table or an empty one)", len(statuses), VersionTable)
	}
	return fmt.Errorf("%w: %s; run migrations.Up(ctx, db) at start-up or `txconsume migrate up -dsn ...` before consuming",
		ErrNotMigrated, state)
}
