package rmq

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	rocketmq "github.com/apache/rocketmq-client-go/v2"
	"github.com/apache/rocketmq-client-go/v2/consumer"
	"github.com/apache/rocketmq-client-go/v2/primitive"
)

// Errors of the Consumer's life cycle.
var (
	// ErrStarted: Start was called twice.
	ErrStarted = errors.New("rmq: consumer already started")
	// ErrClosed: Start after Shutdown.
	ErrClosed = errors.New("rmq: consumer shut down")
	// ErrShuttingDown is what a delivery that arrives after Shutdown began returns to the client,
	// without reaching the Processor.
	ErrShuttingDown = errors.New("rmq: consumer shutting down")
)

type state int

const (
	stateNew state = iota
	stateRunning
	stateDraining
	stateClosed
)

// Consumer owns a RocketMQ push consumer that feeds a Processor, and shuts it down without cutting
// transactions short: the client's own Shutdown returns while callbacks still run, and their results
// are then thrown away.
type Consumer struct {
	cfg      consumerConfig
	p        Processor
	listen   ListenerFunc
	log      *slog.Logger
	resolver *hostResolver
	admin    *Admin

	mu       sync.Mutex
	state    state
	inflight int
	push     rocketmq.PushConsumer
	idle     chan struct{} // closed when draining and no delivery is in flight
	released chan struct{} // closed after the client shut down: held deliveries return
	closed   chan struct{} // closed when Shutdown has finished

	// abort cancels the context of in-flight deliveries when Shutdown's context ends first.
	abortCtx context.Context
	abort    context.CancelFunc

	// delivered is what the client delivered, for settle.
	delivered deliveries
}

