package rmq

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"time"

	"github.com/apache/rocketmq-client-go/v2/consumer"
	"github.com/apache/rocketmq-client-go/v2/primitive"

	"github.com/txconsume/txconsume/txconsume"
	"github.com/txconsume/txconsume/txconsume/internal/delivery"
)

// ListenerFunc is the callback type of the client's PushConsumer.Subscribe.
type ListenerFunc = func(context.Context, ...*primitive.MessageExt) (consumer.ConsumeResult, error)

// Listener returns a callback for a concurrent PushConsumer.Subscribe that hands each delivery to p.
//
// Outcomes: Applied, Duplicate and Discarded acknowledge the delivery (ConsumeSuccess). An error
// returns ConsumeRetryLater: the client then sends every message of the delivery back to the broker,
// which redelivers them through %RETRY%<group> after the delay of WithRetryDelayLevel (or of a
// handler's txconsume.RetryAfter), and moves a message to %DLQ%<group> once it has failed
// MaxReconsumeTimes times. The client acknowledges all or nothing of a delivery (it ignores
// AckIndex), so when part of a multi-message delivery failed, the messages that were committed come
// back too and are recognised as duplicates. An error wrapping txconsume.ErrCommitUnknown (the
// connection failed after COMMIT was sent) is redelivered like any other: the redelivery is a
// Duplicate if the commit happened and is applied if it did not; only its log line differs.
//
// A delivery of several messages (consumer.WithConsumeMessageBatchMaxSize above 1) goes through
// ProcessBatch when p implements BatchProcessor, else through Process one message at a time. A panic
// in p is recovered and treated as an error, because the client would otherwise drop the delivery's
// result and stall the queue's offset.
//
// Listener panics when p is nil or an option is invalid.
func Listener(p Processor, opts ...ListenerOption) ListenerFunc {
	return newListener(p, opts, false).consumeConcurrently
}

// OrderlyListener returns a callback for an orderly PushConsumer.Subscribe
// (consumer.WithConsumerOrder(true)) that hands each delivery to p, one message at a time and in
// queue order.
//
// Outcomes: Applied, Duplicate and Discarded acknowledge (ConsumeSuccess). An error returns
// SuspendCurrentQueueAMoment with the callback context's SuspendCurrentQueueTimeMillis set to
// WithSuspendTime (or a handler's txconsume.RetryAfter): the queue pauses and the same messages are
// tried again in order. The listener never leaves the client's default of -1, which retries at once in
// a tight loop, and never returns ConsumeRetryLater, which has no meaning for an orderly queue. The
// client counts the attempts and, past MaxReconsumeTimes (unlimited by default in orderly mode), sends
// the message to %DLQ%<group> and moves on.
//
// Messages of a multi-message delivery are processed one by one, stopping at the first failure, and
// never through ProcessBatch: a batch transaction keeps the effects of the messages after a failed one,
// which would apply a later message of the sequence before an earlier one.
//
// OrderlyListener panics when p is nil or an option is invalid.
func OrderlyListener(p Processor, opts ...ListenerOption) ListenerFunc {
	return newListener(p, opts, true).consumeOrderly
}

type listener struct {
	p   Processor
	bp  BatchProcessor // nil when p does not implement it
	cfg listenerConfig
	max int32 // the effective maximum of redeliveries; -1: unlimited
}

func newListener(p Processor, opts []ListenerOption, orderly bool) *listener {
	cfg := defaultListenerConfig()
	for _, o := range opts {
		o.applyListener(&cfg)
	}
	cfg.orderly = orderly
	l, err := newListenerFromConfig(p, cfg)
	if err != nil {
		panic(err)
	}
	return l
}

