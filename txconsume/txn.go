package txconsume

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/txconsume/txconsume/txconsume/internal/sqlerr"
	"github.com/txconsume/txconsume/txconsume/internal/txguard"
)

// aliveSavepoint is set at the start of a row-lock transaction on a plain pool: it exists as long
// as the transaction does, so releasing it before COMMIT proves that the transaction is the one
// that began. (In dedup mode the claim row proves it.)
const aliveSavepoint = "txconsume_alive"

// restoreTimeout bounds turning autocommit back on, which runs even when the caller's context has
// ended: a connection that goes back to the pool with autocommit off would break the next user's
// statements, so it is closed instead when this fails.
const restoreTimeout = 5 * time.Second

// txn is one transaction of the Processor, begun so that it can tell at its end whether it is
// still the transaction that began, and whether a handler ended it.
//
// On a guarded pool (opened through Connector) the driver knows both, at no cost: it refuses every
// statement after the server rolled the transaction back (a deadlock the handler swallowed), and
// a Commit by anyone but the Processor.
//
// On any other pool the Processor pins a connection and turns autocommit off for the span of the
// transaction: after the server rolled the transaction back, a handler's further statements then
// open a new transaction instead of each committing on its own. Before COMMIT it checks that the
// transaction still holds its claim (in row-lock mode: its savepoint) and rolls back otherwise;
// it turns autocommit back on before the connection returns to the pool. That costs three
// statements per transaction (row-lock mode: four).
type txn struct {
	*sqlx.Tx
	ctx   context.Context
	p     *Processor
	token uint64 // written into this transaction's claims

	owner *txguard.Owner // guarded pools
	conn  *sqlx.Conn     // other pools: the pinned connection, autocommit off
	check *sql.Stmt      // other pools in dedup mode: checkSQL
	ended bool           // other pools: the server ended the transaction (commit or rollback)
}

// begin starts a transaction of the Processor.
func (p *Processor) begin(ctx context.Context) (*txn, error) {
	t := &txn{ctx: ctx, p: p, token: rand.Uint64()>>1 | 1} // never 0, fits a signed BIGINT too
	if p.guarded {
		gctx, owner := txguard.WithOwner(ctx)
		tx, err := p.db.BeginTxx(gctx, &p.cfg.txOptions)
		if err != nil {
			return nil, fmt.Errorf("begin: %w", err)
		}
		t.Tx, t.owner = tx, owner
		return t, nil
	}
	if !p.cfg.rowLock {
		// Prepared on the pool before the connection is pinned, for the reason given in attempt.
		var err error
		if t.check, err = p.checkStmt(ctx); err != nil {
			return nil, err
		}
	}
	conn, err := p.db.Connx(ctx)
	if err != nil {
		return nil, fmt.Errorf("begin: %w", err)
	}
	t.conn = conn
	if _, err := conn.ExecContext(ctx, "SET autocommit = 0"); err != nil {
		t.close()
		return nil, fmt.Errorf("begin: turn autocommit off: %w", err)
	}
	// Not ctx itself: database/sql rolls a transaction back from a goroutine of its own when the
	// context of BeginTx ends, and that ROLLBACK could then reach the server after the SET
	// autocommit = 1 of close, which commits an open transaction. The Processor rolls back
	// itself (the handler's statements still end with ctx).
	if t.Tx, err = conn.BeginTxx(context.WithoutCancel(ctx), &p.cfg.txOptions); err != nil {
		t.close()
		return nil, fmt.Errorf("begin: %w", err)
	}
	if p.cfg.rowLock {
		if _, err := t.ExecContext(ctx, "SAVEPOINT "+aliveSavepoint); err != nil {
			t.close()
			return nil, fmt.Errorf("begin: %w", err)
		}
	}
	return t, nil
}

