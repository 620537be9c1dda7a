package txconsume

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/txconsume/txconsume/txconsume/internal/txguard"
)

// ErrAlreadyApplied is returned by a handler (possibly wrapped) when it finds that the message's
// effect already exists, typically after locking the business row in row-lock mode
// (WithRowLock). The Processor rolls the transaction back and reports Duplicate.
var ErrAlreadyApplied = errors.New("txconsume: effect already applied")

// ErrEmptyKey is returned (wrapped) when a message's deduplication key is empty: a message
// without a key cannot be deduplicated, so it is never handed to the handler and nothing is
// written.
var ErrEmptyKey = errors.New("txconsume: empty deduplication key")

// ErrRetriesExhausted is wrapped around the last error when a transaction still lost a lock
// conflict (deadlock or lock wait timeout) after the retries allowed by WithMaxRetries.
var ErrRetriesExhausted = errors.New("txconsume: retries exhausted")

// ErrCommitUnknown is wrapped around the error of a COMMIT whose outcome the client cannot know:
// the connection failed after the COMMIT was sent, or may have been, so the server may have
// committed the transaction (the deduplication record and the handler's effects together) or
// rolled it back. Do not acknowledge the message: redeliver it. The redelivery settles the
// question: if the commit happened, the key is claimed and the redelivery is a Duplicate;
// if not, it is applied then. Match it with errors.Is.
var ErrCommitUnknown = errors.New("txconsume: commit outcome unknown")

// ErrClosed is returned by Process and ProcessBatch after Close.
var ErrClosed = errors.New("txconsume: processor closed")

// discardError marks a handler error as permanent: see Discard.
type discardError struct{ err error }

// Discard wraps a handler's error to say the message can never succeed (a poison message:
// malformed body, unknown entity...). The Processor rolls back the handler's writes, records the
// key as consumed with outcome "discarded" and reports Discarded with a nil error, so the broker
// stops redelivering it. err may be nil; errors.Is and errors.As see through the wrapper.
func Discard(err error) error { return &discardError{err: err} }

func (e *discardError) Error() string {
	if e.err == nil {
		return "txconsume: discarded"
	}
	return "txconsume: discarded: " + e.err.Error()
}

func (e *discardError) Unwrap() error { return e.err }

// IsDiscard reports whether err's chain holds an error made by Discard.
func IsDiscard(err error) bool {
	var d *discardError
	return errors.As(err, &d)
}

// retryAfterError asks the transport to redeliver no earlier than after a delay.
type retryAfterError struct {
	delay time.Duration
	err   error
}

// RetryAfter wraps a handler's error to ask that the message be redelivered no sooner than d
// (for example when a downstream dependency is not ready yet). The Processor treats it like any
// handler error (rollback, error returned); a transport adapter reads the delay with RetryDelay
// and maps it to its own redelivery mechanism (RocketMQ: the nearest delay level).
func RetryAfter(d time.Duration, err error) error { return &retryAfterError{delay: d, err: err} }

func (e *retryAfterError) Error() string {
	s := fmt.Sprintf("txconsume: retry after %s", e.delay)
	if e.err != nil {
		s += ": " + e.err.Error()
	}
	return s
}

func (e *retryAfterError) Unwrap() error { return e.err }

// RetryDelay returns the delay requested by RetryAfter anywhere in err's chain (including the
// failures of a *BatchError: the longest one wins), and whether there was one.
func RetryDelay(err error) (time.Duration, bool) {
	var be *BatchError
	if errors.As(err, &be) {
		var best time.Duration
		found := false
		for _, f := range be.Failures {
			if d, ok := RetryDelay(f.Err); ok && (!found || d > best) {
				best, found = d, true
			}
		}
		return best, found
	}
	var r *retryAfterError
	if errors.As(err, &r) {
		return r.delay, true
	}
	return 0, false
}

// PanicError is returned when a handler or a KeyFunc panicked. A handler's transaction was
// rolled back (in a batch: to the message's savepoint), a message whose KeyFunc panicked was not
// handled at all, and the process keeps running.
type PanicError struct {
	Value any    // the value passed to panic
	Stack []byte // the goroutine's stack at the panic
}

func (e *PanicError) Error() string { return fmt.Sprintf("txconsume: panic: %v", e.Value) }

// Unwrap returns the panic value when it is an error.
func (e *PanicError) Unwrap() error {
	if err, ok := e.Value.(error); ok {
		return err
	}
	return nil
}

// BatchError is returned by ProcessBatch when some messages failed while the others were
// committed. The results of the failed messages are zero (undefined); every other result is
// final. Redelivering the whole batch is safe: the committed messages come back as Duplicate.
type BatchError struct {
	Failures []BatchFailure // in message order
}

// BatchFailure is one failed message of a batch.
type BatchFailure struct {
	Index     int    // position in the slice given to ProcessBatch
	MessageID string // Message.ID
	Err       error
}

func (e *BatchError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "txconsume: %d message(s) of the batch failed:", len(e.Failures))
	for i, f := range e.Failures {
		if i == 3 {
			fmt.Fprintf(&b, " ... (%d more)", len(e.Failures)-i)
			break
		}
		fmt.Fprintf(&b, " [%d] %s: %v;", f.Index, f.MessageID, f.Err)
	}
	return strings.TrimSuffix(b.String(), ";")
}

// Unwrap returns the failures' errors, so errors.Is and errors.As look into each of them.
func (e *BatchError) Unwrap() []error {
	errs := make([]error, len(e.Failures))
	for i, f := range e.Failures {
		errs[i] = f.Err
	}
	return errs
}

// Failed returns the error of the message at index i, or nil if it did not fail.
func (e *BatchError) Failed(i int) error {
	for _, f := range e.Failures {
		if f.Index == i {
			return f.Err
		}
	}
	return nil
}

// ErrTxAborted is wrapped by the error of a transaction that the server rolled back while its
// handler went on: InnoDB rolls back the whole transaction, claim included, on a deadlock
// (and on some other errors), and a handler that drops that error and returns nil must not get
// its message reported Applied. Nothing of the transaction is committed, and the Processor runs
// it again like any lock conflict (WithMaxRetries). On a pool opened through Connector it also
// wraps the server's error, and the statements the handler runs after it fail with it.
var ErrTxAborted = txguard.ErrAborted

// ErrHandlerEndedTx is wrapped by the error of a message whose handler committed or rolled back
// the Processor's transaction (or ran a statement that would: COMMIT, ROLLBACK, BEGIN). The
// transaction is the Processor's: it commits it when the handler returns nil and rolls it back
// when the handler returns an error. Such a message is never reported Applied and is not run
// again by the same call; see the package documentation for what was committed.
var ErrHandlerEndedTx = txguard.ErrEndedByHandler
