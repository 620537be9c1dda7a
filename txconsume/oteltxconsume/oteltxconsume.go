// Package oteltxconsume instruments txconsume processors with OpenTelemetry metrics and traces,
// following the OpenTelemetry semantic conventions for messaging consumers.
//
// One Instrumentation gives the txconsume.Hooks that both the transactional Processor and the
// status-mode processor of package idem take:
//
//	inst, err := oteltxconsume.New() // the global MeterProvider and TracerProvider
//	p, err := txconsume.New(db, "billing", handler, txconsume.WithHooks(inst.Hooks()))
//	q, err := idem.New(store, "mailer", send, idem.WithHooks(inst.Hooks()))
//
// # Traces
//
// Each message gets a CONSUMER span named "process {topic}" with messaging.system,
// messaging.operation.name and .type ("process"), messaging.destination.name,
// messaging.consumer.group.name, messaging.message.id, messaging.message.body.size,
// messaging.rocketmq.message.keys and messaging.rocketmq.message.tag, and txconsume.outcome
// when it ends; a failure sets error.type and the span's error status. When the message carries
// a W3C trace context in its properties "traceparent" and "tracestate" (what the OpenTelemetry
// Java agent's RocketMQ instrumentation writes, and txconsume's outbox), the span continues that
// trace as a child of the producer's span. The handler runs under the span's context, so
// database instrumentation in it (otelsql, for one) nests under the message.
//
// # Metrics
//
//   - messaging.process.duration (histogram, s): the whole processing of a message (claim,
//     handler, commit, retries), from the conventions;
//   - messaging.client.consumed.messages (counter): deliveries handed to the processor, from the
//     conventions;
//   - txconsume.handler.duration (histogram, s): each run of the handler;
//   - txconsume.message.time_in_queue (histogram, s): from the producer's born timestamp to the
//     end of processing (the commit), for messages that did not fail;
//   - txconsume.transaction.retries (counter): transactions run again after a deadlock or lock
//     wait timeout;
//   - txconsume.process.in_flight (up-down counter): messages being processed now;
//   - txconsume.in_progress.conflicts (counter): status-mode deliveries that found their key held
//     by another attempt.
//
// All carry messaging.system, messaging.operation.name, messaging.destination.name and
// messaging.consumer.group.name (the handler, time-in-queue and retry ones too). The first two,
// the handler duration and the time in queue carry txconsume.outcome (the retry counter does
// not): applied, duplicate, discarded, failed, in_progress (status mode: redelivered later
// because another attempt holds the key) or dead_lettered (the last allowed attempt failed:
// package rmq's consumer moves it to the dead-letter topic), and error.type for failures. So
// "failed" never counts a discard, and dead letters are counted without a rule of their own.
//
// The package uses the OpenTelemetry API only: the application chooses the SDK and exporters
// (the example service exposes /metrics through the Prometheus exporter).
package oteltxconsume

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.40.0"
	"go.opentelemetry.io/otel/semconv/v1.40.0/messagingconv"
	"go.opentelemetry.io/otel/trace"

	"github.com/txconsume/txconsume/txconsume"
	"github.com/txconsume/txconsume/txconsume/internal/delivery"
)

// ScopeName is the instrumentation scope of the meter and the tracer.
const ScopeName = "github.com/txconsume/txconsume/txconsume/oteltxconsume"

// OutcomeKey is the attribute that says how a message's processing ended.
const OutcomeKey = attribute.Key("txconsume.outcome")

// Outcomes (values of OutcomeKey).
const (
	OutcomeApplied      = "applied"
	OutcomeDuplicate    = "duplicate"
	OutcomeDiscarded    = "discarded"
	OutcomeFailed       = "failed"
	OutcomeInProgress   = "in_progress"
	OutcomeDeadLettered = "dead_lettered"
)

// Option configures an Instrumentation.
type Option func(*config)

