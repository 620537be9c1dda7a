package oteltxconsume_test

import (
	"context"
	"errors"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/apache/rocketmq-client-go/v2/primitive"
	"github.com/go-sql-driver/mysql"
	"github.com/jmoiron/sqlx"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/goleak"

	"github.com/txconsume/txconsume/internal/testenv"
	"github.com/txconsume/txconsume/migrations"
	"github.com/txconsume/txconsume/txconsume"
	"github.com/txconsume/txconsume/txconsume/idem"
	"github.com/txconsume/txconsume/txconsume/oteltxconsume"
	"github.com/txconsume/txconsume/txconsume/rmq"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(testenv.M(m), testenv.IgnoreRocketMQClient()...)
}

// rig is a migrated database with an effects table, and an Instrumentation recording into an
// in-memory span exporter and a manual metric reader.
type rig struct {
	db     *sqlx.DB
	spans  *tracetest.InMemoryExporter
	reader *sdkmetric.ManualReader
	inst   *oteltxconsume.Instrumentation
	tp     *sdktrace.TracerProvider
}

func newRig(t *testing.T) *rig {
	t.Helper()
	ctx := context.Background()
	db := testenv.MySQL(t)
	require.NoError(t, migrations.Up(ctx, db.DB))
	_, err := db.ExecContext(ctx, `CREATE TABLE effects (id BIGINT AUTO_INCREMENT PRIMARY KEY, msg_id VARCHAR(64) NOT NULL)`)
	require.NoError(t, err)
	spans := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(spans))
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	t.Cleanup(func() { _ = tp.Shutdown(ctx); _ = mp.Shutdown(ctx) })
	inst, err := oteltxconsume.New(oteltxconsume.WithTracerProvider(tp), oteltxconsume.WithMeterProvider(mp))
	require.NoError(t, err)
	return &rig{db: db, spans: spans, reader: reader, inst: inst, tp: tp}
}

func (r *rig) processor(t *testing.T, h txconsume.Handler) *txconsume.Processor {
	t.Helper()
	p, err := txconsume.New(r.db, "billing", h, txconsume.WithHooks(r.inst.Hooks()),
		txconsume.WithRetryBackoff(time.Millisecond, time.Millisecond))
	require.NoError(t, err)
	return p
}

