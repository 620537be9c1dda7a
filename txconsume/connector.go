package txconsume

import (
	"database/sql"
	"database/sql/driver"
	"fmt"

	"github.com/go-sql-driver/mysql"
	"github.com/jmoiron/sqlx"

	"github.com/txconsume/txconsume/txconsume/internal/txguard"
)

// Connector wraps a database/sql connector (mysql.NewConnector) so that the pool opened on it
// keeps a handler's mistakes from committing, at no cost:
//
//   - after a statement fails with an error on which the server rolls back the whole transaction
//     (deadlock 1213, lock table full 1206, MariaDB's 1020 under innodb_snapshot_isolation; in a
//     Processor's transaction also a lock wait timeout 1205, on which it does under
//     innodb_rollback_on_timeout), every later statement of that transaction fails with an error
//     wrapping ErrTxAborted and the server's error, and so does its Commit, which rolls back
//     instead. Without it, the statements that a handler runs after swallowing such an error run
//     outside any transaction, each committing on its own;
//   - a Processor's transaction can be committed only by the Processor: a handler's Commit rolls
//     back and fails with ErrHandlerEndedTx, and so do the statements COMMIT, ROLLBACK, BEGIN and
//     START TRANSACTION run through it.
//
// The wrapper learns all that from the results the driver already returns: it sends nothing to
// the server. Other transactions of the pool (the service's own) get the first protection too.
// sql.Conn.Raw hands the wrapper's connection to its function, not the driver's.
// New recognises such a pool by its Driver; on any other pool the Processor protects its
// transactions itself, for three more statements each (see the package documentation).
//
//	cfg, err := mysql.ParseDSN(dsn)
//	...
//	connector, err := mysql.NewConnector(cfg)
//	...
//	db := sqlx.NewDb(sql.OpenDB(txconsume.Connector(connector)), "mysql")
//
// Open does the same from a DSN.
func Connector(c driver.Connector) driver.Connector { return txguard.NewConnector(c) }

// Open opens a go-sql-driver/mysql pool on dsn through Connector. Like sql.Open it does not
// connect; call Ping to check the DSN's server.
func Open(dsn string) (*sqlx.DB, error) {
	cfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		return nil, fmt.Errorf("txconsume: Open: %w", err)
	}
	c, err := mysql.NewConnector(cfg)
	if err != nil {
		return nil, fmt.Errorf("txconsume: Open: %w", err)
	}
	return sqlx.NewDb(sql.OpenDB(Connector(c)), "mysql"), nil
}
