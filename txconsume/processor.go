package txconsume

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"runtime/debug"
	"sync"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/txconsume/txconsume/migrations"
	"github.com/txconsume/txconsume/txconsume/internal/delivery"
	"github.com/txconsume/txconsume/txconsume/internal/sqlerr"
	"github.com/txconsume/txconsume/txconsume/internal/txguard"
)

// DedupTable is the table (created by package migrations) in which claimed keys are recorded.
const DedupTable = "txconsume_dedup"

// Outcomes stored in txconsume_dedup.outcome.
const (
	OutcomeApplied   = "applied"
	OutcomeDiscarded = "discarded"
)

// maxColumnLen is the size of the VARBINARY group, topic and msg_id columns.
const maxColumnLen = 255

// checkSQL finds the claim of a transaction again, by its token.
const checkSQL = "SELECT 1 FROM " + DedupTable + " WHERE consumer_group = ? AND dedup_key = ? AND claim_token = ?"

// claimSQL claims one key. The claim token lets a transaction on a plain pool find its own claim
// again (see txn).
const claimSQL = "INSERT INTO " + DedupTable +
	" (consumer_group, dedup_key, topic, msg_id, outcome, claim_token) VALUES (?, ?, ?, ?, ?, ?)"

// Processor consumes messages exactly once for one consumer group: each message's deduplication
// key is claimed in the same transaction as the handler's writes. A Processor is safe for
// concurrent use; several Processors (in one process or many) may share a group and a database.
type Processor struct {
	db    *sqlx.DB
	group string
	h     Handler
	cfg   config

	// guarded is set when db was opened through Connector: its driver refuses what a handler must
	// not do, for free. Otherwise every transaction pins its connection (see txn).
	guarded bool

	// claim is the single-message claim INSERT and check the SELECT that finds a transaction's
	// claim again (plain pools), prepared once per pool so that each costs one round trip even
	// without interpolateParams. closed is set by Close.
	mu     sync.Mutex
	claim  *sql.Stmt
	check  *sql.Stmt
	closed bool

	// lanes bounds how many transactions of ProcessBatch run at once and parts how many messages
	// each holds, both after lock conflicts (see runParts).
	lanes laneLimiter
	parts partSizer
}

// Close releases the Processor's prepared statements on every pooled connection. Process and
// ProcessBatch return ErrClosed after it. Call it once no delivery is running (after
// rmq.Consumer.Shutdown, for one): a delivery still running may fail, roll back and be
// redelivered. Close does not close the *sqlx.DB, and a second call does nothing. A long-lived service may never call it; code that creates Processors
// over and over (per tenant, say) should, or prepared statements pile up on the server.
func (p *Processor) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil
	}
	p.closed = true
	var errs []error
	for _, s := range []**sql.Stmt{&p.claim, &p.check} {
		if *s != nil {
			errs = append(errs, (*s).Close())
			*s = nil
		}
	}
	return errors.Join(errs...)
}

func (p *Processor) isClosed() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.closed
}

// New returns a Processor that runs h for the consumer group named group (usually the RocketMQ
// consumer group; at most 255 bytes) on db. Deduplication is per group: two groups consuming
// the same message each apply it once. The schema of package migrations must be applied.
func New(db *sqlx.DB, group string, h Handler, opts ...Option) (*Processor, error) {
	if db == nil {
		return nil, errors.New("txconsume: New: nil db")
	}
	if h == nil {
		return nil, errors.New("txconsume: New: nil handler")
	}
	if group == "" || len(group) > maxColumnLen {
		return nil, fmt.Errorf("txconsume: New: group must be 1 to %d bytes, got %d", maxColumnLen, len(group))
	}
	cfg := defaultConfig()
	for _, o := range opts {
		o(&cfg)
	}
	if len(cfg.errs) > 0 {
		return nil, errors.Join(cfg.errs...)
	}
	if cfg.txOptions.ReadOnly {
		return nil, errors.New("txconsume: New: read-only transactions cannot claim keys")
	}
	switch cfg.txOptions.Isolation {
	case sql.LevelDefault, sql.LevelReadUncommitted, sql.LevelReadCommitted, sql.LevelRepeatableRead, sql.LevelSerializable:
	default:
		// The driver would reject every Begin, failing every message instead of the setup.
		return nil, fmt.Errorf("txconsume: New: isolation level %s does not exist in MySQL or MariaDB", cfg.txOptions.Isolation)
	}
	p := &Processor{db: db, group: group, h: h, cfg: cfg}
	if db.DB != nil {
		p.guarded = txguard.IsGuarded(db.Driver())
	}
	return p, nil
}