// NewConsumer checks the options and returns a Consumer that hands deliveries to p once started.
// WithNameServers and WithSubscription are required. The group is the Processor's when it has a
// Group method (*txconsume.Processor and *idem.Processor do), so deduplication and the broker
// use one name; WithGroup is required only for Processors that do not say, and a WithGroup that
// differs from the Processor's group is an error.
func NewConsumer(p Processor, opts ...Option) (*Consumer, error) {
	cfg := defaultConsumerConfig()
	for _, o := range opts {
		o.applyConsumer(&cfg)
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if p == nil {
		return nil, errors.New("rmq: nil Processor")
	}
	switch pg := processorGroup(p); {
	case cfg.group == "" && pg == "":
		return nil, errors.New("rmq: no consumer group: the Processor does not say its group, give WithGroup")
	case cfg.group == "":
		cfg.group = pg
	case pg != "" && pg != cfg.group:
		return nil, fmt.Errorf("rmq: WithGroup(%q) differs from the Processor's group %q: deduplication records "+
			"would be kept under a group the broker does not know; leave WithGroup out or give the same name", cfg.group, pg)
	}
	if !cfg.batchSet {
		// Orderly deliveries are handled one message at a time, so larger ones would only add
		// duplicates after a failure.
		cfg.batchMaxSize = 1
		if _, ok := p.(BatchProcessor); ok && !cfg.orderly {
			cfg.batchMaxSize = DefaultBatchMaxSize
		}
	}
	cfg.listener.group = cfg.group
	cfg.listener.orderly = cfg.orderly
	l, err := newListenerFromConfig(p, cfg.listener)
	if err != nil {
		return nil, err
	}
	c := &Consumer{
		cfg:      cfg,
		p:        p,
		log:      cfg.listener.logger,
		resolver: newHostResolver(cfg.nameServers, cfg.listener.logger.With(slog.String("group", cfg.group))),
		idle:     make(chan struct{}),
		released: make(chan struct{}),
		closed:   make(chan struct{}),

		delivered: newDeliveries(),
	}
	adminOpts := []AdminOption{}
	if !cfg.credentials.IsEmpty() {
		adminOpts = append(adminOpts, WithAdminCredentials(cfg.credentials.AccessKey, cfg.credentials.SecretKey))
	}
	if c.admin, err = NewAdmin(cfg.nameServers, adminOpts...); err != nil {
		return nil, err
	}
	c.abortCtx, c.abort = context.WithCancel(context.Background())
	if cfg.orderly {
		c.listen = l.consumeOrderly
	} else {
		c.listen = l.consumeConcurrently
	}
	return c, nil
}

// Group returns the consumer group.
func (c *Consumer) Group() string { return c.cfg.group }

func (c *Consumer) clientOptions() []consumer.Option {
	opts := []consumer.Option{
		consumer.WithNsResolver(c.resolver),
		consumer.WithGroupName(c.cfg.group),
		consumer.WithConsumerOrder(c.cfg.orderly),
		consumer.WithConsumeMessageBatchMaxSize(c.cfg.batchMaxSize),
		consumer.WithConsumeGoroutineNums(c.cfg.goroutines),
		consumer.WithMaxReconsumeTimes(c.cfg.listener.maxReconsumeTimes),
		consumer.WithConsumeFromWhere(c.cfg.fromWhere),
	}
	if !c.cfg.credentials.IsEmpty() {
		opts = append(opts, consumer.WithCredentials(c.cfg.credentials))
	}
	if c.cfg.instanceName != "" {
		opts = append(opts, consumer.WithInstance(c.cfg.instanceName))
	}
	return append(opts, c.cfg.clientOptions...)
}

// StartTimeout bounds the checks Start runs before it starts the client (see Check).
const StartTimeout = 30 * time.Second

// Check reports whether the Consumer can consume, each failure with its cause:
//
//   - the Processor's own check, when it has a Check method: for a *txconsume.Processor the
//     database answers and its schema is migrated (an error wrapping migrations.ErrNotMigrated
//     says to run migrations.Up or `txconsume migrate up`); for an *idem.Processor its store
//     answers;
//   - a name server answers (ErrNameServerUnreachable names each address and its cause);
//   - every subscribed topic is routed to a broker (ErrTopicNotFound says how to create it).
//
// Start runs it first, so a consumer that could only fail every delivery does not start. It
// suits a readiness probe; it opens its own short connections and does not disturb consumption.
func (c *Consumer) Check(ctx context.Context) error {
	if ch, ok := c.p.(checker); ok {
		if err := ch.Check(ctx); err != nil {
			return err
		}
	}
	if addrs, err := c.resolver.lookup(ctx); len(addrs) == 0 {
		return fmt.Errorf("rmq: group %s: %w", c.cfg.group, err)
	}
	for _, s := range c.cfg.subs {
		if err := c.admin.CheckTopic(ctx, s.topic); err != nil {
			return fmt.Errorf("rmq: group %s: %w", c.cfg.group, err)
		}
	}
	return nil
}

// Start checks that the Consumer can consume (see Check, bounded by StartTimeout), then creates
// the client's push consumer, subscribes and starts consuming. A failed check returns its error
// and starts nothing.
func (c *Consumer) Start() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch c.state {
	case stateRunning:
		return ErrStarted
	case stateDraining, stateClosed:
		return ErrClosed
	}
	ctx, cancel := context.WithTimeout(context.Background(), StartTimeout)
	err := c.Check(ctx)
	cancel()
	if err != nil {
		return fmt.Errorf("rmq: start consumer group %s: %w", c.cfg.group, err)
	}
	push, err := rocketmq.NewPushConsumer(c.clientOptions()...)
	if err != nil {
		return fmt.Errorf("rmq: new push consumer: %w", err)
	}
	for _, s := range c.cfg.subs {
		if err := push.Subscribe(s.topic, s.selector, c.consume); err != nil {
			return fmt.Errorf("rmq: subscribe %s: %w", s.topic, err)
		}
	}
	registerClientLogger(c)
	if err := push.Start(); err != nil {
		unregisterClientLogger(c)
		// The client shuts itself down when a route is missing; nothing else is registered yet when it
		// fails earlier, so there is nothing to undo here.
		return fmt.Errorf("rmq: start consumer group %s: %w", c.cfg.group, err)
	}
	c.push = push
	c.state = stateRunning
	c.log.Info("rmq: consumer started", slog.String("group", c.cfg.group), slog.Bool("orderly", c.cfg.orderly))
	return nil
}

