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
// back too and are recognised as duplicates.
//
// A delivery of several messages (consumer.WithConsumeMessageBatchMaxSize above 1) goes through
// ProcessBatch when p implements BatchProcessor, else through Process one message at a time. A panic
// in p is recovered and treated as an error, because the client would otherwise drop the delivery's
// result and stall the queue's offset.
//
// Listener panics when p is nil or an option is invalid.
func Listener(p Processor, opts ...ListenerOption) ListenerFunc {
	return newListener(p, opts).consumeConcurrently
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
	return newListener(p, opts).consumeOrderly
}

type listener struct {
	p   Processor
	bp  BatchProcessor // nil when p does not implement it
	cfg listenerConfig
}

func newListener(p Processor, opts []ListenerOption) *listener {
	cfg := defaultListenerConfig()
	for _, o := range opts {
		o.applyListener(&cfg)
	}
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
	l := &listener{p: p, cfg: cfg}
	l.bp, _ = p.(BatchProcessor)
	return l, nil
}

func (l *listener) consumeConcurrently(ctx context.Context, msgs ...*primitive.MessageExt) (consumer.ConsumeResult, error) {
	if len(msgs) == 0 {
		return consumer.ConsumeSuccess, nil
	}
	err := l.process(ctx, msgs, false)
	if err == nil {
		return consumer.ConsumeSuccess, nil
	}
	level := l.cfg.retryDelayLevel
	if d, ok := retryDelay(err); ok {
		level = DelayLevel(d)
	}
	// Level 0 leaves the broker's schedule (3 + ReconsumeTimes) in place.
	if cc, ok := primitive.GetConcurrentlyCtx(ctx); ok && level > 0 {
		cc.DelayLevelWhenNextConsume = level
	}
	l.logFailure(ctx, msgs, err, slog.Int("delay_level", level))
	return consumer.ConsumeRetryLater, err
}

func (l *listener) consumeOrderly(ctx context.Context, msgs ...*primitive.MessageExt) (consumer.ConsumeResult, error) {
	if len(msgs) == 0 {
		return consumer.ConsumeSuccess, nil
	}
	err := l.process(ctx, msgs, true)
	if err == nil {
		return consumer.ConsumeSuccess, nil
	}
	suspend := l.cfg.suspend
	if d, ok := retryDelay(err); ok && d > 0 {
		suspend = d
	}
	setSuspend(ctx, suspend)
	l.logFailure(ctx, msgs, err, slog.Duration("suspend", suspend))
	return consumer.SuspendCurrentQueueAMoment, err
}

// setSuspend sets the orderly pause the client sleeps after SuspendCurrentQueueAMoment. The client reads
// the value as milliseconds and sleeps for it as is, so anything below 1ms (its default is -1) would
// retry without pausing.
func setSuspend(ctx context.Context, d time.Duration) {
	if oc, ok := primitive.GetOrderlyCtx(ctx); ok {
		oc.SuspendCurrentQueueTimeMillis = int(max(d.Milliseconds(), 1))
	}
}

// process runs the delivery through the processor. Ordered deliveries stop at the first failure; the
// others go on, since the client redelivers the whole delivery anyway and every commit made now is
// one less transaction then.
func (l *listener) process(ctx context.Context, msgs []*primitive.MessageExt, ordered bool) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("rmq: processor panicked: %v\n%s", r, debug.Stack())
		}
	}()
	tms := make([]*txconsume.Message, len(msgs))
	for i, m := range msgs {
		if m == nil {
			// Nothing to process or to name: fail the delivery rather than acknowledge it.
			return fmt.Errorf("rmq: delivery holds a nil message at index %d", i)
		}
		tms[i] = FromMessageExt(m)
	}
	if l.bp != nil && len(tms) > 1 && !ordered {
		results, err := l.bp.ProcessBatch(ctx, tms)
		for i, r := range results {
			if r == txconsume.Discarded && i < len(tms) {
				l.logDiscard(ctx, tms[i])
			}
		}
		return err
	}
	var errs []error
	for _, m := range tms {
		r, err := l.p.Process(ctx, m)
		if err != nil {
			if len(tms) > 1 {
				err = &MessageError{ID: m.ID, Err: err}
			}
			if ordered {
				return err
			}
			errs = append(errs, err)
			continue
		}
		if r == txconsume.Discarded {
			l.logDiscard(ctx, m)
		}
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

func (l *listener) logFailure(ctx context.Context, msgs []*primitive.MessageExt, err error, attrs ...slog.Attr) {
	var (
		ids       = make([]string, len(msgs))
		topic     string
		reconsume int32
	)
	for i, m := range msgs {
		if m == nil {
			continue
		}
		ids[i] = FromMessageExt(m).ID
		if topic == "" {
			topic, reconsume = m.Topic, m.ReconsumeTimes
		}
	}
	all := append([]slog.Attr{
		slog.String("topic", topic),
		slog.Any("ids", ids),
		slog.Int("reconsume_times", int(reconsume)),
		slog.Any("error", err),
	}, attrs...)
	l.cfg.logger.LogAttrs(ctx, slog.LevelWarn, "rmq: delivery failed, redelivering", all...)
}

func (l *listener) logDiscard(ctx context.Context, m *txconsume.Message) {
	l.cfg.logger.LogAttrs(ctx, slog.LevelWarn, "rmq: message discarded",
		slog.String("topic", m.Topic), slog.String("id", m.ID), slog.Int("reconsume_times", int(m.ReconsumeTimes)))
}

// retryDelay reports the redelivery delay a handler asked for with txconsume.RetryAfter.
var retryDelay = txconsume.RetryDelay
