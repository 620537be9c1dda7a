package testenv

import (
	"context"
	"database/sql"
	"strings"
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

// RequirePrimaryKeyReads fails the test unless plan reads table exactly once, as a lookup or a
// range on its primary key. Anything else (a scan of the table or of another index) locks every
// row it reads, and the gaps between them, under REPEATABLE READ.
func RequirePrimaryKeyReads(t testing.TB, plan []PlanRow, table string) {
	t.Helper()
	reads := 0
	for _, r := range plan {
		if r.Table != table {
			continue
		}
		reads++
		switch {
		case r.Key != "PRIMARY":
			t.Fatalf("testenv: %s is read through key %q, not PRIMARY: plan %+v", table, r.Key, plan)
		case r.Type != "const" && r.Type != "eq_ref" && r.Type != "ref" && r.Type != "range":
			t.Fatalf("testenv: %s is read with access type %s, not a lookup or range: plan %+v", table, r.Type, plan)
		}
	}
	if reads != 1 {
		t.Fatalf("testenv: %s is read %d times, want once: plan %+v", table, reads, plan)
	}
}

// InsertRows inserts n rows into a table with multi-row INSERTs of up to 1000 rows each: insert is
// the statement up to VALUES ("INSERT INTO t (a, b) VALUES"), row(i) the i-th row's tuple
// ("('x', 1)"), written as SQL literals.
func InsertRows(t testing.TB, db *sql.DB, insert string, n int, row func(i int) string) {
	t.Helper()
	for start := 0; start < n; start += 1000 {
		var q strings.Builder
		q.WriteString(insert)
		for i := start; i < min(start+1000, n); i++ {
			if i > start {
				q.WriteString(",")
			}
			q.WriteString(" " + row(i))
		}
		if _, err := db.ExecContext(context.Background(), q.String()); err != nil {
			t.Fatalf("testenv: insert rows: %v", err)
		}
	}
}

// ExecOpen runs query in a new transaction on db and leaves the transaction open (rolled back
// when the test ends, unless the test commits it), returning it and the rows affected: for tests
// that check what other sessions can do while a statement's locks are held.
func ExecOpen(t testing.TB, db *sql.DB, query string, args ...any) (*sql.Tx, int64) {
	t.Helper()
	ctx := context.Background()
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatalf("testenv: begin: %v", err)
	}
	t.Cleanup(func() { _ = tx.Rollback() })
	res, err := tx.ExecContext(ctx, query, args...)
	if err != nil {
		t.Fatalf("testenv: exec in an open transaction: %v", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		t.Fatalf("testenv: rows affected: %v", err)
	}
	return tx, n
}
