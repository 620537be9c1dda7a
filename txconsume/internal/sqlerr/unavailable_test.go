package sqlerr

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"
	"testing"

	"github.com/go-sql-driver/mysql"
	"github.com/stretchr/testify/require"
)

func TestIsUnavailable(t *testing.T) {
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: &net.DNSError{Err: "x"}}
	reset := &net.OpError{Op: "read", Net: "tcp", Err: syscall.ECONNRESET}
	for _, err := range []error{
		refused, reset, driver.ErrBadConn, mysql.ErrInvalidConn, io.EOF, io.ErrUnexpectedEOF,
		&mysql.MySQLError{Number: ServerShutdown}, &mysql.MySQLError{Number: ConnectionKilled},
		&mysql.MySQLError{Number: TooManyConnections}, &mysql.MySQLError{Number: ClientInactive},
		fmt.Errorf("txconsume: begin: %w", reset), fmt.Errorf("commit: %w", mysql.ErrInvalidConn),
	} {
		require.True(t, IsUnavailable(err), "%v", err)
	}
	for _, err := range []error{
		nil, errors.New("insufficient funds"), &mysql.MySQLError{Number: Deadlock},
		&mysql.MySQLError{Number: DupEntry}, &mysql.MySQLError{Number: NoSuchTable},
		context.Canceled, context.DeadlineExceeded,
	} {
		require.False(t, IsUnavailable(err), "%v", err)
	}
}
