package txguard

import (
	"database/sql/driver"
	"errors"
	"io"
	"reflect"
)

// rows notes an error that arrives while rows are read (a locking read can lose a deadlock after
// it sent its first rows). It implements every optional interface of driver.Rows, answering as
// database/sql does when the wrapped rows lack one, so that wrapping changes nothing else.
type rows struct {
	base driver.Rows
	c    *conn
}

func wrapRows(r driver.Rows, c *conn) driver.Rows { return &rows{base: r, c: c} }

func (r *rows) Columns() []string { return r.base.Columns() }
func (r *rows) Close() error      { return r.base.Close() }

func (r *rows) Next(dest []driver.Value) error {
	err := r.base.Next(dest)
	if err != nil && !errors.Is(err, io.EOF) {
		r.c.after(err)
	}
	return err
}

func (r *rows) HasNextResultSet() bool {
	if n, ok := r.base.(driver.RowsNextResultSet); ok {
		return n.HasNextResultSet()
	}
	return false
}

func (r *rows) NextResultSet() error {
	if n, ok := r.base.(driver.RowsNextResultSet); ok {
		err := n.NextResultSet()
		if err != nil && !errors.Is(err, io.EOF) {
			r.c.after(err)
		}
		return err
	}
	return io.EOF
}

func (r *rows) ColumnTypeScanType(i int) reflect.Type {
	if t, ok := r.base.(driver.RowsColumnTypeScanType); ok {
		return t.ColumnTypeScanType(i)
	}
	return reflect.TypeFor[any]()
}

func (r *rows) ColumnTypeDatabaseTypeName(i int) string {
	if t, ok := r.base.(driver.RowsColumnTypeDatabaseTypeName); ok {
		return t.ColumnTypeDatabaseTypeName(i)
	}
	return ""
}

func (r *rows) ColumnTypeLength(i int) (int64, bool) {
	if t, ok := r.base.(driver.RowsColumnTypeLength); ok {
		return t.ColumnTypeLength(i)
	}
	return 0, false
}

func (r *rows) ColumnTypeNullable(i int) (nullable, ok bool) {
	if t, ok := r.base.(driver.RowsColumnTypeNullable); ok {
		return t.ColumnTypeNullable(i)
	}
	return false, false
}

func (r *rows) ColumnTypePrecisionScale(i int) (precision, scale int64, ok bool) {
	if t, ok := r.base.(driver.RowsColumnTypePrecisionScale); ok {
		return t.ColumnTypePrecisionScale(i)
	}
	return 0, 0, false
}
