// Package pkdelete builds the DELETE that removes a list of rows named by their primary keys,
// in a shape whose plan is a primary-key lookup per row on MySQL and MariaDB alike, however
// long the list.
//
// The obvious shapes, an OR of primary-key equalities or a row-constructor IN list, are turned
// into primary-key ranges only while the list is short: past a few thousand keys MariaDB's range
// optimizer gives up (optimizer_max_sel_arg_weight) and so does MySQL's
// (range_optimizer_max_mem_size), and both fall back to a full scan, which under REPEATABLE READ
// locks every row it reads and the gaps between them: every insert into the table then waits
// for the DELETE's transaction. Here the keys travel as one JSON document that JSON_TABLE (MySQL
// 8.0.4+, MariaDB 10.6+) turns into rows, and STRAIGHT_JOIN makes the optimizer read those rows
// first and look each one up in the table by primary key (eq_ref), whatever the statistics say:
// on a small table the optimizers would otherwise start with a scan of the table. The key parts
// are hex-encoded, so that keys of any bytes fit in JSON.
//
// The statement text depends only on the table, its key columns and the extra condition, so a
// prepared statement cache sees one statement for every batch.
package pkdelete

import (
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// MaxKeyPartLen is the longest key part, in bytes, that a statement accepts: the VARBINARY(255)
// key columns of txconsume's tables.
const MaxKeyPartLen = 255

// Statement returns a DELETE of the rows of table whose primary-key columns cols equal one of
// keys (each key has one part per column), restricted further by cond, a condition on the
// table's columns (unqualified or qualified with the table's name) whose placeholders take
// condArgs. Rows that no longer match cond when the statement runs are left alone.
func Statement(table string, cols []string, keys [][][]byte, cond string, condArgs ...any) (string, []any, error) {
	if len(cols) == 0 {
		return "", nil, errors.New("pkdelete: no key columns")
	}
	doc, err := encodeKeys(len(cols), keys)
	if err != nil {
		return "", nil, err
	}
	var q strings.Builder
	fmt.Fprintf(&q, "DELETE %s FROM JSON_TABLE(?, '$[*]' COLUMNS (", table)
	for i := range cols {
		if i > 0 {
			q.WriteString(", ")
		}
		fmt.Fprintf(&q, "pkdelete_%d VARCHAR(%d) CHARACTER SET ascii PATH '$[%d]'", i, 2*MaxKeyPartLen, i)
	}
	fmt.Fprintf(&q, ")) AS pkdelete_keys STRAIGHT_JOIN %s ON ", table)
	for i, c := range cols {
		if i > 0 {
			q.WriteString(" AND ")
		}
		fmt.Fprintf(&q, "%s.%s = UNHEX(pkdelete_keys.pkdelete_%d)", table, c, i)
	}
	if cond != "" {
		q.WriteString(" WHERE " + cond)
	}
	return q.String(), append([]any{doc}, condArgs...), nil
}

// encodeKeys writes keys as a JSON array of arrays of hex strings: [["6731","6b2d31"],...].
func encodeKeys(parts int, keys [][][]byte) (string, error) {
	b := make([]byte, 0, len(keys)*parts*24)
	b = append(b, '[')
	for i, key := range keys {
		if len(key) != parts {
			return "", fmt.Errorf("pkdelete: key %d has %d parts, want %d", i, len(key), parts)
		}
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, '[')
		for j, part := range key {
			if len(part) > MaxKeyPartLen {
				return "", fmt.Errorf("pkdelete: key %d part %d is %d bytes, longer than %d", i, j, len(part), MaxKeyPartLen)
			}
			if j > 0 {
				b = append(b, ',')
			}
			b = append(b, '"')
			b = hex.AppendEncode(b, part)
			b = append(b, '"')
		}
		b = append(b, ']')
	}
	b = append(b, ']')
	return string(b), nil
}
