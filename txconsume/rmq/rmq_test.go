package rmq_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/apache/rocketmq-client-go/v2/consumer"
	"github.com/apache/rocketmq-client-go/v2/primitive"
	"github.com/apache/rocketmq-client-go/v2/rlog"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/txconsume/txconsume/internal/testenv"
	"github.com/txconsume/txconsume/txconsume"
	"github.com/txconsume/txconsume/txconsume/rmq"
)

// The client starts a cache janitor at package init, for the life of the process; after Shutdown
// (TestRMQShutdownIdleWithEndedContext) it also leaves its statistics loops, pulls still in their
// long poll and connection readers behind. They are the client's, not this package's.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(testenv.M(m), testenv.IgnoreRocketMQClient()...)
}

// stub is a Processor whose outcome per message id is set by the test; it records the calls.
type stub struct {
	results map[string]txconsume.Result
	errs    map[string]error
	panics  bool
	calls   []string
	batches [][]string
}

func (s *stub) Process(_ context.Context, m *txconsume.Message) (txconsume.Result, error) {
	s.calls = append(s.calls, m.ID)
	if s.panics {
		panic("boom")
	}
	if err := s.errs[m.ID]; err != nil {
		return 0, err
	}
	if r, ok := s.results[m.ID]; ok {
		return r, nil
	}
	return txconsume.Applied, nil
}

type batchStub struct{ stub }

func (s *batchStub) ProcessBatch(ctx context.Context, msgs []*txconsume.Message) ([]txconsume.Result, error) {
	ids := make([]string, len(msgs))
	for i, m := range msgs {
		ids[i] = m.ID
	}
	s.batches = append(s.batches, ids)
	var be txconsume.BatchError
	res := make([]txconsume.Result, len(msgs))
	for i, m := range msgs {
		if err := s.errs[m.ID]; err != nil {
			be.Failures = append(be.Failures, txconsume.BatchFailure{Index: i, MessageID: m.ID, Err: err})
			continue
		}
		res[i] = txconsume.Applied
	}
	if len(be.Failures) > 0 {
		return res, &be
	}
	return res, nil
}

func ext(id string) *primitive.MessageExt {
	m := &primitive.MessageExt{MsgId: id, OffsetMsgId: "offset-" + id}
	m.Topic = "orders"
	m.Body = []byte("body-" + id)
	m.WithProperty(primitive.PropertyUniqueClientMessageIdKeyIndex, id)
	return m
}

func concurrentCtx() (context.Context, *primitive.ConsumeConcurrentlyContext) {
	cc := primitive.NewConsumeConcurrentlyContext()
	return primitive.WithConcurrentlyCtx(context.Background(), cc), cc
}

func orderlyCtx() (context.Context, *primitive.ConsumeOrderlyContext) {
	oc := primitive.NewConsumeOrderlyContext()
	return primitive.WithOrderlyCtx(context.Background(), oc), oc
}

var quiet = rmq.WithLogger(slog.New(slog.DiscardHandler))

func TestRMQFromMessageExt(t *testing.T) {
	t.Run("fields", func(t *testing.T) {
		m := ext("U1")
		m.ReconsumeTimes = 2
		m.WithTag("paid")
		m.WithKeys([]string{"order-1", "customer-9"})
		m.WithProperty("tenant", "acme")
		m.WithProperty(primitive.PropertyRetryTopic, "orders")
		m.WithProperty(primitive.PropertyOriginMessageId, "ORIGIN")
		got := rmq.FromMessageExt(m)
		require.Equal(t, &txconsume.Message{
			ID: "U1", Topic: "orders", Tags: "paid", Keys: []string{"order-1", "customer-9"},
			Body: []byte("body-U1"), Properties: map[string]string{"tenant": "acme"}, ReconsumeTimes: 2,
		}, got)
	})
	t.Run("without UNIQ_KEY a retry copy keeps the origin id", func(t *testing.T) {
		m := &primitive.MessageExt{MsgId: "OFFSET-2", OffsetMsgId: "OFFSET-2"}
		m.WithProperty(primitive.PropertyOriginMessageId, "OFFSET-1")
		require.Equal(t, "OFFSET-1", rmq.FromMessageExt(m).ID)
	})
	t.Run("nil", func(t *testing.T) {
		require.Nil(t, rmq.FromMessageExt(nil))
	})
	t.Run("without UNIQ_KEY nor origin the broker id", func(t *testing.T) {
		m := &primitive.MessageExt{MsgId: "OFFSET-1", OffsetMsgId: "OFFSET-1"}
		got := rmq.FromMessageExt(m)
		require.Equal(t, "OFFSET-1", got.ID)
		require.Nil(t, got.Properties)
		require.Empty(t, got.Keys)
	})
}

