package sqlerr

import (
	"context"
	"database/sql/driver"
	"errors"
	"io"
	"net"

	"github.com/go-sql-driver/mysql"
)

// Server error numbers that mean the server is going away or refuses connections.
const (
	TooManyConnections = 1040 // ER_CON_COUNT_ERROR
	ServerShutdown     = 1053 // ER_SERVER_SHUTDOWN: the server is shutting down
	ConnectionKilled   = 1927 // ER_CONNECTION_KILLED (MariaDB): KILL CONNECTION, or a shutdown
	ClientInactive     = 4031 // ER_CLIENT_INTERACTION_TIMEOUT (MySQL): disconnected for inactivity
)

// IsUnavailable reports an error that says the server (the database, or a store) could not be
// reached or dropped the connection, rather than anything about the work itself: a network error,
// a connection the driver found broken, a server shutting down or killing the connection. Running
// the same work again once the server answers can succeed.
func IsUnavailable(err error) bool {
	// A context that ended is the caller giving up, not the server going away (and
	// context.DeadlineExceeded is a net.Error).
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	var netErr net.Error
	switch {
	case errors.As(err, &netErr),
		errors.Is(err, driver.ErrBadConn),
		errors.Is(err, mysql.ErrInvalidConn),
		errors.Is(err, io.EOF),
		errors.Is(err, io.ErrUnexpectedEOF):
		return true
	}
	switch Number(err) {
	case TooManyConnections, ServerShutdown, ConnectionKilled, ClientInactive:
		return true
	}
	return false
}