// Shutdown stops taking deliveries, waits until the ones in flight have committed or rolled back, waits
// until the client has recorded their results (it does so after the callback returned, and would drop
// what it had not recorded when it shuts down), then shuts the client down, which sends the consumed
// offsets to the broker. A consumer started again in the group then gets the messages that were not
// acknowledged, and the acknowledged ones only where RocketMQ's offsets cannot tell them apart: a
// queue's offset is its lowest message not acknowledged, so acknowledged messages after it in the same
// queue come again, as Duplicates. If ctx ends first, the contexts of the deliveries still in flight
// are cancelled (their transactions roll back and the messages come again), the client is shut down
// anyway and the error wraps ctx.Err().
//
// A delivery that arrives once Shutdown has begun does not reach the Processor: it is held until the
// client has shut down and then fails, so the client discards its result and the message stays
// unacknowledged for the next consumer of the group (no redelivery through the retry topic, no
// reconsume count spent). Shutdown before Start just marks the Consumer closed; calling Shutdown again
// waits for the first call to finish.
func (c *Consumer) Shutdown(ctx context.Context) error {
	c.mu.Lock()
	switch c.state {
	case stateNew:
		c.state = stateClosed
		close(c.released)
		close(c.closed)
		c.abort()
		c.mu.Unlock()
		return nil
	case stateDraining, stateClosed:
		c.mu.Unlock()
		select {
		case <-c.closed:
			return nil
		case <-ctx.Done():
			// Both may be ready: a consumer already shut down is not a failure.
			select {
			case <-c.closed:
				return nil
			default:
				return ctx.Err()
			}
		}
	}
	c.state = stateDraining
	if c.inflight == 0 {
		close(c.idle)
	}
	inflight := c.inflight
	c.mu.Unlock()

	c.log.Info("rmq: consumer shutting down, waiting for in-flight deliveries",
		slog.String("group", c.cfg.group), slog.Int("in_flight", inflight))
	// Stop pulling; what was pulled already is held by consume.
	c.push.Suspend()

	var errs []error
	select {
	case <-c.idle:
	case <-ctx.Done():
		// select picks at random among ready cases: an ended ctx must not turn a drained consumer
		// into a failed shutdown.
		select {
		case <-c.idle:
		default:
			c.mu.Lock()
			left := c.inflight
			c.mu.Unlock()
			c.abort()
			errs = append(errs, fmt.Errorf("rmq: shutdown gave up waiting for %d in-flight deliveries: %w", left, ctx.Err()))
		}
	}
	if len(errs) == 0 {
		// The client records a result after the callback returned, and drops it if its Shutdown
		// came first: see settle.
		c.settle(ctx)
	}
	if err := c.push.Shutdown(); err != nil {
		errs = append(errs, fmt.Errorf("rmq: client shutdown: %w", err))
	}
	c.mu.Lock()
	c.state = stateClosed
	c.mu.Unlock()
	close(c.released)
	c.abort()
	close(c.closed)
	unregisterClientLogger(c)
	c.log.Info("rmq: consumer shut down", slog.String("group", c.cfg.group))
	return errors.Join(errs...)
}

// consume is the callback given to the client.
func (c *Consumer) consume(ctx context.Context, msgs ...*primitive.MessageExt) (consumer.ConsumeResult, error) {
	if !c.enter(msgs) {
		// Hold the delivery until the client has marked its queues dropped: the client then ignores the
		// result, where a failure returned now would send the messages to the retry topic.
		<-c.released
		if c.cfg.orderly {
			setSuspend(ctx, 0)
			return consumer.SuspendCurrentQueueAMoment, ErrShuttingDown
		}
		return consumer.ConsumeRetryLater, ErrShuttingDown
	}
	defer c.leave()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(c.abortCtx, cancel)
	defer stop()
	return c.listen(ctx, msgs...)
}

func (c *Consumer) enter(msgs []*primitive.MessageExt) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	running := c.state == stateRunning
	c.delivered.note(msgs, !running)
	if !running {
		return false
	}
	c.inflight++
	return true
}

func (c *Consumer) leave() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.inflight--
	if c.inflight == 0 && c.state == stateDraining {
		select {
		case <-c.idle:
		default:
			close(c.idle)
		}
	}
}