type config struct {
	meterProvider  metric.MeterProvider
	tracerProvider trace.TracerProvider
	propagator     propagation.TextMapPropagator
	system         string
}

// WithMeterProvider sets where the metrics go. Default: otel.GetMeterProvider().
func WithMeterProvider(mp metric.MeterProvider) Option {
	return func(c *config) { c.meterProvider = mp }
}

// WithTracerProvider sets where the spans go. Default: otel.GetTracerProvider().
func WithTracerProvider(tp trace.TracerProvider) Option {
	return func(c *config) { c.tracerProvider = tp }
}

// WithPropagator sets how a producer's trace context is read from the message properties.
// Default: W3C Trace Context (propagation.TraceContext: "traceparent" and "tracestate"), what
// the Java RocketMQ instrumentation writes, whatever the global propagator is.
func WithPropagator(p propagation.TextMapPropagator) Option {
	return func(c *config) { c.propagator = p }
}

// WithMessagingSystem sets messaging.system for processors fed by another transport than
// RocketMQ. Default: "rocketmq".
func WithMessagingSystem(system string) Option {
	return func(c *config) { c.system = system }
}

// Instrumentation records metrics and spans for processors through the Hooks it returns. It is
// safe for concurrent use, and one Instrumentation may serve any number of processors.
type Instrumentation struct {
	tracer     trace.Tracer
	propagator propagation.TextMapPropagator
	system     attribute.KeyValue

	processDuration messagingconv.ProcessDuration
	consumed        messagingconv.ClientConsumedMessages
	handlerDuration metric.Float64Histogram
	timeInQueue     metric.Float64Histogram
	retries         metric.Int64Counter
	inFlight        metric.Int64UpDownCounter
	conflicts       metric.Int64Counter

	// groups maps a message being processed to its consumer group, for OnRetry of a batch, whose
	// context is the batch's rather than a message's.
	groups sync.Map // *txconsume.Message -> string
}

// durationBuckets are the histogram boundaries the conventions advise for messaging durations.
var durationBuckets = []float64{0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10}

// queueBuckets reach further: a message can wait minutes for a redelivery, hours in a backlog.
var queueBuckets = []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 14400}

// New returns an Instrumentation with its instruments created.
func New(opts ...Option) (*Instrumentation, error) {
	cfg := config{system: semconv.MessagingSystemRocketMQ.Value.AsString(), propagator: propagation.TraceContext{}}
	for _, o := range opts {
		o(&cfg)
	}
	if cfg.meterProvider == nil {
		cfg.meterProvider = otel.GetMeterProvider()
	}
	if cfg.tracerProvider == nil {
		cfg.tracerProvider = otel.GetTracerProvider()
	}
	if cfg.propagator == nil {
		return nil, errors.New("oteltxconsume: nil propagator")
	}
	meter := cfg.meterProvider.Meter(ScopeName)
	i := &Instrumentation{
		tracer:     cfg.tracerProvider.Tracer(ScopeName),
		propagator: cfg.propagator,
		system:     semconv.MessagingSystemKey.String(cfg.system),
	}
	var errs []error
	var err error
	i.processDuration, err = messagingconv.NewProcessDuration(meter, metric.WithExplicitBucketBoundaries(durationBuckets...))
	errs = append(errs, err)
	i.consumed, err = messagingconv.NewClientConsumedMessages(meter)
	errs = append(errs, err)
	i.handlerDuration, err = meter.Float64Histogram("txconsume.handler.duration", metric.WithUnit("s"),
		metric.WithDescription("Duration of one run of the message handler."),
		metric.WithExplicitBucketBoundaries(durationBuckets...))
	errs = append(errs, err)
	i.timeInQueue, err = meter.Float64Histogram("txconsume.message.time_in_queue", metric.WithUnit("s"),
		metric.WithDescription("Time from the message's born timestamp to the end of its processing."),
		metric.WithExplicitBucketBoundaries(queueBuckets...))
	errs = append(errs, err)
	i.retries, err = meter.Int64Counter("txconsume.transaction.retries", metric.WithUnit("{retry}"),
		metric.WithDescription("Transactions run again after a deadlock or lock wait timeout."))
	errs = append(errs, err)
	i.inFlight, err = meter.Int64UpDownCounter("txconsume.process.in_flight", metric.WithUnit("{message}"),
		metric.WithDescription("Messages being processed."))
	errs = append(errs, err)
	i.conflicts, err = meter.Int64Counter("txconsume.in_progress.conflicts", metric.WithUnit("{delivery}"),
		metric.WithDescription("Status-mode deliveries that found their key held by another attempt."))
	errs = append(errs, err)
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("oteltxconsume: %w", err)
	}
	return i, nil
}

