package idem

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"time"

	"github.com/txconsume/txconsume/txconsume"
	"github.com/txconsume/txconsume/txconsume/internal/delivery"
)

// Handler performs a message's effects outside the database (an HTTP call, an e-mail). It must
// stop when ctx ends: the deadline falls before the PROCESSING record expires, and past it another
// delivery may take the key over. Return txconsume.Discard(err) to record the message as consumed
// without retrying it (a poison message), or any other error to have it redelivered.
type Handler func(ctx context.Context, msg *txconsume.Message) error

// Processor runs a Handler at most once per key at a time and skips keys already consumed, using
// a Store of PROCESSING/CONSUMED records. It is safe for concurrent use and plugs into the
// RocketMQ adapter like the transactional processor: rmq.Listener(p).
type Processor struct {
	store Store
	group string
	h     Handler
	cfg   config
}

// New returns a Processor for the consumer group group (records are kept per group, so use the
// consumer's group name). It fails on a nil store or handler, an empty group or invalid options.
func New(store Store, group string, h Handler, opts ...Option) (*Processor, error) {
	cfg := defaultConfig()
	for _, o := range opts {
		o(&cfg)
	}
	var errs []error
	if store == nil {
		errs = append(errs, errors.New("idem: store is nil"))
	}
	if group == "" {
		errs = append(errs, errors.New("idem: group is empty"))
	}
	if h == nil {
		errs = append(errs, errors.New("idem: handler is nil"))
	}
	errs = append(errs, cfg.validate())
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return &Processor{store: store, group: group, h: h, cfg: cfg}, nil
}

// Process handles one delivery:
//
//   - the key is CONSUMED: (Duplicate, nil), the handler does not run;
//   - another attempt is PROCESSING the key: an error wrapping ErrInProgress and carrying
//     txconsume.RetryAfter (1s, doubling with each redelivery, capped by the time that
//     attempt's record has left), so the message is redelivered later (or (Duplicate, nil)
//     under AckAsDuplicate);
//   - otherwise the handler runs. On success the record becomes CONSUMED: (Applied, nil). On
//     txconsume.Discard the record becomes CONSUMED too: (Discarded, nil). On any other error or a
//     panic (returned as a *txconsume.PanicError) the record is deleted and the error returned,
//     so the redelivery processes the key.
//   - the store cannot be reached: a *StoreError and the handler does not run (see WithFailOpen);
//   - the key function fails or panics (a *txconsume.PanicError): the error, and nothing runs.
//
// Once the handler has succeeded, Process reports success even if the record cannot be marked
// CONSUMED (it logs the failure): the effect has happened, and a redelivery would only repeat it.
// The record then expires after the TTL and a later duplicate would run the handler again.
func (p *Processor) Process(ctx context.Context, msg *txconsume.Message) (txconsume.Result, error) {
	if msg == nil {
		return 0, errors.New("idem: nil message")
	}
	start := time.Now()
	if p.cfg.hooks.OnStart != nil {
		if hctx := p.cfg.hooks.OnStart(ctx, p.group, msg); hctx != nil {
			ctx = hctx
		}
	}
	r, err := p.process(ctx, msg)
	if p.cfg.hooks.OnResult != nil {
		p.cfg.hooks.OnResult(ctx, msg, r, err, time.Since(start))
	}
	return r, err
}

// Group returns the consumer group the Processor keeps records for.
func (p *Processor) Group() string { return p.group }

// Check reports whether the store is usable, when it implements Checker (both stores of this
// package do: the MySQL store checks the database and its migrated schema, the Redis store pings).
// rmq.Consumer calls it at Start and from its own Check, which suits a readiness probe.
func (p *Processor) Check(ctx context.Context) error {
	if c, ok := p.store.(Checker); ok {
		if err := c.Check(ctx); err != nil {
			return fmt.Errorf("idem: group %s: %w", p.group, err)
		}
	}
	return nil
}

func (p *Processor) process(ctx context.Context, msg *txconsume.Message) (txconsume.Result, error) {
	id, err := p.key(msg)
	if err != nil {
		return 0, fmt.Errorf("idem: key of message %s: %w", msg.ID, err)
	}
	if id == "" {
		return 0, fmt.Errorf("idem: key of message %s: %w", msg.ID, txconsume.ErrEmptyKey)
	}
	key := Key{Group: p.group, Topic: msg.Topic, ID: id}
	// A fresh random owner token per attempt: two attempts never share one, so a stale attempt's
	// compare-and-set cannot match its successor's record.
	owner := rand.Text()

	// The lease is measured from before Acquire: the store starts it later than this, so leaseEnd
	// is never later than the store's own expiry.
	start := time.Now()
	acq, err := p.store.Acquire(ctx, key, owner, p.cfg.ttl)
	if err != nil {
		serr := &StoreError{Op: "acquire", Key: key, Err: err}
		if !p.cfg.failOpen || ctx.Err() != nil || errors.Is(err, ErrKeyTooLong) {
			return 0, serr
		}
		p.cfg.logger.WarnContext(ctx, "idem: store unavailable, running handler without a record (fail-open)",
			slog.String("key", key.String()), slog.String("msg_id", msg.ID), slog.Any("error", serr))
		return p.runUnrecorded(ctx, msg)
	}
	switch acq.State {
	case Acquired:
	case Consumed:
		return txconsume.Duplicate, nil
	case InProgress:
		if p.cfg.hooks.OnInProgress != nil {
			p.cfg.hooks.OnInProgress(ctx, msg, acq.Remaining)
		}
		if p.cfg.inProgress == AckAsDuplicate {
			return txconsume.Duplicate, nil
		}
		return 0, inProgressError(key, msg, acq.Remaining)
	default:
		return 0, fmt.Errorf("idem: acquire %s: store reported state %v", key, acq.State)
	}

	leaseEnd := start.Add(p.cfg.ttl)
	hctx, cancel := context.WithDeadline(ctx, leaseEnd.Add(-safetyMargin(p.cfg.ttl)))
	herr := p.run(hctx, msg)
	cancel()

	if herr != nil && !txconsume.IsDiscard(herr) {
		if err := p.finish(ctx, leaseEnd, func(ctx context.Context) error {
			return p.store.Release(ctx, key, owner)
		}); err != nil {
			// The record expires after the TTL; until then redeliveries are retried later.
			p.cfg.logger.WarnContext(ctx, "idem: could not release the record of a failed attempt; it expires after the TTL",
				slog.String("key", key.String()), slog.String("msg_id", msg.ID), slog.Any("error", err))
		}
		return 0, herr
	}

	result := txconsume.Applied
	if herr != nil {
		result = txconsume.Discarded
		p.reportDiscard(ctx, msg, key, herr)
	}
	if err := p.finish(ctx, leaseEnd, func(ctx context.Context) error {
		return p.store.MarkConsumed(ctx, key, owner, p.cfg.retention)
	}); err != nil {
		p.cfg.logger.ErrorContext(ctx, markFailure(err, leaseEnd),
			slog.String("key", key.String()), slog.String("msg_id", msg.ID), slog.Duration("ttl", p.cfg.ttl),
			slog.Duration("elapsed", time.Since(start)), slog.Any("error", err))
	}
	return result, nil
}

