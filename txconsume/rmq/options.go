package rmq

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/apache/rocketmq-client-go/v2/consumer"
	"github.com/apache/rocketmq-client-go/v2/primitive"
)

// Option configures a Consumer (NewConsumer).
type Option interface {
	applyConsumer(*consumerConfig)
}

// ListenerOption configures Listener and OrderlyListener. Every ListenerOption is also an Option, so
// NewConsumer accepts them too.
type ListenerOption interface {
	Option
	applyListener(*listenerConfig)
}

type listenerConfig struct {
	retryDelayLevel int
	suspend         time.Duration
	logger          *slog.Logger
}

func defaultListenerConfig() listenerConfig {
	return listenerConfig{suspend: time.Second, logger: slog.Default()}
}

func (l *listenerConfig) validate() error {
	if l.retryDelayLevel < 0 || l.retryDelayLevel > MaxDelayLevel {
		return fmt.Errorf("rmq: retry delay level %d out of range [0, %d]", l.retryDelayLevel, MaxDelayLevel)
	}
	if l.suspend <= 0 {
		return fmt.Errorf("rmq: suspend time %v must be positive", l.suspend)
	}
	if l.logger == nil {
		return errors.New("rmq: nil logger")
	}
	return nil
}

type subscription struct {
	topic    string
	selector consumer.MessageSelector
}

type consumerConfig struct {
	listener          listenerConfig
	nameServers       []string
	group             string
	subs              []subscription
	orderly           bool
	batchMaxSize      int
	goroutines        int
	maxReconsumeTimes int32
	credentials       primitive.Credentials
	instanceName      string
	fromWhere         consumer.ConsumeFromWhere
	clientOptions     []consumer.Option
}

func defaultConsumerConfig() consumerConfig {
	return consumerConfig{
		listener:          defaultListenerConfig(),
		batchMaxSize:      1,
		goroutines:        20,
		maxReconsumeTimes: -1,
		fromWhere:         consumer.ConsumeFromLastOffset,
	}
}

