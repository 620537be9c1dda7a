package txconsume

import (
	"context"
	"database/sql"
	"errors"
	"log/slog"
	"time"
)

// Option configures a Processor; see New.
type Option func(*config)

type config struct {
	keyFunc    KeyFunc
	rowLock    bool
	txOptions  sql.TxOptions
	maxRetries int
	backoffMin time.Duration
	backoffMax time.Duration
	logger     *slog.Logger
	hooks      Hooks
	errs       []error
}

// Defaults of the options.
const (
	DefaultMaxRetries = 5
	DefaultBackoffMin = 10 * time.Millisecond
	DefaultBackoffMax = 1 * time.Second
)

func defaultConfig() config {
	return config{
		keyFunc:    KeyByID,
		maxRetries: DefaultMaxRetries,
		backoffMin: DefaultBackoffMin,
		backoffMax: DefaultBackoffMax,
		logger:     slog.New(slog.DiscardHandler),
	}
}

// WithKeyFunc sets how the deduplication key is derived from a message.
// Default: KeyByID. Ready alternatives: KeyByFirstKey, KeyByProperty.
// Ignored in row-lock mode, which has no deduplication key.
func WithKeyFunc(f KeyFunc) Option {
	return func(c *config) {
		if f == nil {
			c.errs = append(c.errs, errors.New("txconsume: WithKeyFunc(nil)"))
			return
		}
		c.keyFunc = f
	}
}

// WithRowLock switches to row-lock mode: no row is written to txconsume_dedup. The handler
// itself locks the business row that proves the effect (SELECT ... FOR UPDATE) and returns
// ErrAlreadyApplied (possibly wrapped) when the effect is already there; the Processor then rolls
// back and reports Duplicate. Use it when the business state already records what was
// consumed (an order's status), so a second table would be redundant. Discard(err) in this mode
// rolls back and reports Discarded, but records nothing: a redelivery runs the handler again.
// Default: off (dedup-table mode).
func WithRowLock() Option {
	return func(c *config) { c.rowLock = true }
}

// WithIsolation sets the isolation level of the Processor's transactions.
// Default: sql.LevelDefault, the server's level (REPEATABLE READ on MySQL and MariaDB).
// Both REPEATABLE READ and READ COMMITTED are supported; New rejects the levels MySQL and MariaDB
// do not have (snapshot, write committed, linearizable). A non-default level costs one
// extra round trip per transaction with go-sql-driver/mysql (SET TRANSACTION ISOLATION LEVEL);
// to avoid it, leave this unset and set the session level in the DSN instead
// (transaction_isolation='READ-COMMITTED' on MySQL 8 and MariaDB 11.1+, tx_isolation on older
// MariaDB).
func WithIsolation(level sql.IsolationLevel) Option {
	return func(c *config) { c.txOptions.Isolation = level }
}

// WithMaxRetries sets how many times a transaction that lost a lock conflict (MySQL error 1213
// deadlock or 1205 lock wait timeout) is run again, handler included, before the error is
// returned wrapped with ErrRetriesExhausted. 0 disables retries.
// Default: DefaultMaxRetries (5).
func WithMaxRetries(n int) Option {
	return func(c *config) {
		if n < 0 {
			c.errs = append(c.errs, errors.New("txconsume: WithMaxRetries: negative"))
			return
		}
		c.maxRetries = n
	}
}

// WithRetryBackoff sets the wait before retry k: a random duration in [d/2, d) where
// d = min(maxDelay, minDelay*2^(k-1)). The jitter keeps transactions that deadlocked with each
// other from colliding again. The wait ends early if the context ends.
// Default: DefaultBackoffMin (10ms) and DefaultBackoffMax (1s).
func WithRetryBackoff(minDelay, maxDelay time.Duration) Option {
	return func(c *config) {
		if minDelay <= 0 || maxDelay < minDelay {
			c.errs = append(c.errs, errors.New("txconsume: WithRetryBackoff: need 0 < min <= max"))
			return
		}
		c.backoffMin, c.backoffMax = minDelay, maxDelay
	}
}

// WithLogger sets where the Processor logs retries (Warn), discarded messages (Warn, unless the
// transport that called Process logs them itself, as package rmq does: one line per discard) and
// handler panics (Error). Successes and duplicates are not logged; use Hooks for per-message
// telemetry. Default: a logger that discards everything.
func WithLogger(l *slog.Logger) Option {
	return func(c *config) {
		if l == nil {
			c.errs = append(c.errs, errors.New("txconsume: WithLogger(nil)"))
			return
		}
		c.logger = l
	}
}

// WithHooks sets callbacks for metrics and tracing (package oteltxconsume provides them for
// OpenTelemetry). Default: none.
func WithHooks(h Hooks) Option {
	return func(c *config) { c.hooks = h }
}

// Hooks are optional callbacks, called synchronously on the goroutine that calls Process or
// ProcessBatch; keep them fast and do not block in them. Nil fields are skipped. The status-mode
// processor of package idem takes the same Hooks.
type Hooks struct {
	// OnStart is called when the processing of a message begins, before its key is claimed
	// (ProcessBatch: once per message, in order). group is the Processor's consumer group. The
	// context it returns is the one the handler of that message runs under and the one OnHandler
	// and OnResult receive for it, so a tracing hook can start a span here that database
	// instrumentation inside the handler nests under. Every message OnStart was called for gets
	// exactly one OnResult. Returning nil keeps ctx.
	OnStart func(ctx context.Context, group string, msg *Message) context.Context

	// OnHandler is called after each run of the handler (a retried transaction runs it again)
	// with the handler's error, which is the Discard error for a discarded message, and the time
	// the handler took.
	OnHandler func(ctx context.Context, msg *Message, err error, elapsed time.Duration)

	// OnResult is called once per message when its processing has ended: after the commit or
	// rollback that decided it. r is Applied, Duplicate or Discarded with a nil err, or 0 with
	// the failure that Process returns (for a batch: that message's BatchFailure error, or the
	// error that failed the whole batch): err != nil means exactly "failed, will be
	// redelivered", never a discard. A failure wrapping ErrCommitUnknown may have been committed:
	// count it apart from other failures (errors.Is); its redelivery is counted again, as
	// Duplicate if the commit happened. A discard's reason reaches OnHandler (IsDiscard(err)) and
	// the log. elapsed is the time spent in Process, or in ProcessBatch for every message of the
	// batch, retries included.
	OnResult func(ctx context.Context, msg *Message, r Result, err error, elapsed time.Duration)

	// OnRetry is called before a transaction is run again after losing a lock conflict.
	// msgs holds the message (Process) or the batch (ProcessBatch); attempt is the number of the
	// attempt that failed, starting at 1; delay is the backoff about to be waited.
	OnRetry func(ctx context.Context, msgs []*Message, attempt int, err error, delay time.Duration)

	// OnInProgress is called by the status-mode processor (package idem) when a delivery finds
	// its key held by another attempt that is still processing it: an expected conflict when
	// duplicates arrive together, answered by a redelivery later. remaining is how long the
	// other attempt's record has left (0 when the store cannot tell). The transactional
	// Processor never calls it: the database makes a concurrent duplicate wait instead.
	OnInProgress func(ctx context.Context, msg *Message, remaining time.Duration)
}
