package rmq

import (
	"context"
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
	retryDelayLevel   int
	suspend           time.Duration
	logger            *slog.Logger
	maxReconsumeTimes int32
	onDeadLetter      func(context.Context, DeadLetter)
	outageRetry       time.Duration

	// Set by the constructors, not by options.
	group   string // "" until known: then taken from the Processor or the client's callback context
	orderly bool
	drain   <-chan struct{} // closed when the Consumer starts shutting down; nil for a bare listener
}

func defaultListenerConfig() listenerConfig {
	return listenerConfig{suspend: time.Second, logger: slog.Default(), maxReconsumeTimes: -1, outageRetry: DefaultOutageRetry}
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
	if l.outageRetry < 0 {
		return errOutageRetryNegative
	}
	if l.maxReconsumeTimes < -1 {
		return fmt.Errorf("rmq: max reconsume times %d must be -1 (client default) or more", l.maxReconsumeTimes)
	}
	return nil
}

type subscription struct {
	topic    string
	selector consumer.MessageSelector
}

type consumerConfig struct {
	listener      listenerConfig
	nameServers   []string
	group         string
	subs          []subscription
	orderly       bool
	batchMaxSize  int // 0 until WithBatchMaxSize: then NewConsumer chooses (DefaultBatchMaxSize)
	batchSet      bool
	goroutines    int
	credentials   primitive.Credentials
	instanceName  string
	fromWhere     consumer.ConsumeFromWhere
	strategy      consumer.AllocateStrategy
	stallAfter    time.Duration
	clientOptions []consumer.Option
}

func defaultConsumerConfig() consumerConfig {
	return consumerConfig{
		listener:   defaultListenerConfig(),
		goroutines: 20,
		fromWhere:  consumer.ConsumeFromLastOffset,
		stallAfter: DefaultStallWarning,
	}
}

