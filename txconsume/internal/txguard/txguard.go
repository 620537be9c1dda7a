// Package txguard wraps a database/sql driver so that transactions cannot outlive themselves:
//
//   - once a statement of a transaction fails with an error after which the server has rolled
//     the whole transaction back (a deadlock, say; in an owned transaction also a lock wait
//     timeout, after which it may have), every later statement of it is refused, and so is its
//     Commit (which rolls back instead). Without this, the statements after such an
//     error run outside any transaction, each committing on its own, and the final COMMIT
//     succeeds although the transaction is gone;
//   - a transaction begun with a context from WithOwner can be committed only after its owner has
//     called Owner.End: a Commit from anyone else (a handler) rolls back instead and fails, and a
//     statement that would end the transaction (COMMIT, ROLLBACK, BEGIN, START TRANSACTION) is
//     refused.
//
// It costs no round trip: everything it knows it learns from the results the driver returns.
package txguard

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"

	"github.com/txconsume/txconsume/txconsume/internal/sqlerr"
)

// ErrAborted is wrapped by the error of every statement refused, and of the Commit rolled back,
// because the server had already rolled the transaction back.
var ErrAborted = errors.New("txconsume: transaction rolled back by the server")

// ErrEndedByHandler is wrapped by the error of a Commit, or of a statement ending the
// transaction, that an owned transaction refused because its owner had not ended it.
var ErrEndedByHandler = errors.New("txconsume: the handler ended the Processor's transaction")

// AbortedError is the error of a statement refused because the server rolled the transaction back
// after Cause. It wraps both ErrAborted and Cause, so that errors.Is and errors.As find the
// server's error (a *mysql.MySQLError with number 1213, say).
type AbortedError struct{ Cause error }

func (e *AbortedError) Error() string {
	return fmt.Sprintf("txconsume: statement refused: the server rolled the transaction back after: %v", e.Cause)
}

// Unwrap returns ErrAborted and the server's error.
func (e *AbortedError) Unwrap() []error { return []error{ErrAborted, e.Cause} }

// Owner marks a transaction as owned by one party (a Processor), which alone may end it.
type Owner struct {
	mu      sync.Mutex
	ending  bool
	endedBy string // "Commit" or "Rollback" called by someone else, or a statement's text
	aborted error
}

type ownerKey struct{}

// WithOwner returns a context whose transaction (begun with it) only the returned Owner may
// commit.
func WithOwner(ctx context.Context) (context.Context, *Owner) {
	o := &Owner{}
	return context.WithValue(ctx, ownerKey{}, o), o
}

func ownerFrom(ctx context.Context) *Owner {
	o, _ := ctx.Value(ownerKey{}).(*Owner)
	return o
}

// End tells the guard that the owner itself is about to commit or roll back.
func (o *Owner) End() {
	o.mu.Lock()
	o.ending = true
	o.mu.Unlock()
}

// EndedBy returns how someone other than the owner ended (or tried to end) the transaction:
// "Commit", "Rollback" or the refused statement; "" if nobody did.
func (o *Owner) EndedBy() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.endedBy
}

// Aborted returns the server error after which the transaction was rolled back, or nil.
func (o *Owner) Aborted() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.aborted
}

func (o *Owner) mayEnd() bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.ending
}

func (o *Owner) setEndedBy(how string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.endedBy == "" && !o.ending {
		o.endedBy = how
	}
}

func (o *Owner) setAborted(err error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.aborted == nil {
		o.aborted = err
	}
}

// Connector wraps a driver.Connector.
type Connector struct{ base driver.Connector }

// NewConnector returns a Connector whose connections guard their transactions.
func NewConnector(base driver.Connector) *Connector { return &Connector{base: base} }

// Connect implements driver.Connector.
func (c *Connector) Connect(ctx context.Context) (driver.Conn, error) {
	dc, err := c.base.Connect(ctx)
	if err != nil {
		return nil, err
	}
	return &conn{base: dc}, nil
}

// Driver implements driver.Connector. Its result identifies a guarded pool (sql.DB.Driver).
func (c *Connector) Driver() driver.Driver { return &Driver{base: c.base.Driver()} }

// Close closes the wrapped connector if it has a Close method (database/sql calls it from
// DB.Close).
func (c *Connector) Close() error {
	if cl, ok := c.base.(io.Closer); ok {
		return cl.Close()
	}
	return nil
}

// Driver wraps a driver.Driver; sql.DB.Driver returns it for a pool opened through Connector.
type Driver struct{ base driver.Driver }

// Open implements driver.Driver.
func (d *Driver) Open(name string) (driver.Conn, error) {
	dc, err := d.base.Open(name)
	if err != nil {
		return nil, err
	}
	return &conn{base: dc}, nil
}