func (c *consumerConfig) validate() error {
	var errs []error
	if len(c.nameServers) == 0 {
		errs = append(errs, errors.New("rmq: no name server (WithNameServers)"))
	}
	if c.group == "" {
		errs = append(errs, errors.New("rmq: no consumer group (WithGroup)"))
	}
	if len(c.subs) == 0 {
		errs = append(errs, errors.New("rmq: no topic (WithSubscription)"))
	}
	seen := make(map[string]bool, len(c.subs))
	for _, s := range c.subs {
		if s.topic == "" {
			errs = append(errs, errors.New("rmq: empty topic in WithSubscription"))
		}
		if seen[s.topic] {
			errs = append(errs, fmt.Errorf("rmq: topic %q subscribed twice", s.topic))
		}
		seen[s.topic] = true
	}
	if c.batchMaxSize < 1 || c.batchMaxSize > 1024 {
		errs = append(errs, fmt.Errorf("rmq: batch max size %d out of range [1, 1024]", c.batchMaxSize))
	}
	if c.goroutines < 1 {
		errs = append(errs, fmt.Errorf("rmq: goroutines %d must be at least 1", c.goroutines))
	}
	if c.maxReconsumeTimes < -1 {
		errs = append(errs, fmt.Errorf("rmq: max reconsume times %d must be -1 (client default) or more", c.maxReconsumeTimes))
	}
	if err := c.listener.validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

type optionFunc func(*consumerConfig)

func (f optionFunc) applyConsumer(c *consumerConfig) { f(c) }

type listenerOptionFunc func(*listenerConfig)

func (f listenerOptionFunc) applyListener(l *listenerConfig) { f(l) }
func (f listenerOptionFunc) applyConsumer(c *consumerConfig) { f(&c.listener) }

// WithRetryDelayLevel sets the broker delay level of a redelivery after a failed concurrent delivery
// (level 1 = 1s, 2 = 5s, 3 = 10s, ... 18 = 2h; see DelayLevel). A handler's txconsume.RetryAfter(d, err)
// overrides it for its message. Default: 0, the broker's own schedule, which waits level
// 3+ReconsumeTimes (10s, 30s, 1m, 2m, ...). Orderly consumption does not use it (see WithSuspendTime).
func WithRetryDelayLevel(level int) ListenerOption {
	return listenerOptionFunc(func(l *listenerConfig) { l.retryDelayLevel = level })
}

// WithSuspendTime sets how long an orderly queue pauses after a failed delivery before the same
// messages are tried again, in order. The client's own default (-1 in the callback context) retries at
// once in a tight loop, so the listener always sets this. A handler's txconsume.RetryAfter(d, err)
// overrides it. Default: 1s.
func WithSuspendTime(d time.Duration) ListenerOption {
	return listenerOptionFunc(func(l *listenerConfig) { l.suspend = d })
}

// WithLogger sets the logger for failed deliveries, discarded messages and the consumer's life cycle.
// It does not affect the RocketMQ client's own logging, which is process-wide (see SetClientLogger).
// Default: slog.Default().
func WithLogger(logger *slog.Logger) ListenerOption {
	return listenerOptionFunc(func(l *listenerConfig) { l.logger = logger })
}

// WithNameServers sets the name server addresses (host:port). Required.
func WithNameServers(addrs ...string) Option {
	return optionFunc(func(c *consumerConfig) { c.nameServers = append([]string(nil), addrs...) })
}

// WithGroup sets the consumer group. Deduplication records are kept per group, so use the same
// name for txconsume.New. Required.
func WithGroup(group string) Option {
	return optionFunc(func(c *consumerConfig) { c.group = group })
}

// WithSubscription subscribes to topic with a tag expression ("*" or "" for all tags, "a || b" for
// some). Call it once per topic; all topics go to the same Processor. At least one is required.
func WithSubscription(topic, tagExpression string) Option {
	return WithSelector(topic, consumer.MessageSelector{Type: consumer.TAG, Expression: tagExpression})
}

// WithSelector subscribes to topic with any client selector, for example an SQL92 expression.
func WithSelector(topic string, selector consumer.MessageSelector) Option {
	return optionFunc(func(c *consumerConfig) {
		if selector.Type == "" {
			selector.Type = consumer.TAG
		}
		if selector.Expression == "" {
			selector.Expression = "*"
		}
		c.subs = append(c.subs, subscription{topic: topic, selector: selector})
	})
}

// WithOrderly consumes each queue in order with OrderlyListener: one delivery per queue at a time,
// a failure pauses the queue (WithSuspendTime) instead of redelivering through the retry topic.
// Default: concurrent consumption with Listener.
func WithOrderly() Option {
	return optionFunc(func(c *consumerConfig) { c.orderly = true })
}

// WithBatchMaxSize sets how many messages one delivery may carry (1..1024). With more than one, a
// Processor that implements BatchProcessor handles them in one transaction; a failure redelivers
// the whole delivery, and the messages committed before come back as duplicates. Default: 1.
func WithBatchMaxSize(n int) Option {
	return optionFunc(func(c *consumerConfig) { c.batchMaxSize = n })
}

// WithGoroutines sets how many deliveries are processed at the same time (concurrent mode). Each
// holds a database connection while it runs, so keep it at or below the pool size. Default: 20.
func WithGoroutines(n int) Option {
	return optionFunc(func(c *consumerConfig) { c.goroutines = n })
}

// WithMaxReconsumeTimes sets how many times a failing message is redelivered before the broker moves
// it to the dead-letter topic %DLQ%<group>. Default: -1, the client's default: 16 in concurrent mode,
// unlimited in orderly mode.
func WithMaxReconsumeTimes(n int32) Option {
	return optionFunc(func(c *consumerConfig) { c.maxReconsumeTimes = n })
}

// WithCredentials sets the ACL access key and secret key. Consumers and producers of one process that
// share an instance name share one client connection, and it keeps the credentials of the first one
// started. Default: none.
func WithCredentials(accessKey, secretKey string) Option {
	return optionFunc(func(c *consumerConfig) {
		c.credentials = primitive.Credentials{AccessKey: accessKey, SecretKey: secretKey}
	})
}

// WithInstanceName sets the client instance name. Two Consumers of one group in the same process
// need distinct names, or the client refuses the second. Default: the client's ("DEFAULT", which the
// client replaces by the process id).
func WithInstanceName(name string) Option {
	return optionFunc(func(c *consumerConfig) { c.instanceName = name })
}

// WithConsumeFromWhere sets where a group without a stored offset starts reading.
// Default: consumer.ConsumeFromLastOffset (the client's default).
//
// A brand-new group starting from the last offset does not see messages published between its
// Start and its first rebalance. A service whose group is created together with the topic, or
// that must not miss its first messages, should use consumer.ConsumeFromFirstOffset: with
// txconsume, re-reading what an earlier instance already consumed costs duplicates, not effects.
func WithConsumeFromWhere(w consumer.ConsumeFromWhere) Option {
	return optionFunc(func(c *consumerConfig) { c.fromWhere = w })
}

// WithClientOptions passes further options to the client's push consumer (namespace, TLS, pull
// thresholds, ...). They are applied after the ones this package sets, so they win. Default: none.
func WithClientOptions(opts ...consumer.Option) Option {
	return optionFunc(func(c *consumerConfig) { c.clientOptions = append(c.clientOptions, opts...) })
}