// Group returns the consumer group the Processor deduplicates for.
func (p *Processor) Group() string { return p.group }

// Check reports whether the Processor can work: the database answers and, in dedup-table mode,
// its txconsume schema is migrated to the version this build embeds (see migrations.Check). An
// unmigrated schema is an error that wraps migrations.ErrNotMigrated and says how to migrate.
// rmq.Consumer calls Check at Start and from its own Check, which suits a readiness probe.
func (p *Processor) Check(ctx context.Context) error {
	if err := p.db.PingContext(ctx); err != nil {
		return fmt.Errorf("txconsume: group %s: database unreachable: %w", p.group, err)
	}
	if p.cfg.rowLock {
		return nil // row-lock mode uses the handler's own tables only
	}
	if err := migrations.Check(ctx, p.db.DB); err != nil {
		return fmt.Errorf("txconsume: group %s: %w", p.group, err)
	}
	return nil
}

// Process consumes one message:
//
//   - its key (see WithKeyFunc) is claimed in txconsume_dedup and the handler runs in the same
//     transaction; on commit the result is Applied;
//   - if the key was already committed by an earlier delivery, the result is Duplicate and the
//     handler does not run; a concurrent delivery of the same key waits for the first one's
//     transaction and then gets Duplicate (or claims the key if the first one rolled back);
//   - if the handler returns Discard(err), its writes are rolled back, the key is recorded as
//     discarded and the result is Discarded with a nil error;
//   - if the handler returns ErrAlreadyApplied, the transaction is rolled back and the result
//     is Duplicate;
//   - any other handler error, a panic (*PanicError) or a cancelled context rolls everything
//     back and returns the error: the message should be redelivered. A RetryAfter error keeps
//     its delay (see RetryDelay);
//   - a KeyFunc that fails or panics (a *PanicError) returns its error before anything runs;
//   - a deadlock or lock wait timeout reruns the whole transaction, handler included, up to
//     WithMaxRetries times;
//   - if the connection fails after COMMIT was sent, the error wraps ErrCommitUnknown: the
//     message may or may not have been applied, and its redelivery settles which (Duplicate if
//     the commit happened).
//
// The Result is meaningful only when the error is nil. Acknowledge the message to the broker
// only then; on any error, let it be redelivered.
func (p *Processor) Process(ctx context.Context, msg *Message) (Result, error) {
	start := time.Now()
	if msg != nil {
		ctx = p.cfg.hooks.start(ctx, p.group, msg)
	}
	r, err := p.process(ctx, msg)
	if p.cfg.hooks.OnResult != nil && msg != nil {
		p.cfg.hooks.OnResult(ctx, msg, r, err, time.Since(start))
	}
	return r, err
}

func (p *Processor) process(ctx context.Context, msg *Message) (Result, error) {
	if msg == nil {
		return 0, errors.New("txconsume: Process: nil message")
	}
	if p.isClosed() {
		return 0, ErrClosed
	}
	var key string
	if !p.cfg.rowLock {
		var err error
		if key, err = p.key(msg); err != nil {
			return 0, err
		}
	}
	var r Result
	var herr error
	err := p.withRetries(ctx, []*Message{msg}, func() error {
		var err error
		r, herr, err = p.attempt(ctx, msg, key)
		return err
	})
	if err != nil {
		return 0, p.wrapErr(msg, err)
	}
	if r == Discarded {
		p.reportDiscard(ctx, msg, key, herr)
	}
	return r, nil
}