func newListenerFromConfig(p Processor, cfg listenerConfig) (*listener, error) {
	if p == nil {
		return nil, errors.New("rmq: nil Processor")
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if cfg.group == "" {
		cfg.group = processorGroup(p)
	}
	l := &listener{p: p, cfg: cfg, max: effectiveMaxReconsume(cfg.maxReconsumeTimes, cfg.orderly)}
	l.bp, _ = p.(BatchProcessor)
	return l, nil
}

// group returns the consumer group for logs: the configured one, else the client's.
func (l *listener) group(ctx context.Context) string {
	if l.cfg.group != "" {
		return l.cfg.group
	}
	if cc, ok := primitive.GetConsumerCtx(ctx); ok {
		return cc.ConsumerGroup
	}
	return ""
}

func (l *listener) consumeConcurrently(ctx context.Context, msgs ...*primitive.MessageExt) (consumer.ConsumeResult, error) {
	if len(msgs) == 0 {
		return consumer.ConsumeSuccess, nil
	}
	d := l.process(ctx, msgs, false)
	if d.err == nil {
		return consumer.ConsumeSuccess, nil
	}
	level := l.cfg.retryDelayLevel
	if delay, ok := retryDelay(d.err); ok {
		level = DelayLevel(delay)
	}
	// Level 0 leaves the broker's schedule (3 + ReconsumeTimes) in place.
	if cc, ok := primitive.GetConcurrentlyCtx(ctx); ok && level > 0 {
		cc.DelayLevelWhenNextConsume = level
	}
	l.logFailure(ctx, d, slog.Int("delay_level", level))
	return consumer.ConsumeRetryLater, d.err
}

func (l *listener) consumeOrderly(ctx context.Context, msgs ...*primitive.MessageExt) (consumer.ConsumeResult, error) {
	if len(msgs) == 0 {
		return consumer.ConsumeSuccess, nil
	}
	d := l.process(ctx, msgs, true)
	if d.err == nil {
		return consumer.ConsumeSuccess, nil
	}
	suspend := l.cfg.suspend
	if delay, ok := retryDelay(d.err); ok && delay > 0 {
		suspend = delay
	}
	setSuspend(ctx, suspend)
	l.logFailure(ctx, d, slog.Duration("suspend", suspend))
	return consumer.SuspendCurrentQueueAMoment, d.err
}

// setSuspend sets the orderly pause the client sleeps after SuspendCurrentQueueAMoment. The client reads
// the value as milliseconds and sleeps for it as is, so anything below 1ms (its default is -1) would
// retry without pausing.
func setSuspend(ctx context.Context, d time.Duration) {
	if oc, ok := primitive.GetOrderlyCtx(ctx); ok {
		oc.SuspendCurrentQueueTimeMillis = int(max(d.Milliseconds(), 1))
	}
}

// deliveryOutcome is what processing one delivery did to each of its messages.
type deliveryOutcome struct {
	msgs    []*primitive.MessageExt
	tms     []*txconsume.Message // nil entries for nil messages
	results []txconsume.Result   // 0: failed or not processed
	failed  []error              // the message's own failure, nil if it had none
	err     error                // the delivery's error for the client; nil: acknowledged
}

// process runs the delivery through the processor. Ordered deliveries stop at the first failure; the
// others go on, since the client redelivers the whole delivery anyway and every commit made now is
// one less transaction then. Discards are logged here, with the reason the processor reported.
func (l *listener) process(ctx context.Context, msgs []*primitive.MessageExt, ordered bool) *deliveryOutcome {
	d := &deliveryOutcome{
		msgs:    msgs,
		tms:     make([]*txconsume.Message, len(msgs)),
		results: make([]txconsume.Result, len(msgs)),
		failed:  make([]error, len(msgs)),
	}
	report := &delivery.Report{Final: func(n int32) bool { return isFinal(n, l.max, ordered) }}
	ctx = delivery.NewContext(ctx, report)
	d.err = l.run(ctx, d, ordered)
	for i, r := range d.results {
		if r == txconsume.Discarded {
			l.logDiscard(ctx, d.tms[i], report.DiscardReason(d.tms[i]))
		}
	}
	return d
}

func (l *listener) run(ctx context.Context, d *deliveryOutcome, ordered bool) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("rmq: processor panicked: %v\n%s", r, debug.Stack())
			for i := range d.results {
				d.results[i], d.failed[i] = 0, err
			}
		}
	}()
	for i, m := range d.msgs {
		if m == nil {
			// Nothing to process or to name: fail the delivery rather than acknowledge it.
			return fmt.Errorf("rmq: delivery holds a nil message at index %d", i)
		}
		d.tms[i] = FromMessageExt(m)
	}
	if l.bp != nil && len(d.tms) > 1 && !ordered {
		results, err := l.bp.ProcessBatch(ctx, d.tms)
		var be *txconsume.BatchError
		switch {
		case errors.As(err, &be):
			for i := range d.tms {
				d.failed[i] = be.Failed(i)
			}
		case err != nil:
			for i := range d.failed {
				d.failed[i] = err
			}
		}
		for i := 0; i < len(results) && i < len(d.results); i++ {
			if d.failed[i] == nil {
				d.results[i] = results[i]
			}
		}
		return err
	}
	var errs []error
	for i, m := range d.tms {
		r, err := l.p.Process(ctx, m)
		if err != nil {
			d.failed[i] = err
			if len(d.tms) > 1 {
				err = &MessageError{ID: m.ID, Err: err}
			}
			if ordered {
				return err
			}
			errs = append(errs, err)
			continue
		}
		d.results[i] = r
	}
	return errors.Join(errs...)
}

