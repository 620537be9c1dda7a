// Package sqlerr classifies MySQL and MariaDB server errors by number.
package sqlerr

import (
	"errors"

	"github.com/go-sql-driver/mysql"
)

// Server error numbers that txconsume acts on; MySQL and MariaDB share them.
const (
	DupEntry        = 1062 // ER_DUP_ENTRY: a unique key already holds the value
	LockWaitTimeout = 1205 // ER_LOCK_WAIT_TIMEOUT: innodb_lock_wait_timeout passed
	Deadlock        = 1213 // ER_LOCK_DEADLOCK: InnoDB chose this transaction as the victim
	NoSuchTable     = 1146 // ER_NO_SUCH_TABLE
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

// IsRetryable reports a deadlock or a lock wait timeout: the transaction lost a lock conflict
// and running it again from the start can succeed.
func IsRetryable(err error) bool {
	n := Number(err)
	return n == Deadlock || n == LockWaitTimeout
}