// markFailure says what is known when a successful attempt could not mark its record consumed.
// ErrNotOwner means the record was no longer this attempt's; whether another delivery took the
// key is not known (a Redis record past its TTL is simply gone), only that one may have.
func markFailure(err error, leaseEnd time.Time) string {
	switch {
	case !errors.Is(err, ErrNotOwner):
		return "idem: handler succeeded but the record could not be marked consumed; a later duplicate may run it again"
	case time.Now().After(leaseEnd):
		return "idem: handler outlived the processing TTL, so its record had expired and could not be marked " +
			"consumed; another delivery may have taken the key and run the handler too, and a later one may"
	default:
		return "idem: the attempt's record was removed or replaced before its TTL ended (released by an operator, " +
			"or lost by the store), so it could not be marked consumed; another delivery may run the handler too"
	}
}

// runUnrecorded is the fail-open path: the handler runs with no record, under the caller's context.
func (p *Processor) runUnrecorded(ctx context.Context, msg *txconsume.Message) (txconsume.Result, error) {
	if err := p.run(ctx, msg); err != nil {
		if txconsume.IsDiscard(err) {
			p.reportDiscard(ctx, msg, Key{Group: p.group, Topic: msg.Topic}, err)
			return txconsume.Discarded, nil
		}
		return 0, err
	}
	return txconsume.Applied, nil
}

// run calls the handler and turns a panic into a *txconsume.PanicError, so one bad message cannot
// crash the consumer and its record is released like any failed attempt's.
func (p *Processor) run(ctx context.Context, msg *txconsume.Message) (err error) {
	start := time.Now()
	defer func() {
		if r := recover(); r != nil {
			err = &txconsume.PanicError{Value: r, Stack: debug.Stack()}
		}
		if p.cfg.hooks.OnHandler != nil {
			p.cfg.hooks.OnHandler(ctx, msg, err, time.Since(start))
		}
	}()
	return p.h(ctx, msg)
}

// reportDiscard hands a discard's reason to the transport that called Process, which logs it in
// its own line (package rmq), or else logs it here: either way one line per discard.
func (p *Processor) reportDiscard(ctx context.Context, msg *txconsume.Message, key Key, reason error) {
	if delivery.FromContext(ctx).Discarded(msg, reason) {
		return
	}
	p.cfg.logger.WarnContext(ctx, "idem: message discarded", slog.String("group", p.group),
		slog.String("topic", msg.Topic), slog.String("msg_id", msg.ID), slog.String("key", key.ID),
		slog.Any("reason", reason))
}

// key calls the KeyFunc and turns a panic into a *txconsume.PanicError, as run does for the handler.
func (p *Processor) key(msg *txconsume.Message) (_ string, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = &txconsume.PanicError{Value: r, Stack: debug.Stack()}
		}
	}()
	return p.cfg.keyFunc(msg)
}

// minFinishTimeout bounds one attempt to record an outcome when the lease has (nearly) run out.
const minFinishTimeout = 2 * time.Second

// finish records an attempt's outcome (MarkConsumed or Release). The first try runs even if ctx
// has ended (a consumer shutting down must still record what its handler did); transient errors
// are retried with backoff while ctx lives and the lease has not run out, because after that the
// record is no longer reliably ours.
func (p *Processor) finish(ctx context.Context, leaseEnd time.Time, op func(context.Context) error) error {
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), max(time.Until(leaseEnd), minFinishTimeout))
	defer cancel()
	backoff := 10 * time.Millisecond
	for {
		err := op(fctx)
		if err == nil || errors.Is(err, ErrNotOwner) || errors.Is(err, ErrKeyTooLong) {
			return err
		}
		if ctx.Err() != nil || time.Now().Add(backoff).After(leaseEnd) {
			return err
		}
		t := time.NewTimer(backoff)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return err
		case <-fctx.Done():
			t.Stop()
			return err
		}
		backoff = min(2*backoff, time.Second)
	}
}