func record(ctx context.Context, tx *sqlx.Tx, m *txconsume.Message) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO effects (msg_id) VALUES (?)`, m.ID)
	return err
}

func message(id string) *txconsume.Message {
	return &txconsume.Message{ID: id, Topic: "orders", Tags: "paid", Keys: []string{"order-" + id}, Body: []byte("{}")}
}

func attrs(kvs []attribute.KeyValue) map[string]attribute.Value {
	m := map[string]attribute.Value{}
	for _, kv := range kvs {
		m[string(kv.Key)] = kv.Value
	}
	return m
}

func TestSpans(t *testing.T) {
	ctx := context.Background()

	t.Run("a process span continues the producer's trace and wraps the handler", func(t *testing.T) {
		r := newRig(t)
		// The producer side, as the Java agent or the outbox writes it: W3C trace context in the
		// message properties.
		pctx, producerSpan := r.tp.Tracer("producer").Start(ctx, "send orders", trace.WithSpanKind(trace.SpanKindProducer))
		msg := message("m-1")
		msg.Properties = map[string]string{"tenant": "acme"}
		propagation.TraceContext{}.Inject(pctx, propagation.MapCarrier(msg.Properties))
		producerSpan.End()
		require.Contains(t, msg.Properties, "traceparent")

		var inHandler trace.SpanContext
		p := r.processor(t, func(ctx context.Context, tx *sqlx.Tx, m *txconsume.Message) error {
			inHandler = trace.SpanContextFromContext(ctx)
			return record(ctx, tx, m)
		})
		res, err := p.Process(ctx, msg)
		require.NoError(t, err)
		require.Equal(t, txconsume.Applied, res)

		spans := r.spans.GetSpans()
		require.Len(t, spans, 2)
		s := spans[1]
		require.Equal(t, "process orders", s.Name)
		require.Equal(t, trace.SpanKindConsumer, s.SpanKind)
		require.Equal(t, producerSpan.SpanContext().TraceID(), s.SpanContext.TraceID(), "same trace as the producer")
		require.Equal(t, producerSpan.SpanContext().SpanID(), s.Parent.SpanID(), "child of the producer's span")
		require.True(t, s.Parent.IsRemote())
		require.Equal(t, s.SpanContext, inHandler, "the handler runs under the process span")
		a := attrs(s.Attributes)
		require.Equal(t, "rocketmq", a["messaging.system"].AsString())
		require.Equal(t, "process", a["messaging.operation.name"].AsString())
		require.Equal(t, "process", a["messaging.operation.type"].AsString())
		require.Equal(t, "orders", a["messaging.destination.name"].AsString())
		require.Equal(t, "billing", a["messaging.consumer.group.name"].AsString())
		require.Equal(t, "m-1", a["messaging.message.id"].AsString())
		require.Equal(t, []string{"order-m-1"}, a["messaging.rocketmq.message.keys"].AsStringSlice())
		require.Equal(t, "paid", a["messaging.rocketmq.message.tag"].AsString())
		require.EqualValues(t, 2, a["messaging.message.body.size"].AsInt64())
		require.Equal(t, "applied", a["txconsume.outcome"].AsString())
		require.Equal(t, codes.Unset, s.Status.Code)
	})
	t.Run("the trace context of a delivered RocketMQ message", func(t *testing.T) {
		r := newRig(t)
		// What the Java instrumentation leaves on a message: the properties survive FromMessageExt.
		ext := &primitive.MessageExt{MsgId: "m-2"}
		ext.Topic = "orders"
		ext.WithProperty(primitive.PropertyUniqueClientMessageIdKeyIndex, "m-2")
		ext.WithProperty("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
		ext.WithProperty("tracestate", "vendor=x")
		p := r.processor(t, record)
		_, err := p.Process(ctx, rmq.FromMessageExt(ext))
		require.NoError(t, err)
		s := r.spans.GetSpans()[0]
		require.Equal(t, "4bf92f3577b34da6a3ce929d0e0e4736", s.SpanContext.TraceID().String())
		require.Equal(t, "00f067aa0ba902b7", s.Parent.SpanID().String())
		require.Equal(t, "vendor=x", s.SpanContext.TraceState().String())
	})
	t.Run("without a trace context the span starts a trace", func(t *testing.T) {
		r := newRig(t)
		_, err := r.processor(t, record).Process(ctx, message("m-3"))
		require.NoError(t, err)
		s := r.spans.GetSpans()[0]
		require.False(t, s.Parent.IsValid())
	})
	t.Run("a failure marks the span", func(t *testing.T) {
		r := newRig(t)
		_, err := r.processor(t, func(context.Context, *sqlx.Tx, *txconsume.Message) error {
			return errors.New("ledger closed")
		}).Process(ctx, message("m-4"))
		require.Error(t, err)
		s := r.spans.GetSpans()[0]
		require.Equal(t, codes.Error, s.Status.Code)
		require.Contains(t, s.Status.Description, "ledger closed")
		a := attrs(s.Attributes)
		require.Equal(t, "failed", a["txconsume.outcome"].AsString())
		require.NotEmpty(t, a["error.type"].AsString())
		require.Len(t, s.Events, 1, "the error is recorded")
	})
}

// counts reads a metric's data points as "outcome" -> value (or count, for histograms).
func counts(t *testing.T, r *rig, name string) map[string]int64 {
	t.Helper()
	var rm metricdata.ResourceMetrics
	require.NoError(t, r.reader.Collect(context.Background(), &rm))
	out := map[string]int64{}
	for _, sm := range rm.ScopeMetrics {
		require.Equal(t, oteltxconsume.ScopeName, sm.Scope.Name)
		for _, m := range sm.Metrics {
			if m.Name != name {
				continue
			}
			key := func(set attribute.Set) string {
				v, _ := set.Value(oteltxconsume.OutcomeKey)
				g, _ := set.Value("messaging.consumer.group.name")
				require.Equal(t, "billing", g.AsString(), "%s carries the group", name)
				return v.AsString()
			}
			switch d := m.Data.(type) {
			case metricdata.Sum[int64]:
				for _, p := range d.DataPoints {
					out[key(p.Attributes)] += p.Value
				}
			case metricdata.Histogram[float64]:
				for _, p := range d.DataPoints {
					out[key(p.Attributes)] += int64(p.Count)
				}
			default:
				t.Fatalf("%s: unexpected data %T", name, m.Data)
			}
		}
	}
	return out
}

func TestMetrics(t *testing.T) {
	ctx := context.Background()
	r := newRig(t)
	var deadlocked atomic.Bool
	p := r.processor(t, func(ctx context.Context, tx *sqlx.Tx, m *txconsume.Message) error {
		switch m.ID {
		case "poison":
			return txconsume.Discard(errors.New("bad body"))
		case "broken":
			return errors.New("downstream down")
		case "deadlock":
			if deadlocked.CompareAndSwap(false, true) {
				// What InnoDB returns to a deadlock victim: the processor reruns the transaction.
				return &mysql.MySQLError{Number: 1213, Message: "Deadlock found when trying to get lock"}
			}
		}
		return record(ctx, tx, m)
	})
	born := time.Now().Add(-3 * time.Second)
	deliver := func(id string) {
		m := message(id)
		m.BornAt = born
		_, _ = p.Process(ctx, m)
	}
	for _, id := range []string{"a", "b", "a", "poison", "poison", "broken", "deadlock"} {
		deliver(id)
	}
	// The last attempt of a message rmq gives up on is counted as dead-lettered, not failed.
	l := rmq.Listener(p, rmq.WithMaxReconsumeTimes(3), rmq.WithLogger(slog.New(slog.DiscardHandler)))
	ext := &primitive.MessageExt{MsgId: "broken", ReconsumeTimes: 3}
	ext.Topic = "orders"
	ext.WithProperty(primitive.PropertyUniqueClientMessageIdKeyIndex, "broken")
	lctx := primitive.WithConcurrentlyCtx(ctx, primitive.NewConsumeConcurrentlyContext())
	_, err := l(lctx, ext)
	require.Error(t, err)

	want := map[string]int64{"applied": 3, "duplicate": 2, "discarded": 1, "failed": 1, "dead_lettered": 1}
	require.Equal(t, want, counts(t, r, "messaging.client.consumed.messages"))
	require.Equal(t, want, counts(t, r, "messaging.process.duration"))
	require.Equal(t, map[string]int64{"applied": 3, "duplicate": 2, "discarded": 1}, counts(t, r, "txconsume.message.time_in_queue"))
	// Handler runs: a, b, poison, broken twice, deadlock twice (the victim and the rerun).
	require.Equal(t, map[string]int64{"applied": 3, "discarded": 1, "failed": 3}, counts(t, r, "txconsume.handler.duration"))
	require.Equal(t, map[string]int64{"": 1}, counts(t, r, "txconsume.transaction.retries"))
	require.Equal(t, map[string]int64{"": 0}, counts(t, r, "txconsume.process.in_flight"), "every start has its end")

	var rm metricdata.ResourceMetrics
	require.NoError(t, r.reader.Collect(ctx, &rm))
	for _, m := range rm.ScopeMetrics[0].Metrics {
		if m.Name == "txconsume.message.time_in_queue" {
			for _, dp := range m.Data.(metricdata.Histogram[float64]).DataPoints {
				least, ok := dp.Min.Value()
				require.True(t, ok)
				require.GreaterOrEqual(t, least, 3.0, "born 3s ago")
			}
		}
	}
}

func TestMetricsStatusMode(t *testing.T) {
	ctx := context.Background()
	r := newRig(t)
	client, prefix := testenv.Redis(t)
	store := idem.NewRedisStore(client, prefix)
	started, release := make(chan struct{}), make(chan struct{})
	slow, err := idem.New(store, "billing", func(context.Context, *txconsume.Message) error {
		close(started)
		<-release
		return nil
	}, idem.WithHooks(r.inst.Hooks()))
	require.NoError(t, err)
	other, err := idem.New(store, "billing", func(context.Context, *txconsume.Message) error { return nil },
		idem.WithHooks(r.inst.Hooks()))
	require.NoError(t, err)

	done := make(chan error, 1)
	go func() { _, err := slow.Process(ctx, message("m")); done <- err }()
	<-started
	_, err = other.Process(ctx, message("m"))
	require.ErrorIs(t, err, idem.ErrInProgress)
	close(release)
	require.NoError(t, <-done)

	require.Equal(t, map[string]int64{"": 1}, counts(t, r, "txconsume.in_progress.conflicts"))
	require.Equal(t, map[string]int64{"applied": 1, "in_progress": 1}, counts(t, r, "messaging.client.consumed.messages"),
		"an in-progress conflict is no failure")
}