// commit commits, after making sure that the transaction is still the one that began: on a plain
// pool, witness is a key this transaction claimed and still holds ("" if it holds none, and then
// there is nothing to commit: it rolls back). An error wrapping ErrTxAborted means the
// transaction had been rolled back under the handler: nothing was committed.
func (t *txn) commit(witness string) error {
	if t.owner != nil {
		if t.endedByHandler(nil) {
			t.rollback()
			return errHandlerEnded
		}
		t.owner.End()
		if err := t.Commit(); err != nil {
			if errors.Is(err, txguard.ErrAborted) {
				return err // the server's error inside says what rolled it back
			}
			return commitError(err)
		}
		return nil
	}
	if err := t.ctx.Err(); err != nil {
		// The transaction does not end with ctx on a plain pool (see begin): never commit
		// after ctx ended, as database/sql would refuse to.
		t.rollback()
		return fmt.Errorf("commit: %w", err)
	}
	alive, err := t.alive(witness)
	if err != nil {
		t.rollback()
		return err
	}
	if !alive {
		// The statements the handler ran after the server rolled the transaction back are in a
		// new one, which this rolls back too.
		t.rollback()
		if witness == "" && !t.p.cfg.rowLock {
			return nil
		}
		return fmt.Errorf("%w: it was gone at commit (a deadlock or lock wait timeout that the handler did not return?)", ErrTxAborted)
	}
	err = t.Commit()
	t.ended = err == nil
	if err != nil {
		return commitError(err)
	}
	return nil
}

// alive checks on a plain pool that the transaction still holds its claim or savepoint.
func (t *txn) alive(witness string) (bool, error) {
	if t.p.cfg.rowLock {
		_, err := t.ExecContext(t.ctx, "RELEASE SAVEPOINT "+aliveSavepoint)
		if sqlerr.Number(err) == sqlerr.NoSuchSavepoint {
			return false, nil
		}
		return err == nil, err
	}
	if witness == "" {
		return false, nil
	}
	var one int
	err := t.StmtContext(t.ctx, t.check).QueryRowContext(t.ctx, t.p.group, witness, t.token).Scan(&one) //nolint:sqlclosecheck // closed by the tx
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	return err == nil, err
}

// rollback rolls back, and reports whether the transaction had already ended (a handler ended
// it, or database/sql did when the context ended).
func (t *txn) rollback() (wasEnded bool) {
	if t.owner != nil {
		t.owner.End()
	}
	err := t.Rollback()
	// On a plain pool ErrTxDone means a handler's own Commit or Rollback, which database/sql ran
	// to its end before returning to the handler: either way the server ended the transaction.
	t.ended = err == nil || errors.Is(err, sql.ErrTxDone)
	return errors.Is(err, sql.ErrTxDone)
}

// endedByHandler reports whether the transaction was ended by someone other than the Processor
// while its context lives; err is the error of the Processor's last operation on it, if any.
func (t *txn) endedByHandler(err error) bool {
	if t.ctx.Err() != nil {
		return false // database/sql rolled it back because the context ended
	}
	if t.owner != nil {
		return t.owner.EndedBy() != ""
	}
	return errors.Is(err, sql.ErrTxDone)
}

// close releases a pinned connection after turning autocommit back on, or closes it if that
// fails. The transaction must have ended.
func (t *txn) close() {
	if t.conn == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(t.ctx), restoreTimeout)
	defer cancel()
	// SET autocommit = 1 commits a transaction still open: make sure none is.
	var err error
	if !t.ended {
		_, err = t.conn.ExecContext(ctx, "ROLLBACK")
	}
	if err == nil {
		_, err = t.conn.ExecContext(ctx, "SET autocommit = 1")
	}
	if err != nil {
		// driver.ErrBadConn makes database/sql close the connection rather than pool it.
		_ = t.conn.Raw(func(any) error { return driver.ErrBadConn })
		t.p.cfg.logger.WarnContext(t.ctx, "txconsume: could not turn autocommit back on; connection closed",
			slog.String("group", t.p.group), slog.Any("error", err))
	}
	_ = t.conn.Close()
	t.conn = nil
}

// unclaimCommitted deletes, in a transaction of its own, the claims of keys that this transaction
// wrote and a handler's own Commit made permanent: their messages were not applied and must be
// handled when they come again. Keys whose claims were never committed are simply not found.
func (t *txn) unclaimCommitted(keys []string) error {
	if len(keys) == 0 || t.owner != nil {
		return nil // on a guarded pool a handler's Commit is refused: nothing was committed
	}
	// The context may end meanwhile; these claims must go all the same, or their messages are lost.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(t.ctx), restoreTimeout)
	defer cancel()
	tx, err := t.conn.BeginTxx(ctx, nil)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback() }()
	if err := t.p.updateClaims(ctx, tx, "DELETE FROM "+DedupTable, keys, t.token); err != nil {
		return err
	}
	return tx.Commit()
}

// errHandlerEnded is turned into ErrHandlerEndedTx with details by the caller.
var errHandlerEnded = errors.New("txconsume: transaction ended by the handler")