// IsGuarded reports whether d is the driver of a pool opened through a Connector.
func IsGuarded(d driver.Driver) bool {
	_, ok := d.(*Driver)
	return ok
}

// conn is a guarded connection. database/sql uses a connection from one goroutine at a time, so
// its fields need no lock.
type conn struct {
	base driver.Conn
	tx   *tx // the open transaction, nil outside one
}

// before refuses a statement in a transaction that can no longer run one.
func (c *conn) before(query string) error {
	if c.tx == nil {
		return nil
	}
	if c.tx.aborted != nil {
		return &AbortedError{Cause: c.tx.aborted}
	}
	if c.tx.owner != nil && endsTransaction(query) && !c.tx.owner.mayEnd() {
		c.tx.owner.setEndedBy(strings.TrimSpace(query))
		return fmt.Errorf("%w: statement %q refused", ErrEndedByHandler, strings.TrimSpace(query))
	}
	return nil
}

// after notes an error after which the server has rolled the transaction back. In an owned
// transaction a lock wait timeout counts too, as it may have (innodb_rollback_on_timeout): the
// owner runs the whole transaction again anyway, while the service's own code may rightly retry
// just the statement.
func (c *conn) after(err error) {
	if err == nil || c.tx == nil || c.tx.aborted != nil {
		return
	}
	owned := c.tx.owner != nil
	rolledBack := sqlerr.RollsBackTransaction(err) || owned && sqlerr.Number(err) == sqlerr.LockWaitTimeout
	if !rolledBack {
		return
	}
	c.tx.aborted = err
	if c.tx.owner != nil {
		c.tx.owner.setAborted(err)
	}
}

// endsTransaction reports whether query begins with a statement that ends or begins a
// transaction: COMMIT, ROLLBACK (but not ROLLBACK TO SAVEPOINT), BEGIN or START TRANSACTION. It
// looks at the first words only, without copying the query (a batch claim can be long).
func endsTransaction(query string) bool {
	first, rest := word(query)
	switch {
	case strings.EqualFold(first, "COMMIT"), strings.EqualFold(first, "BEGIN"):
		return true
	case strings.EqualFold(first, "START"):
		second, _ := word(rest)
		return strings.EqualFold(second, "TRANSACTION")
	case strings.EqualFold(first, "ROLLBACK"):
		second, rest := word(rest)
		if strings.EqualFold(second, "WORK") {
			second, _ = word(rest)
		}
		return !strings.EqualFold(second, "TO")
	}
	return false
}

// word returns the first word of s (letters only) and what follows it.
func word(s string) (string, string) {
	s = strings.TrimLeft(s, " \t\r\n")
	i := 0
	for i < len(s) && (s[i] >= 'a' && s[i] <= 'z' || s[i] >= 'A' && s[i] <= 'Z') {
		i++
	}
	return s[:i], s[i:]
}

func (c *conn) Prepare(query string) (driver.Stmt, error) {
	return c.PrepareContext(context.Background(), query)
}

func (c *conn) PrepareContext(ctx context.Context, query string) (driver.Stmt, error) {
	if err := c.before(query); err != nil {
		return nil, err
	}
	var s driver.Stmt
	var err error
	if p, ok := c.base.(driver.ConnPrepareContext); ok {
		s, err = p.PrepareContext(ctx, query)
	} else {
		s, err = c.base.Prepare(query)
	}
	c.after(err)
	if err != nil {
		return nil, err
	}
	return &stmt{base: s, c: c, query: query}, nil
}

func (c *conn) Close() error { return c.base.Close() }

func (c *conn) Begin() (driver.Tx, error) {
	return c.BeginTx(context.Background(), driver.TxOptions{})
}

func (c *conn) BeginTx(ctx context.Context, opts driver.TxOptions) (driver.Tx, error) {
	var t driver.Tx
	var err error
	if b, ok := c.base.(driver.ConnBeginTx); ok {
		t, err = b.BeginTx(ctx, opts)
	} else {
		t, err = c.base.Begin() //nolint:staticcheck // only for drivers without BeginTx
	}
	if err != nil {
		return nil, err
	}
	c.tx = &tx{c: c, base: t, owner: ownerFrom(ctx)}
	return c.tx, nil
}

func (c *conn) ExecContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Result, error) {
	e, ok := c.base.(driver.ExecerContext)
	if !ok {
		return nil, driver.ErrSkip
	}
	if err := c.before(query); err != nil {
		return nil, err
	}
	r, err := e.ExecContext(ctx, query, args)
	c.after(err)
	return r, err
}