// Hooks returns the callbacks for txconsume.WithHooks and idem.WithHooks.
func (i *Instrumentation) Hooks() txconsume.Hooks {
	return txconsume.Hooks{
		OnStart:      i.onStart,
		OnHandler:    i.onHandler,
		OnResult:     i.onResult,
		OnRetry:      i.onRetry,
		OnInProgress: i.onInProgress,
	}
}

// message is what onStart keeps in the context for the hooks that follow.
type message struct {
	start time.Time
	span  trace.Span
	attrs []attribute.KeyValue // system, operation, destination, group
}

type messageKey struct{}

func fromContext(ctx context.Context) *message {
	m, _ := ctx.Value(messageKey{}).(*message)
	return m
}

// baseAttrs are the attributes every instrument of a message carries.
func (i *Instrumentation) baseAttrs(group, topic string) []attribute.KeyValue {
	return []attribute.KeyValue{
		i.system,
		semconv.MessagingOperationName("process"),
		semconv.MessagingDestinationName(topic),
		semconv.MessagingConsumerGroupName(group),
	}
}

func (i *Instrumentation) onStart(ctx context.Context, group string, msg *txconsume.Message) context.Context {
	m := &message{start: time.Now(), attrs: i.baseAttrs(group, msg.Topic)}
	parent := ctx
	if len(msg.Properties) > 0 {
		if pctx := i.propagator.Extract(ctx, propagation.MapCarrier(msg.Properties)); trace.SpanContextFromContext(pctx).IsValid() {
			parent = pctx
		}
	}
	spanAttrs := append(append([]attribute.KeyValue(nil), m.attrs...),
		semconv.MessagingOperationTypeProcess,
		semconv.MessagingMessageID(msg.ID),
		semconv.MessagingMessageBodySize(len(msg.Body)),
	)
	if len(msg.Keys) > 0 {
		spanAttrs = append(spanAttrs, semconv.MessagingRocketMQMessageKeys(msg.Keys...))
	}
	if msg.Tags != "" {
		spanAttrs = append(spanAttrs, semconv.MessagingRocketMQMessageTag(msg.Tags))
	}
	ctx, m.span = i.tracer.Start(parent, "process "+msg.Topic,
		trace.WithSpanKind(trace.SpanKindConsumer), trace.WithAttributes(spanAttrs...))
	i.groups.Store(msg, group)
	i.inFlight.Add(ctx, 1, metric.WithAttributes(m.attrs...))
	return context.WithValue(ctx, messageKey{}, m)
}

func (i *Instrumentation) onHandler(ctx context.Context, msg *txconsume.Message, err error, elapsed time.Duration) {
	m := fromContext(ctx)
	if m == nil {
		return
	}
	attrs := append(append([]attribute.KeyValue(nil), m.attrs...), OutcomeKey.String(handlerOutcome(err)))
	if err != nil && !txconsume.IsDiscard(err) && !errors.Is(err, txconsume.ErrAlreadyApplied) {
		attrs = append(attrs, errorType(err))
	}
	i.handlerDuration.Record(ctx, elapsed.Seconds(), metric.WithAttributes(attrs...))
}