// reportDiscard hands a discard's reason to the transport that called Process, which logs it in
// its own line (package rmq), or else logs it here: either way one line per discard.
func (p *Processor) reportDiscard(ctx context.Context, msg *Message, key string, reason error) {
	if delivery.FromContext(ctx).Discarded(msg, reason) {
		return
	}
	p.cfg.logger.WarnContext(ctx, "txconsume: message discarded", slog.String("group", p.group),
		slog.String("topic", msg.Topic), slog.String("msg_id", msg.ID), slog.String("key", key),
		slog.Any("reason", reason))
}

// attempt runs one transaction for msg. It returns the result, the handler's error when the
// result is Discarded or Duplicate by ErrAlreadyApplied, and the error that failed the attempt.
func (p *Processor) attempt(ctx context.Context, msg *Message, key string) (Result, error, error) {
	// The claim statement is prepared on the pool before the transaction takes its connection:
	// preparing it while holding one would need a second connection, and with as many
	// deliveries in flight as the pool has connections every one of them would wait forever.
	var stmt *sql.Stmt
	if !p.cfg.rowLock {
		var err error
		if stmt, err = p.claimStmt(ctx); err != nil {
			return 0, nil, err
		}
	}
	t, err := p.begin(ctx)
	if err != nil {
		return 0, nil, fmt.Errorf("txconsume: %w", err)
	}
	defer t.close()
	done := false
	defer func() {
		if !done {
			t.rollback()
		}
	}()
	stored := ""
	if !p.cfg.rowLock {
		stored = StoredKey(key)
		_, err = t.StmtContext(ctx, stmt).ExecContext(ctx, p.group, stored, //nolint:sqlclosecheck // closed by the tx
			clip(msg.Topic), clip(msg.ID), OutcomeApplied, t.token)
		if sqlerr.IsDuplicate(err) {
			return Duplicate, nil, nil
		}
		if err != nil {
			return 0, nil, fmt.Errorf("txconsume: claim key: %w", err)
		}
	}
	if herr := p.call(ctx, t.Tx, msg); herr != nil {
		done = true
		var rerr error
		if t.rollback() {
			rerr = sql.ErrTxDone
		}
		if t.endedByHandler(rerr) {
			// The handler failed: whatever its own Commit made permanent must not count as
			// consumed, or a redelivery would skip the message.
			var unclaim []string
			if stored != "" {
				unclaim = []string{stored}
			}
			return 0, nil, p.handlerEnded(ctx, t, []*Message{msg}, unclaim, herr)
		}
		switch {
		case sqlerr.IsRetryable(herr):
			return 0, nil, herr
		case IsDiscard(herr):
			if p.cfg.rowLock {
				return Discarded, herr, nil
			}
			r, err := p.recordDiscard(ctx, msg, key)
			return r, herr, err
		case errors.Is(herr, ErrAlreadyApplied):
			return Duplicate, herr, nil
		default:
			return 0, nil, herr
		}
	}
	done = true
	if err := t.commit(stored); err != nil {
		if errors.Is(err, errHandlerEnded) || t.endedByHandler(err) {
			// It returned nil: what it committed itself, claim included, is all it meant to do.
			return 0, nil, p.handlerEnded(ctx, t, []*Message{msg}, nil, nil)
		}
		if errors.Is(err, ErrTxAborted) {
			p.cfg.logger.WarnContext(ctx, "txconsume: the server rolled the transaction back but the handler went on "+
				"and returned nil; a handler must return every error from tx", slog.String("group", p.group),
				slog.String("msg_id", msg.ID), slog.Any("error", err))
		}
		return 0, nil, fmt.Errorf("txconsume: %w", err)
	}
	return Applied, nil, nil
}

