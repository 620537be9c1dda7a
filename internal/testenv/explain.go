package testenv

import (
	"context"
	"database/sql"
	"testing"
)

// PlanRow is one row of a query plan in the classic tabular EXPLAIN format, the columns that
// tell how a table is read.
type PlanRow struct {
	Table string // the table or its alias
	Type  string // access type: const, eq_ref, ref, range, index, ALL, ...
	Key   string // the index used, "" for none
	Rows  int64  // the optimizer's estimate of rows examined
}

// Explain returns the plan of query with args on db in the tabular format. MariaDB prints that
// format by default; MySQL 9 prints a tree by default, so there the format is asked for.
func Explain(t testing.TB, db *sql.DB, query string, args ...any) []PlanRow {
	t.Helper()
	explain := "EXPLAIN FORMAT=TRADITIONAL "
	if MySQLServer(t).IsMariaDB() {
		explain = "EXPLAIN "
	}
	rows, err := db.QueryContext(context.Background(), explain+query, args...)
	if err != nil {
		t.Fatalf("testenv: explain: %v", err)
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		t.Fatalf("testenv: explain: %v", err)
	}
	var plan []PlanRow
	for rows.Next() {
		values := make([]sql.NullString, len(cols))
		dest := make([]any, len(cols))
		for i := range values {
			dest[i] = &values[i]
		}
		if err := rows.Scan(dest...); err != nil {
			t.Fatalf("testenv: explain: %v", err)
		}
		var r PlanRow
		for i, c := range cols {
			switch c {
			case "table":
				r.Table = values[i].String
			case "type":
				r.Type = values[i].String
			case "key":
				r.Key = values[i].String
			case "rows":
				var n sql.NullInt64
				_ = n.Scan(values[i].String)
				r.Rows = n.Int64
			}
		}
		plan = append(plan, r)
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("testenv: explain: %v", err)
	}
	return plan
}