func (c *conn) QueryContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Rows, error) {
	q, ok := c.base.(driver.QueryerContext)
	if !ok {
		return nil, driver.ErrSkip
	}
	if err := c.before(query); err != nil {
		return nil, err
	}
	r, err := q.QueryContext(ctx, query, args)
	c.after(err)
	if err != nil {
		return nil, err
	}
	return wrapRows(r, c), nil
}

func (c *conn) Ping(ctx context.Context) error {
	if p, ok := c.base.(driver.Pinger); ok {
		return p.Ping(ctx)
	}
	return nil
}

func (c *conn) ResetSession(ctx context.Context) error {
	c.tx = nil
	if r, ok := c.base.(driver.SessionResetter); ok {
		return r.ResetSession(ctx)
	}
	return nil
}

func (c *conn) IsValid() bool {
	if v, ok := c.base.(driver.Validator); ok {
		return v.IsValid()
	}
	return true
}

func (c *conn) CheckNamedValue(nv *driver.NamedValue) error {
	if ch, ok := c.base.(driver.NamedValueChecker); ok {
		return ch.CheckNamedValue(nv)
	}
	return driver.ErrSkip
}

// tx is a guarded transaction.
type tx struct {
	c       *conn
	base    driver.Tx
	owner   *Owner
	aborted error // the error after which the server rolled it back
}

func (t *tx) Commit() error {
	defer t.end()
	refused := t.owner != nil && !t.owner.mayEnd()
	if refused {
		t.owner.setEndedBy("Commit")
	}
	if t.aborted == nil && !refused {
		return t.base.Commit()
	}
	if err := t.base.Rollback(); err != nil {
		return err
	}
	if refused {
		return fmt.Errorf("%w: Commit refused, the transaction was rolled back", ErrEndedByHandler)
	}
	return &AbortedError{Cause: t.aborted}
}

func (t *tx) Rollback() error {
	defer t.end()
	if t.owner != nil {
		t.owner.setEndedBy("Rollback")
	}
	return t.base.Rollback()
}

func (t *tx) end() {
	if t.c.tx == t {
		t.c.tx = nil
	}
}

// stmt is a guarded prepared statement; it checks the state of its connection's transaction at
// each execution, whether it was prepared inside the transaction or before it.
type stmt struct {
	base  driver.Stmt
	c     *conn
	query string
}

func (s *stmt) Close() error  { return s.base.Close() }
func (s *stmt) NumInput() int { return s.base.NumInput() }

func (s *stmt) Exec(args []driver.Value) (driver.Result, error) {
	if err := s.c.before(s.query); err != nil {
		return nil, err
	}
	r, err := s.base.Exec(args) //nolint:staticcheck // database/sql's legacy entry point
	s.c.after(err)
	return r, err
}

func (s *stmt) Query(args []driver.Value) (driver.Rows, error) {
	if err := s.c.before(s.query); err != nil {
		return nil, err
	}
	r, err := s.base.Query(args) //nolint:staticcheck // database/sql's legacy entry point
	s.c.after(err)
	if err != nil {
		return nil, err
	}
	return wrapRows(r, s.c), nil
}

func (s *stmt) ExecContext(ctx context.Context, args []driver.NamedValue) (driver.Result, error) {
	e, ok := s.base.(driver.StmtExecContext)
	if !ok {
		return nil, errors.New("txguard: the driver's statement has no ExecContext")
	}
	if err := s.c.before(s.query); err != nil {
		return nil, err
	}
	r, err := e.ExecContext(ctx, args)
	s.c.after(err)
	return r, err
}

func (s *stmt) QueryContext(ctx context.Context, args []driver.NamedValue) (driver.Rows, error) {
	q, ok := s.base.(driver.StmtQueryContext)
	if !ok {
		return nil, errors.New("txguard: the driver's statement has no QueryContext")
	}
	if err := s.c.before(s.query); err != nil {
		return nil, err
	}
	r, err := q.QueryContext(ctx, args)
	s.c.after(err)
	if err != nil {
		return nil, err
	}
	return wrapRows(r, s.c), nil
}

func (s *stmt) CheckNamedValue(nv *driver.NamedValue) error {
	if ch, ok := s.base.(driver.NamedValueChecker); ok {
		return ch.CheckNamedValue(nv)
	}
	return driver.ErrSkip
}

func (s *stmt) ColumnConverter(idx int) driver.ValueConverter {
	if cc, ok := s.base.(driver.ColumnConverter); ok { //nolint:staticcheck // delegated as is
		return cc.ColumnConverter(idx)
	}
	return driver.DefaultParameterConverter
}