// handlerEnded reports a handler that committed or rolled back the Processor's transaction, after
// removing the claims in unclaim if a Commit of the handler made them permanent. herr is what the
// handler returned, if anything.
func (p *Processor) handlerEnded(ctx context.Context, t *txn, msgs []*Message, unclaim []string, herr error) error {
	how := "Commit or Rollback"
	if t.owner != nil && t.owner.EndedBy() != "" {
		how = t.owner.EndedBy()
	}
	err := fmt.Errorf("%w (%s): the transaction belongs to the Processor, which commits it when the handler "+
		"returns nil and rolls it back on an error", ErrHandlerEndedTx, how)
	if herr != nil && !errors.Is(herr, ErrHandlerEndedTx) {
		err = fmt.Errorf("%w; the handler returned: %w", err, herr)
	}
	ids := make([]string, len(msgs))
	for i, m := range msgs {
		ids[i] = m.ID
	}
	if uerr := t.unclaimCommitted(unclaim); uerr != nil {
		// These keys stay recorded as consumed although their messages were not applied.
		err = fmt.Errorf("%w; removing the claims it committed failed, messages may be lost: %w", err, uerr)
	}
	p.cfg.logger.ErrorContext(ctx, "txconsume: the handler ended the Processor's transaction", slog.String("group", p.group),
		slog.Any("msg_ids", ids), slog.String("how", how), slog.Any("error", err))
	return err
}

// commitError describes a failed tx.Commit. A server error is an answer: the server did not
// commit. database/sql checks the context before it sends COMMIT, so a context error means
// nothing was sent. Anything else (a connection that broke, an answer that never came) leaves the
// outcome unknown: ErrCommitUnknown.
func commitError(err error) error {
	if sqlerr.Number(err) != 0 || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) ||
		errors.Is(err, sql.ErrTxDone) {
		return fmt.Errorf("commit: %w", err)
	}
	return fmt.Errorf("commit: %w: %w", ErrCommitUnknown, err)
}

// recordDiscard records key as discarded in a fresh transaction, after the handler's transaction
// was rolled back (the dedup claim with it). Doing it here rather than behind a savepoint keeps
// the common path at one statement before the handler. If another delivery claimed the key in
// between, that delivery's outcome stands and the result is Duplicate.
func (p *Processor) recordDiscard(ctx context.Context, msg *Message, key string) (Result, error) {
	stmt, err := p.claimStmt(ctx) //nolint:sqlclosecheck // prepared once, lives as long as the Processor
	if err != nil {
		return 0, err
	}
	// A single autocommit statement is its own transaction.
	_, err = stmt.ExecContext(ctx, p.group, StoredKey(key), clip(msg.Topic), clip(msg.ID), OutcomeDiscarded, 0)
	if sqlerr.IsDuplicate(err) {
		return Duplicate, nil
	}
	if err != nil {
		return 0, fmt.Errorf("txconsume: record discard: %w", err)
	}
	return Discarded, nil
}

// call runs the handler, turning a panic into a *PanicError, and reports the run to
// Hooks.OnHandler.
func (p *Processor) call(ctx context.Context, tx *sqlx.Tx, msg *Message) (err error) {
	start := time.Now()
	defer func() {
		if v := recover(); v != nil {
			pe := &PanicError{Value: v, Stack: debug.Stack()}
			p.cfg.logger.ErrorContext(ctx, "txconsume: handler panicked", slog.String("group", p.group),
				slog.String("msg_id", msg.ID), slog.Any("panic", v), slog.String("stack", string(pe.Stack)))
			err = pe
		}
		if p.cfg.hooks.OnHandler != nil {
			p.cfg.hooks.OnHandler(ctx, msg, err, time.Since(start))
		}
	}()
	return p.h(ctx, tx, msg)
}

// key returns msg's deduplication key, rejecting an empty one. A panicking KeyFunc is a
// *PanicError, as a panicking handler is: one bad message must not crash the consumer.
func (p *Processor) key(msg *Message) (_ string, err error) {
	defer func() {
		if v := recover(); v != nil {
			pe := &PanicError{Value: v, Stack: debug.Stack()}
			p.cfg.logger.Error("txconsume: key func panicked", slog.String("group", p.group),
				slog.String("msg_id", msg.ID), slog.Any("panic", v), slog.String("stack", string(pe.Stack)))
			err = fmt.Errorf("txconsume: key of message %s: %w", msg.ID, pe)
		}
	}()
	k, err := p.cfg.keyFunc(msg)
	if err != nil {
		return "", fmt.Errorf("txconsume: key of message %s: %w", msg.ID, err)
	}
	if k == "" {
		return "", fmt.Errorf("txconsume: key of message %s: %w", msg.ID, ErrEmptyKey)
	}
	return k, nil
}