func TestRMQDelayLevel(t *testing.T) {
	for d, want := range map[time.Duration]int{
		0: 1, time.Second: 1, 1500 * time.Millisecond: 2, 5 * time.Second: 2, 40 * time.Second: 5,
		2 * time.Hour: 18, 5 * time.Hour: rmq.MaxDelayLevel,
	} {
		require.Equal(t, want, rmq.DelayLevel(d), "DelayLevel(%v)", d)
	}
}

func TestRMQListener(t *testing.T) {
	errDB := errors.New("db down")
	t.Run("applied, duplicate and discarded acknowledge", func(t *testing.T) {
		p := &stub{results: map[string]txconsume.Result{"b": txconsume.Duplicate, "c": txconsume.Discarded}}
		l := rmq.Listener(p, quiet)
		for _, id := range []string{"a", "b", "c"} {
			ctx, cc := concurrentCtx()
			res, err := l(ctx, ext(id))
			require.NoError(t, err)
			require.Equal(t, consumer.ConsumeSuccess, res)
			require.Zero(t, cc.DelayLevelWhenNextConsume)
		}
	})
	t.Run("an error retries later at the configured level", func(t *testing.T) {
		l := rmq.Listener(&stub{errs: map[string]error{"a": errDB}}, quiet, rmq.WithRetryDelayLevel(2))
		ctx, cc := concurrentCtx()
		res, err := l(ctx, ext("a"))
		require.ErrorIs(t, err, errDB)
		require.Equal(t, consumer.ConsumeRetryLater, res)
		require.Equal(t, 2, cc.DelayLevelWhenNextConsume)
	})
	t.Run("default level leaves the broker's schedule", func(t *testing.T) {
		l := rmq.Listener(&stub{errs: map[string]error{"a": errDB}}, quiet)
		ctx, cc := concurrentCtx()
		res, _ := l(ctx, ext("a"))
		require.Equal(t, consumer.ConsumeRetryLater, res)
		require.Zero(t, cc.DelayLevelWhenNextConsume)
	})
	t.Run("RetryAfter picks the level", func(t *testing.T) {
		l := rmq.Listener(&stub{errs: map[string]error{"a": txconsume.RetryAfter(25*time.Second, errDB)}}, quiet,
			rmq.WithRetryDelayLevel(1))
		ctx, cc := concurrentCtx()
		_, _ = l(ctx, ext("a"))
		require.Equal(t, 4, cc.DelayLevelWhenNextConsume) // 30s
	})
	t.Run("an unknown commit outcome is redelivered and logged as such", func(t *testing.T) {
		var logs bytes.Buffer
		unknown := fmt.Errorf("txconsume: commit: %w: invalid connection", txconsume.ErrCommitUnknown)
		l := rmq.Listener(&stub{errs: map[string]error{"a": unknown}}, rmq.WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
		ctx, _ := concurrentCtx()
		res, err := l(ctx, ext("a"))
		require.ErrorIs(t, err, txconsume.ErrCommitUnknown)
		require.Equal(t, consumer.ConsumeRetryLater, res)
		require.Contains(t, logs.String(), "commit outcome unknown, redelivering to settle it")
		require.NotContains(t, logs.String(), "delivery failed")
	})
	t.Run("a panic is a failure", func(t *testing.T) {
		l := rmq.Listener(&stub{panics: true}, quiet)
		ctx, _ := concurrentCtx()
		res, err := l(ctx, ext("a"))
		require.Equal(t, consumer.ConsumeRetryLater, res)
		require.ErrorContains(t, err, "panicked")
	})
	t.Run("several messages go through ProcessBatch", func(t *testing.T) {
		p := &batchStub{stub{errs: map[string]error{"b": errDB}}}
		l := rmq.Listener(p, quiet)
		ctx, _ := concurrentCtx()
		res, err := l(ctx, ext("a"), ext("b"), ext("c"))
		require.Equal(t, consumer.ConsumeRetryLater, res)
		require.ErrorIs(t, err, errDB)
		require.Equal(t, [][]string{{"a", "b", "c"}}, p.batches)
		require.Empty(t, p.calls)

		res, err = l(ctx, ext("d"))
		require.NoError(t, err)
		require.Equal(t, consumer.ConsumeSuccess, res)
		require.Equal(t, []string{"d"}, p.calls, "one message goes through Process")
	})
	t.Run("without ProcessBatch every message is processed despite a failure", func(t *testing.T) {
		p := &stub{errs: map[string]error{"b": errDB}}
		res, err := rmq.Listener(p, quiet)(context.Background(), ext("a"), ext("b"), ext("c"))
		require.Equal(t, consumer.ConsumeRetryLater, res)
		var me *rmq.MessageError
		require.ErrorAs(t, err, &me)
		require.Equal(t, "b", me.ID)
		require.Equal(t, []string{"a", "b", "c"}, p.calls)
	})
	t.Run("a nil message fails the delivery without reaching the processor", func(t *testing.T) {
		for name, listener := range map[string]func(rmq.Processor, ...rmq.ListenerOption) rmq.ListenerFunc{
			"concurrent": rmq.Listener,
			"orderly":    rmq.OrderlyListener,
		} {
			t.Run(name, func(t *testing.T) {
				p := &stub{}
				ctx, _ := orderlyCtx()
				res, err := listener(p, quiet)(ctx, nil, ext("a"))
				require.Error(t, err)
				require.NotEqual(t, consumer.ConsumeSuccess, res)
				require.Empty(t, p.calls)
			})
		}
	})
	t.Run("invalid options panic", func(t *testing.T) {
		require.Panics(t, func() { rmq.Listener(&stub{}, rmq.WithRetryDelayLevel(19)) })
		require.Panics(t, func() { rmq.Listener(nil) })
	})
}

func TestRMQOrderlyListener(t *testing.T) {
	errDB := errors.New("db down")
	t.Run("success", func(t *testing.T) {
		ctx, oc := orderlyCtx()
		res, err := rmq.OrderlyListener(&stub{}, quiet)(ctx, ext("a"))
		require.NoError(t, err)
		require.Equal(t, consumer.ConsumeSuccess, res)
		require.Equal(t, -1, oc.SuspendCurrentQueueTimeMillis)
	})
	t.Run("a failure suspends the queue for the configured time, never the client's -1", func(t *testing.T) {
		p := &batchStub{stub{errs: map[string]error{"b": errDB}}}
		ctx, oc := orderlyCtx()
		res, err := rmq.OrderlyListener(p, quiet, rmq.WithSuspendTime(250*time.Millisecond))(ctx, ext("a"), ext("b"), ext("c"))
		require.ErrorIs(t, err, errDB)
		require.Equal(t, consumer.SuspendCurrentQueueAMoment, res)
		require.Equal(t, 250, oc.SuspendCurrentQueueTimeMillis)
		require.Equal(t, []string{"a", "b"}, p.calls, "in order, stopping at the failure")
		require.Empty(t, p.batches, "never a batch transaction")
	})
	t.Run("default suspend and RetryAfter", func(t *testing.T) {
		ctx, oc := orderlyCtx()
		_, _ = rmq.OrderlyListener(&stub{errs: map[string]error{"a": errDB}}, quiet)(ctx, ext("a"))
		require.Equal(t, 1000, oc.SuspendCurrentQueueTimeMillis)
		ctx, oc = orderlyCtx()
		_, _ = rmq.OrderlyListener(&stub{errs: map[string]error{"a": txconsume.RetryAfter(3*time.Second, errDB)}}, quiet)(ctx, ext("a"))
		require.Equal(t, 3000, oc.SuspendCurrentQueueTimeMillis)
	})
}

func TestRMQNewConsumer(t *testing.T) {
	t.Run("required options", func(t *testing.T) {
		_, err := rmq.NewConsumer(&stub{})
		require.ErrorContains(t, err, "WithNameServers")
		require.ErrorContains(t, err, "WithSubscription")
		_, err = rmq.NewConsumer(&stub{}, rmq.WithNameServers("127.0.0.1:1"), rmq.WithSubscription("t", ""))
		require.ErrorContains(t, err, "WithGroup", "a Processor that does not say its group needs WithGroup")
		for _, bad := range []string{"127.0.0.1", "mq.example", ":9876", "mq.example:x", "mq.example:0"} {
			_, err = rmq.NewConsumer(&stub{}, rmq.WithNameServers(bad), rmq.WithGroup("g"), rmq.WithSubscription("t", ""))
			require.ErrorContains(t, err, "rmq: name server", bad)
		}
	})
	valid := []rmq.Option{rmq.WithNameServers("127.0.0.1:1"), rmq.WithGroup("g"), rmq.WithSubscription("t", "")}
	t.Run("ranges", func(t *testing.T) {
		for _, o := range []rmq.Option{rmq.WithBatchMaxSize(0), rmq.WithBatchMaxSize(1025), rmq.WithGoroutines(0),
			rmq.WithMaxReconsumeTimes(-2), rmq.WithSuspendTime(0), rmq.WithRetryDelayLevel(-1),
			rmq.WithSubscription("t", "a")} {
			_, err := rmq.NewConsumer(&stub{}, append(valid, o)...)
			require.Error(t, err)
		}
		_, err := rmq.NewConsumer(nil, valid...)
		require.Error(t, err)
	})
	t.Run("shutdown before start closes it", func(t *testing.T) {
		c, err := rmq.NewConsumer(&stub{}, valid...)
		require.NoError(t, err)
		require.NoError(t, c.Shutdown(context.Background()))
		require.NoError(t, c.Shutdown(context.Background()))
		require.ErrorIs(t, c.Start(), rmq.ErrClosed)
	})
	t.Run("shutdown of a closed consumer succeeds even with an ended context", func(t *testing.T) {
		ended, cancel := context.WithCancel(context.Background())
		cancel()
		// A select between two ready cases picks at random: try often enough to see it.
		for range 64 {
			c, err := rmq.NewConsumer(&stub{}, valid...)
			require.NoError(t, err)
			require.NoError(t, c.Shutdown(ended))
			require.NoError(t, c.Shutdown(ended))
		}
	})
}

func TestRMQClientLogging(t *testing.T) {
	var buf bytes.Buffer
	rmq.SetClientLogger(slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})))
	t.Cleanup(func() { rmq.SetClientLogger(nil); rmq.SetClientLogLevel(slog.LevelError) })

	rmq.SetClientLogLevel(slog.LevelError)
	rlog.Info("rebalance", map[string]interface{}{"consumerGroup": "g"})
	rlog.Warning("retry", nil)
	require.Empty(t, buf.String(), "quiet below error by default")

	rlog.Error("broker unreachable", map[string]interface{}{"broker": "b1"})
	rlog.Fatal("fatal is only logged", nil)
	out := buf.String()
	require.Contains(t, out, `msg="broker unreachable"`)
	require.Contains(t, out, "broker=b1")
	require.Contains(t, out, "logger=rocketmq-client")
	require.Contains(t, out, `msg="fatal is only logged"`)

	buf.Reset()
	rlog.SetLogLevel("info")
	rlog.Info("rebalance", map[string]interface{}{"consumerGroup": "g"})
	require.True(t, strings.Contains(buf.String(), "consumerGroup=g"))
	require.Error(t, rlog.SetOutputPath("somewhere.log"))
}
