package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"

	"github.com/txconsume/txconsume/migrations"
)

const migrateHelp = `
up      applies every pending migration (safe to run while services call migrations.Up).
down    rolls back the most recent migration: it DROPS a table and the records in it.
status  lists every migration and whether it is applied.

Versions are recorded in the table txconsume_goose_version.`

func runMigrate(ctx context.Context, args []string, out, errOut io.Writer) error {
	fs := newFlags("migrate", "up|down|status [flags]", migrateHelp, errOut)
	dsn := dsnFlag(fs)
	// Accept flags before or after the action: "migrate up -dsn x" and "migrate -dsn x up".
	action := ""
	if len(args) > 0 && len(args[0]) > 0 && args[0][0] != '-' {
		action, args = args[0], args[1:]
	}
	if err := parse(fs, args, 1); err != nil {
		return err
	}
	if action == "" && fs.NArg() == 1 {
		action = fs.Arg(0)
	} else if fs.NArg() > 0 {
		return usagef("unexpected argument %q", fs.Arg(0))
	}
	switch action {
	case "up", "down", "status":
	case "":
		return usagef("missing action: up, down or status")
	default:
		return usagef("unknown action %q: want up, down or status", action)
	}
	db, err := openMySQL(ctx, *dsn)
	if err != nil {
		return err
	}
	defer db.Close()

	switch action {
	case "up":
		if err := migrations.Up(ctx, db.DB); err != nil {
			return err
		}
		fmt.Fprintln(out, "migrations applied")
		return printStatus(ctx, db.DB, out)
	case "down":
		before, err := migrations.Statuses(ctx, db.DB)
		if err != nil {
			return err
		}
		if err := migrations.Down(ctx, db.DB); err != nil {
			if errors.Is(err, migrations.ErrNoApplied) {
				return errors.New("nothing to roll back: no migration is applied")
			}
			return err
		}
		for i := len(before) - 1; i >= 0; i-- {
			if before[i].Applied {
				fmt.Fprintf(out, "rolled back %s\n", before[i].Name)
				break
			}
		}
		return printStatus(ctx, db.DB, out)
	default:
		return printStatus(ctx, db.DB, out)
	}
}

func printStatus(ctx context.Context, db *sql.DB, out io.Writer) error {
	st, err := migrations.Statuses(ctx, db)
	if err != nil {
		return err
	}
	applied := 0
	for _, s := range st {
		state := "pending"
		if s.Applied {
			state = "applied"
			applied++
		}
		fmt.Fprintf(out, "%-8s %05d %s\n", state, s.Version, s.Name)
	}
	fmt.Fprintf(out, "%d applied, %d pending\n", applied, len(st)-applied)
	return nil
}