func (p *Processor) claimStmt(ctx context.Context) (*sql.Stmt, error) {
	return p.prepared(ctx, &p.claim, claimSQL)
}

func (p *Processor) checkStmt(ctx context.Context) (*sql.Stmt, error) {
	return p.prepared(ctx, &p.check, checkSQL)
}

// prepared returns the statement in slot, preparing query on the pool the first time.
func (p *Processor) prepared(ctx context.Context, slot **sql.Stmt, query string) (*sql.Stmt, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil, ErrClosed
	}
	if *slot != nil {
		return *slot, nil
	}
	s, err := p.db.PrepareContext(ctx, query) //nolint:sqlclosecheck // lives as long as the Processor: Close closes it
	if err != nil {
		return nil, fmt.Errorf("txconsume: prepare %q (is the schema migrated?): %w", query, err)
	}
	*slot = s
	return s, nil
}

// withRetries runs fn until it succeeds, fails with an error that is not a lock conflict, the
// retries are used up or ctx ends.
func (p *Processor) withRetries(ctx context.Context, msgs []*Message, fn func() error) error {
	for attempt := 1; ; attempt++ {
		err := fn()
		if err == nil || !retryable(err) {
			return err
		}
		if attempt > p.cfg.maxRetries {
			return fmt.Errorf("%w after %d attempts: %w", ErrRetriesExhausted, attempt, err)
		}
		if cerr := ctx.Err(); cerr != nil {
			return retryAbandoned(err, cerr)
		}
		delay := p.backoff(attempt)
		p.cfg.logger.WarnContext(ctx, "txconsume: lock conflict, retrying transaction",
			slog.String("group", p.group), slog.Int("attempt", attempt), slog.Duration("delay", delay),
			slog.Any("error", err))
		if p.cfg.hooks.OnRetry != nil {
			p.cfg.hooks.OnRetry(ctx, msgs, attempt, err, delay)
		}
		if cerr := sleepCtx(ctx, delay); cerr != nil {
			return retryAbandoned(err, cerr)
		}
	}
}

// retryable reports a transaction that lost a conflict with another one, or that the server
// rolled back under a handler which went on (most likely after such a conflict): running it again
// from the start can succeed.
func retryable(err error) bool {
	return sqlerr.IsRetryable(err) || errors.Is(err, ErrTxAborted)
}

// retryAbandoned keeps both the lock conflict and the context's error, so that callers can tell
// with errors.Is that the retry was cut short by cancellation or a deadline.
func retryAbandoned(err, cerr error) error {
	return fmt.Errorf("%w (retry abandoned: %w)", err, cerr)
}

// backoff returns a random delay in [d/2, d), d = min(max, min*2^(attempt-1)).
func (p *Processor) backoff(attempt int) time.Duration {
	d := p.cfg.backoffMin
	for i := 1; i < attempt && d < p.cfg.backoffMax; i++ {
		if d > p.cfg.backoffMax/2 {
			// Doubling would pass the maximum, or overflow into a negative delay that
			// rand.N panics on.
			d = p.cfg.backoffMax
			break
		}
		d *= 2
	}
	half := d / 2
	return half + rand.N(d-half)
}

func (p *Processor) wrapErr(msg *Message, err error) error {
	var pe *PanicError
	if errors.As(err, &pe) || errors.Is(err, ErrEmptyKey) {
		return err
	}
	return fmt.Errorf("txconsume: group %s message %s: %w", p.group, msg.ID, err)
}

// clip cuts s to the size of a diagnostic column.
func clip(s string) string {
	if len(s) > maxColumnLen {
		return s[:maxColumnLen]
	}
	return s
}
