package rmq_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/apache/rocketmq-client-go/v2/consumer"
	"github.com/apache/rocketmq-client-go/v2/primitive"
	"github.com/stretchr/testify/require"

	"github.com/txconsume/txconsume/txconsume"
	"github.com/txconsume/txconsume/txconsume/idem"
	"github.com/txconsume/txconsume/txconsume/rmq"
)

// logRecords is a slog.Handler that keeps records as "LEVEL message key=value ..." lines.
type logRecords struct {
	mu    sync.Mutex
	lines []string
}

func (l *logRecords) Enabled(context.Context, slog.Level) bool { return true }
func (l *logRecords) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s", r.Level, r.Message)
	r.Attrs(func(a slog.Attr) bool {
		fmt.Fprintf(&b, " %s=%v", a.Key, a.Value)
		return true
	})
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, b.String())
	return nil
}
func (l *logRecords) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *logRecords) WithGroup(string) slog.Handler      { return l }

func (l *logRecords) all() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.lines...)
}

// grouped is a stub that says its group, as the processors of this module do.
type grouped struct{ stub }

func (grouped) Group() string { return "billing" }

func TestRMQListenerLogs(t *testing.T) {
	errDB := errors.New("db down")
	setup := func(p rmq.Processor, opts ...rmq.ListenerOption) (rmq.ListenerFunc, *logRecords, *[]rmq.DeadLetter) {
		logs := &logRecords{}
		var dead []rmq.DeadLetter
		opts = append([]rmq.ListenerOption{
			rmq.WithLogger(slog.New(logs)),
			rmq.WithOnDeadLetter(func(_ context.Context, dl rmq.DeadLetter) { dead = append(dead, dl) }),
		}, opts...)
		return rmq.Listener(p, opts...), logs, &dead
	}
	withReconsume := func(id string, n int32) *primitive.MessageExt {
		m := ext(id)
		m.ReconsumeTimes = n
		m.WithKeys([]string{"order-" + id})
		return m
	}

	t.Run("a failure that comes again names the group and says redelivering", func(t *testing.T) {
		l, logs, dead := setup(&grouped{stub{errs: map[string]error{"a": errDB}}})
		ctx, _ := concurrentCtx()
		_, err := l(ctx, withReconsume("a", 15))
		require.ErrorIs(t, err, errDB)
		require.Len(t, logs.all(), 1)
		require.Contains(t, logs.all()[0], "WARN rmq: delivery failed, redelivering group=billing")
		require.Empty(t, *dead)
	})
	t.Run("the last failure says where the message goes, never redelivering, and fires the hook", func(t *testing.T) {
		// Concurrent mode, the client's default maximum: the 17th delivery (ReconsumeTimes 16) is the last.
		l, logs, dead := setup(&grouped{stub{errs: map[string]error{"a": errDB}}})
		ctx, _ := concurrentCtx()
		res, err := l(ctx, withReconsume("a", 16))
		require.Equal(t, consumer.ConsumeRetryLater, res, "the client sends it back; the broker moves it to the DLQ")
		require.ErrorIs(t, err, errDB)
		lines := logs.all()
		require.Len(t, lines, 1, lines)
		require.Contains(t, lines[0], "ERROR rmq: message failed for the last time, moving it to the dead-letter topic")
		for _, want := range []string{"group=billing", "dead_letter_topic=%DLQ%billing", "id=a", "keys=[order-a]",
			"reconsume_times=16", "error=db down"} {
			require.Contains(t, lines[0], want)
		}
		require.NotContains(t, strings.Join(lines, "\n"), "redelivering")
		require.Len(t, *dead, 1)
		require.Equal(t, "billing", (*dead)[0].Group)
		require.Equal(t, "%DLQ%billing", (*dead)[0].Topic)
		require.Equal(t, "a", (*dead)[0].Message.ID)
		require.ErrorIs(t, (*dead)[0].Err, errDB)
	})
	t.Run("WithMaxReconsumeTimes moves the last attempt", func(t *testing.T) {
		l, _, dead := setup(&grouped{stub{errs: map[string]error{"a": errDB}}}, rmq.WithMaxReconsumeTimes(2))
		for n := int32(0); n <= 2; n++ {
			ctx, _ := concurrentCtx()
			_, _ = l(ctx, withReconsume("a", n))
		}
		require.Len(t, *dead, 1, "only the delivery with ReconsumeTimes 2 is the last")
		require.EqualValues(t, 2, (*dead)[0].Message.ReconsumeTimes)
	})
	t.Run("orderly: unlimited by default, past the maximum when given", func(t *testing.T) {
		logs := &logRecords{}
		var dead []rmq.DeadLetter
		hook := rmq.WithOnDeadLetter(func(_ context.Context, dl rmq.DeadLetter) { dead = append(dead, dl) })
		p := &grouped{stub{errs: map[string]error{"a": errDB}}}
		ctx, _ := orderlyCtx()
		_, _ = rmq.OrderlyListener(p, rmq.WithLogger(slog.New(logs)), hook)(ctx, withReconsume("a", 1000))
		require.Empty(t, dead)
		l := rmq.OrderlyListener(p, rmq.WithLogger(slog.New(logs)), hook, rmq.WithMaxReconsumeTimes(2))
		for n := int32(0); n <= 3; n++ {
			ctx, _ := orderlyCtx()
			_, _ = l(ctx, withReconsume("a", n))
		}
		require.Len(t, dead, 1, "the client dead-letters an orderly message when ReconsumeTimes > max")
		require.EqualValues(t, 3, dead[0].Message.ReconsumeTimes)
	})
	t.Run("a batch: each given-up message has its own reason", func(t *testing.T) {
		p := &batchStub{stub{errs: map[string]error{"b": errDB}}}
		l, logs, dead := setup(p, rmq.WithMaxReconsumeTimes(1))
		ctx, _ := concurrentCtx()
		_, _ = l(ctx, withReconsume("a", 1), withReconsume("b", 1), withReconsume("c", 0))
		require.Len(t, *dead, 2)
		require.ErrorIs(t, (*dead)[1].Err, errDB)
		require.ErrorContains(t, (*dead)[0].Err, "was applied, but its delivery failed")
		lines := logs.all()
		require.Len(t, lines, 3, lines)
		require.Contains(t, lines[2], "redelivering")
		require.Contains(t, lines[2], "ids=[c]")
	})
	t.Run("the group comes from the client when the Processor does not say it", func(t *testing.T) {
		l, logs, _ := setup(&stub{errs: map[string]error{"a": errDB}})
		ctx, _ := concurrentCtx()
		ctx = primitive.WithConsumerCtx(ctx, &primitive.ConsumeMessageContext{ConsumerGroup: "from-client"})
		_, _ = l(ctx, withReconsume("a", 0))
		require.Contains(t, logs.all()[0], "group=from-client")
	})
	t.Run("status mode's in-progress conflict is a debug line", func(t *testing.T) {
		inProgress := txconsume.RetryAfter(1e9, fmt.Errorf("%w: svc/orders/\"a\"", idem.ErrInProgress))
		l, logs, _ := setup(&grouped{stub{errs: map[string]error{"a": inProgress}}})
		ctx, _ := concurrentCtx()
		_, err := l(ctx, withReconsume("a", 0))
		require.ErrorIs(t, err, idem.ErrInProgress)
		lines := logs.all()
		require.Len(t, lines, 1)
		require.True(t, strings.HasPrefix(lines[0], "DEBUG rmq: message in progress in another delivery, redelivering later group=billing"), lines[0])
	})
	t.Run("an in-progress conflict next to a real failure is a warning", func(t *testing.T) {
		inProgress := fmt.Errorf("%w: key", idem.ErrInProgress)
		l, logs, _ := setup(&grouped{stub{errs: map[string]error{"a": inProgress, "b": errDB}}})
		_, _ = l(context.Background(), withReconsume("a", 0), withReconsume("b", 0))
		require.Contains(t, logs.all()[0], "WARN rmq: delivery failed, redelivering")
	})
	t.Run("a discard without a reason from the Processor is still logged once", func(t *testing.T) {
		l, logs, _ := setup(&grouped{stub{results: map[string]txconsume.Result{"a": txconsume.Discarded}}})
		ctx, _ := concurrentCtx()
		_, err := l(ctx, withReconsume("a", 0))
		require.NoError(t, err)
		require.Equal(t, []string{"WARN rmq: message discarded group=billing topic=orders id=a keys=[order-a] reconsume_times=0"}, logs.all())
	})
}
