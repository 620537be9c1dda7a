// Package sqlerr classifies MySQL and MariaDB server errors by number.
package sqlerr

import (
	"errors"

	"github.com/go-sql-driver/mysql"
)

// Server error numbers that txconsume acts on; MySQL and MariaDB share them.
const (
	CheckRead       = 1020 // ER_CHECKREAD: MariaDB's innodb_snapshot_isolation saw a write conflict
	DupEntry        = 1062 // ER_DUP_ENTRY: a unique key already holds the value
	LockWaitTimeout = 1205 // ER_LOCK_WAIT_TIMEOUT: innodb_lock_wait_timeout passed
	LockTableFull   = 1206 // ER_LOCK_TABLE_FULL: InnoDB ran out of room for locks
	Deadlock        = 1213 // ER_LOCK_DEADLOCK: InnoDB chose this transaction as the victim
	NoSuchTable     = 1146 // ER_NO_SUCH_TABLE
	NoSuchSavepoint = 1305 // ER_SP_DOES_NOT_EXIST: also "SAVEPOINT ... does not exist"
)

// Number returns the server error number in err's chain, or 0.
func Number(err error) uint16 {
	var me *mysql.MySQLError
	if errors.As(err, &me) {
		return me.Number
	}
	return 0
}

// IsDuplicate reports a unique-key violation.
func IsDuplicate(err error) bool { return Number(err) == DupEntry }

// IsRetryable reports a deadlock, a lock wait timeout or a write conflict under MariaDB's
// innodb_snapshot_isolation (on by default from MariaDB 11.6): the transaction lost a conflict
// with another one, and running it again from the start can succeed.
func IsRetryable(err error) bool {
	n := Number(err)
	return n == Deadlock || n == LockWaitTimeout || n == CheckRead
}

// RollsBackTransaction reports an error on which InnoDB rolls back the whole transaction rather
// than the one statement: a deadlock, a write conflict under MariaDB's innodb_snapshot_isolation,
// a full lock table. A lock wait timeout does so only when the server runs with
// innodb_rollback_on_timeout=ON, which a client cannot see: it is not included.
func RollsBackTransaction(err error) bool {
	switch Number(err) {
	case Deadlock, CheckRead, LockTableFull:
		return true
	}
	return false
}