func (c *consumerConfig) validate() error {
	var errs []error
	if err := checkAddrs(c.nameServers); err != nil {
		errs = append(errs, err)
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
	if c.batchSet && (c.batchMaxSize < 1 || c.batchMaxSize > 1024) {
		errs = append(errs, fmt.Errorf("rmq: batch max size %d out of range [1, 1024]", c.batchMaxSize))
	}
	if c.stallAfter < 0 {
		errs = append(errs, fmt.Errorf("rmq: stall warning %v must not be negative", c.stallAfter))
	}
	if c.goroutines < 1 {
		errs = append(errs, fmt.Errorf("rmq: goroutines %d must be at least 1", c.goroutines))
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

// WithOutageRetry sets how long a delivery that failed only because the database (or the status
// mode's store) could not be reached is run again in place, with a backoff of 100ms growing to 2s,
// before it is handed back to the broker as a failure. Meanwhile no redelivery is spent (a database
// outage would otherwise give messages up to the dead-letter topic at the pace of the retry delay),
// the client hands out no more messages once every goroutine waits, and the outage is logged once
// when it begins, every 30s, and when it ends instead of once per failed delivery. A Consumer's
// Shutdown ends the waiting at once. Errors that count: network errors, a connection the driver
// found broken, a server shutting down or killing the connection, and txconsume.ErrCommitUnknown
// (the retry settles it: a Duplicate if the commit happened). 0 hands every failure back at once.
// Default: DefaultOutageRetry (1m).
func WithOutageRetry(d time.Duration) ListenerOption {
	return listenerOptionFunc(func(l *listenerConfig) { l.outageRetry = d })
}

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

// WithLogger sets the logger for failed deliveries, discarded and dead-lettered messages and the
// consumer's life cycle; every line carries the group. A Consumer also receives the RocketMQ
// client's own records that name its group, and those that name none while it is the
// longest-running Consumer of the process and SetClientLogger was not called (see
// SetClientLogger). Default: slog.Default().
func WithLogger(logger *slog.Logger) ListenerOption {
	return listenerOptionFunc(func(l *listenerConfig) { l.logger = logger })
}

// WithNameServers sets the name server addresses, host:port each. Host names (a Kubernetes
// service name, say) are resolved when the consumer starts and again whenever the client
// refreshes its name server list (every 2 minutes), so a changed address is followed; the
// client itself accepts only IP addresses. Required.
func WithNameServers(addrs ...string) Option {
	return optionFunc(func(c *consumerConfig) { c.nameServers = append([]string(nil), addrs...) })
}

// WithGroup sets the consumer group. Deduplication records are kept per group, so the broker's
// group and the Processor's must be one: when the Processor knows its group (a
// *txconsume.Processor or *idem.Processor has a Group method), NewConsumer takes it from there
// and WithGroup may be left out; a WithGroup that differs from it is an error. Required only for
// Processors that do not know their group.
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

// DefaultBatchMaxSize is the most messages one delivery carries when WithBatchMaxSize is not
// given, the Processor implements BatchProcessor (a *txconsume.Processor does) and consumption is
// concurrent: their transactions then commit up to 32 messages at once. Other Processors, and
// orderly consumption, get one message per delivery.
//
// 32 is what the client pulls from a queue at once, so a delivery is at most one pull and waits
// for nothing. It was measured against 1, 8 and 16 through the broker (`make bench`): on distinct
// rows and on hot rows alike it gave the most messages per second, with the same latency at a
// steady rate.
const DefaultBatchMaxSize = 32

// WithBatchMaxSize sets how many messages one delivery may carry (1..1024). With more than one, a
// Processor that implements BatchProcessor handles them in one transaction (a
// *txconsume.Processor splits it when it loses a lock conflict, down to one message per
// transaction, and then runs fewer batch transactions at once, or smaller ones); other Processors
// handle them one by one.
//
// The trade-off: a larger delivery spreads one commit and one claim statement over all its
// messages, which multiplies throughput when the database is the bottleneck; but a failure
// redelivers the whole delivery (the messages committed before come back and are acknowledged
// as duplicates, which costs a claim each), a failing handler makes the batch run again with
// savepoints, and under a backlog a message waits for the messages before it in its delivery.
// Orderly consumption (WithOrderly) handles a delivery one message at a time either way.
// Default: DefaultBatchMaxSize (32) for a BatchProcessor consumed concurrently, else 1.
func WithBatchMaxSize(n int) Option {
	return optionFunc(func(c *consumerConfig) { c.batchMaxSize, c.batchSet = n, true })
}

// WithGoroutines sets how many deliveries are processed at the same time (concurrent mode). Each
// holds a database connection while it runs, so keep it at or below the pool size. Default: 20.
func WithGoroutines(n int) Option {
	return optionFunc(func(c *consumerConfig) { c.goroutines = n })
}

// WithMaxReconsumeTimes sets how many times a failing message is redelivered before it is moved to
// the dead-letter topic %DLQ%<group> (DeadLetterTopic). Default: -1, the client's default: 16 in
// concurrent mode, unlimited in orderly mode. With a Consumer it configures the client; given to
// Listener or OrderlyListener it must repeat the value the client was configured with
// (consumer.WithMaxReconsumeTimes), so that the listener recognises a message's last attempt and
// reports it as given up (WithOnDeadLetter) instead of "redelivering".
func WithMaxReconsumeTimes(n int32) ListenerOption {
	return listenerOptionFunc(func(l *listenerConfig) { l.maxReconsumeTimes = n })
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

// WithStallWarning sets after how long a delivery whose handler has not returned is logged as
// stalled (at warning level, with its message id), and how often it is logged again while it stays
// so. A handler waiting on a database that stopped answering without closing its connections
// would otherwise hold the consumer without a word; set readTimeout and writeTimeout in the DSN to
// have such queries fail instead. 0 turns the warning off. Default: DefaultStallWarning (1m).
func WithStallWarning(d time.Duration) Option {
	return optionFunc(func(c *consumerConfig) { c.stallAfter = d })
}

// WithAllocateStrategy sets how the queues of a topic are shared among the consumers of the
// group, for example consumer.AllocateByAveragelyCircle. Give it here rather than as
// consumer.WithStrategy in WithClientOptions: the Consumer wraps the strategy to restart the pulls
// of a broker that comes back after its connection closed (see Consumer), and a strategy given to
// the client directly replaces that wrapper. Default: consumer.AllocateByAveragely (the client's).
func WithAllocateStrategy(s consumer.AllocateStrategy) Option {
	return optionFunc(func(c *consumerConfig) { c.strategy = s })
}

// WithClientOptions passes further options to the client's push consumer (namespace, TLS, pull
// thresholds, ...). They are applied after the ones this package sets, so they win. Default: none.
func WithClientOptions(opts ...consumer.Option) Option {
	return optionFunc(func(c *consumerConfig) { c.clientOptions = append(c.clientOptions, opts...) })
}