// handlerOutcome names what a handler's return means for its message.
func handlerOutcome(err error) string {
	switch {
	case err == nil:
		return OutcomeApplied
	case txconsume.IsDiscard(err):
		return OutcomeDiscarded
	case errors.Is(err, txconsume.ErrAlreadyApplied):
		return OutcomeDuplicate
	default:
		return OutcomeFailed
	}
}

func (i *Instrumentation) onResult(ctx context.Context, msg *txconsume.Message, r txconsume.Result, err error, elapsed time.Duration) {
	i.groups.Delete(msg)
	m := fromContext(ctx)
	if m == nil {
		return
	}
	outcome := resultOutcome(ctx, msg, r, err)
	attrs := append(append([]attribute.KeyValue(nil), m.attrs...), OutcomeKey.String(outcome))
	if err != nil {
		attrs = append(attrs, errorType(err))
	}
	set := metric.WithAttributeSet(attribute.NewSet(attrs...))
	i.processDuration.Inst().Record(ctx, elapsed.Seconds(), set)
	i.consumed.Inst().Add(ctx, 1, set)
	if err == nil && !msg.BornAt.IsZero() {
		i.timeInQueue.Record(ctx, time.Since(msg.BornAt).Seconds(), set)
	}
	i.inFlight.Add(ctx, -1, metric.WithAttributes(m.attrs...))

	m.span.SetAttributes(OutcomeKey.String(outcome))
	if err != nil {
		m.span.SetAttributes(errorType(err))
		m.span.RecordError(err)
		m.span.SetStatus(codes.Error, err.Error())
	}
	m.span.End()
}

// resultOutcome names a message's final outcome.
func resultOutcome(ctx context.Context, msg *txconsume.Message, r txconsume.Result, err error) string {
	switch {
	case err != nil && delivery.IsFinal(ctx, msg.ReconsumeTimes):
		return OutcomeDeadLettered
	case err != nil && errors.Is(err, delivery.ErrInProgress):
		return OutcomeInProgress
	case err != nil:
		return OutcomeFailed
	case r == txconsume.Applied:
		return OutcomeApplied
	case r == txconsume.Duplicate:
		return OutcomeDuplicate
	case r == txconsume.Discarded:
		return OutcomeDiscarded
	default:
		return OutcomeFailed
	}
}

// errorType is error.type: the conventions' low-cardinality description of a failure.
func errorType(err error) attribute.KeyValue {
	var pe *txconsume.PanicError
	switch {
	case errors.Is(err, delivery.ErrInProgress):
		return semconv.ErrorTypeKey.String("in_progress")
	case errors.Is(err, txconsume.ErrRetriesExhausted):
		return semconv.ErrorTypeKey.String("retries_exhausted")
	case errors.As(err, &pe):
		return semconv.ErrorTypeKey.String("panic")
	case errors.Is(err, context.Canceled):
		return semconv.ErrorTypeKey.String("canceled")
	case errors.Is(err, context.DeadlineExceeded):
		return semconv.ErrorTypeKey.String("timeout")
	default:
		return semconv.ErrorType(err)
	}
}

func (i *Instrumentation) onRetry(ctx context.Context, msgs []*txconsume.Message, _ int, _ error, _ time.Duration) {
	var attrs []attribute.KeyValue
	if m := fromContext(ctx); m != nil {
		attrs = m.attrs
	} else if len(msgs) > 0 && msgs[0] != nil {
		group, _ := i.groups.Load(msgs[0])
		g, _ := group.(string)
		attrs = i.baseAttrs(g, msgs[0].Topic)
	}
	i.retries.Add(ctx, 1, metric.WithAttributes(attrs...))
}

func (i *Instrumentation) onInProgress(ctx context.Context, _ *txconsume.Message, _ time.Duration) {
	m := fromContext(ctx)
	if m == nil {
		return
	}
	i.conflicts.Add(ctx, 1, metric.WithAttributes(m.attrs...))
}