// MessageError names the message of a multi-message delivery whose processing failed.
type MessageError struct {
	ID  string // txconsume.Message.ID
	Err error
}

func (e *MessageError) Error() string { return "rmq: message " + e.ID + ": " + e.Err.Error() }
func (e *MessageError) Unwrap() error { return e.Err }

// logFailure logs a failed delivery: one line per message the client now gives up (its last
// attempt failed: it goes to the dead-letter topic, and WithOnDeadLetter's callback runs), and one
// line for the messages that come again. A delivery whose only failures are status-mode
// in-progress conflicts (another delivery holds the key: an expected wait, not a fault) is logged
// at debug level.
func (l *listener) logFailure(ctx context.Context, d *deliveryOutcome, attrs ...slog.Attr) {
	group := l.group(ctx)
	var again []string
	var topic string
	var reconsume int32
	expected := true
	for i, m := range d.msgs {
		if m == nil {
			continue
		}
		tm := d.tms[i]
		if tm == nil {
			tm = FromMessageExt(m)
		}
		if isFinal(m.ReconsumeTimes, l.max, l.cfg.orderly) {
			l.deadLetter(ctx, group, tm, l.ownError(d, i))
			continue
		}
		if topic == "" {
			topic, reconsume = m.Topic, m.ReconsumeTimes
		}
		again = append(again, tm.ID)
		if f := d.failed[i]; f != nil && !errors.Is(f, delivery.ErrInProgress) {
			expected = false
		}
	}
	if len(again) == 0 {
		return
	}
	if expected && !errors.Is(d.err, delivery.ErrInProgress) {
		expected = false // a failure of the delivery itself (nil message, panic)
	}
	all := append([]slog.Attr{
		slog.String("group", group),
		slog.String("topic", topic),
		slog.Any("ids", again),
		slog.Int("reconsume_times", int(reconsume)),
		slog.Any("error", d.err),
	}, attrs...)
	if expected {
		l.cfg.logger.LogAttrs(ctx, slog.LevelDebug, "rmq: message in progress in another delivery, redelivering later", all...)
		return
	}
	msg := "rmq: delivery failed, redelivering"
	if errors.Is(d.err, txconsume.ErrCommitUnknown) {
		// Not a failure of the message: the redelivery finds it Duplicate if the commit happened.
		msg = "rmq: commit outcome unknown, redelivering to settle it"
	}
	l.cfg.logger.LogAttrs(ctx, slog.LevelWarn, msg, all...)
}

// ownError is why message i of a failed delivery failed.
func (l *listener) ownError(d *deliveryOutcome, i int) error {
	switch {
	case d.failed[i] != nil:
		return d.failed[i]
	case d.results[i] != 0:
		return fmt.Errorf("rmq: this message was %s, but its delivery failed and the client sends every message of it back: %w",
			d.results[i], d.err)
	default:
		return fmt.Errorf("rmq: not processed, an earlier message of the delivery failed: %w", d.err)
	}
}

// deadLetter logs a message given up and calls the WithOnDeadLetter callback.
func (l *listener) deadLetter(ctx context.Context, group string, m *txconsume.Message, err error) {
	dlq := DeadLetterTopic(group)
	l.cfg.logger.LogAttrs(ctx, slog.LevelError, "rmq: message failed for the last time, moving it to the dead-letter topic",
		slog.String("group", group), slog.String("dead_letter_topic", dlq), slog.String("topic", m.Topic),
		slog.String("id", m.ID), slog.Any("keys", m.Keys), slog.Int("reconsume_times", int(m.ReconsumeTimes)),
		slog.Any("error", err))
	if l.cfg.onDeadLetter != nil {
		l.cfg.onDeadLetter(ctx, DeadLetter{Group: group, Topic: dlq, Message: m, Err: err})
	}
}

func (l *listener) logDiscard(ctx context.Context, m *txconsume.Message, reason error) {
	attrs := []slog.Attr{
		slog.String("group", l.group(ctx)), slog.String("topic", m.Topic), slog.String("id", m.ID),
		slog.Any("keys", m.Keys), slog.Int("reconsume_times", int(m.ReconsumeTimes)),
	}
	if reason != nil {
		attrs = append(attrs, slog.Any("reason", reason))
	}
	l.cfg.logger.LogAttrs(ctx, slog.LevelWarn, "rmq: message discarded", attrs...)
}

// retryDelay reports the redelivery delay a handler asked for with txconsume.RetryAfter.
var retryDelay = txconsume.RetryDelay
