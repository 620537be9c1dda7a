package outbox

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/apache/rocketmq-client-go/v2/primitive"
)

// RelayOption configures a Relay; see NewRelay.
type RelayOption func(*relayConfig)

type relayConfig struct {
	batchSize      int
	maxBatchBytes  int
	pollInterval   time.Duration
	backoffMin     time.Duration
	backoffMax     time.Duration
	retention      time.Duration
	cleanupBatch   int
	statusInterval time.Duration
	hooks          Hooks
	logger         *slog.Logger
	errs           []error
}

// Defaults of the relay options.
const (
	DefaultBatchSize      = 512
	DefaultMaxBatchBytes  = 1 << 20
	DefaultPollInterval   = 500 * time.Millisecond
	DefaultBackoffMin     = 100 * time.Millisecond
	DefaultBackoffMax     = 5 * time.Second
	DefaultCleanupBatch   = 1000
	DefaultStatusInterval = 15 * time.Second
)

// Limits of the relay options.
const (
	// MaxBatchSize bounds WithBatchSize: the rows of a round are read and locked with one
	// statement each.
	MaxBatchSize = 1000
	// MaxBatchBytes is the broker's default maxMessageSize, which a batch send's encoded
	// messages must not exceed together.
	MaxBatchBytes = 4 << 20
)

func defaultRelayConfig() relayConfig {
	return relayConfig{
		batchSize:      DefaultBatchSize,
		maxBatchBytes:  DefaultMaxBatchBytes,
		pollInterval:   DefaultPollInterval,
		backoffMin:     DefaultBackoffMin,
		backoffMax:     DefaultBackoffMax,
		cleanupBatch:   DefaultCleanupBatch,
		statusInterval: DefaultStatusInterval,
		logger:         slog.New(slog.DiscardHandler),
	}
}

// WithBatchSize sets the most rows a relay takes in one round (one transaction: the rows are
// read, sent and marked sent together). Larger rounds send more per round trip; each round
// holds its rows' shards until it commits. 1 to MaxBatchSize. Default: DefaultBatchSize (512).
func WithBatchSize(n int) RelayOption {
	return func(c *relayConfig) {
		if n < 1 || n > MaxBatchSize {
			c.errs = append(c.errs, fmt.Errorf("outbox: WithBatchSize: must be 1 to %d, got %d", MaxBatchSize, n))
			return
		}
		c.batchSize = n
	}
}

// WithMaxBatchBytes sets the most bytes of encoded messages one send carries. Messages larger
// than this are sent alone. 1 to MaxBatchBytes. Default: DefaultMaxBatchBytes (1 MiB).
func WithMaxBatchBytes(n int) RelayOption {
	return func(c *relayConfig) {
		if n < 1 || n > MaxBatchBytes {
			c.errs = append(c.errs, fmt.Errorf("outbox: WithMaxBatchBytes: must be 1 to %d, got %d", MaxBatchBytes, n))
			return
		}
		c.maxBatchBytes = n
	}
}

// WithPollInterval sets how often an idle relay looks for rows that no Enqueue in its own
// process announced: rows committed by other processes. Default: DefaultPollInterval (500ms).
func WithPollInterval(d time.Duration) RelayOption {
	return func(c *relayConfig) {
		if d <= 0 {
			c.errs = append(c.errs, errors.New("outbox: WithPollInterval: must be positive"))
			return
		}
		c.pollInterval = d
	}
}

// WithBackoff sets the wait after a failed send before the topic's rows are tried again,
// doubling from minDelay up to maxDelay while the failures go on, and the wait after a failed
// database round. The rows stay in the table meanwhile. Default: DefaultBackoffMin (100ms) and
// DefaultBackoffMax (5s).
func WithBackoff(minDelay, maxDelay time.Duration) RelayOption {
	return func(c *relayConfig) {
		if minDelay <= 0 || maxDelay < minDelay {
			c.errs = append(c.errs, errors.New("outbox: WithBackoff: need 0 < min <= max"))
			return
		}
		c.backoffMin, c.backoffMax = minDelay, maxDelay
	}
}

// WithRetention keeps sent rows for d, marked with their sent_at time, as an audit trail; the
// relay deletes rows sent more than d ago, in batches of WithCleanupBatch rows. Default 0: the
// relay deletes sent rows within a second.
func WithRetention(d time.Duration) RelayOption {
	return func(c *relayConfig) {
		if d < 0 {
			c.errs = append(c.errs, errors.New("outbox: WithRetention: negative"))
			return
		}
		c.retention = d
	}
}

// WithCleanupBatch sets how many sent rows one cleanup statement deletes (see WithRetention).
// 1 to MaxBatchSize*10. Default: DefaultCleanupBatch (1000).
func WithCleanupBatch(n int) RelayOption {
	return func(c *relayConfig) {
		if n < 1 || n > MaxBatchSize*10 {
			c.errs = append(c.errs, fmt.Errorf("outbox: WithCleanupBatch: must be 1 to %d, got %d", MaxBatchSize*10, n))
			return
		}
		c.cleanupBatch = n
	}
}

// WithStatusInterval sets how often Hooks.OnStatus is called. Default: DefaultStatusInterval
// (15s).
func WithStatusInterval(d time.Duration) RelayOption {
	return func(c *relayConfig) {
		if d <= 0 {
			c.errs = append(c.errs, errors.New("outbox: WithStatusInterval: must be positive"))
			return
		}
		c.statusInterval = d
	}
}

// WithHooks sets callbacks for metrics and tracing. Default: none.
func WithHooks(h Hooks) RelayOption {
	return func(c *relayConfig) { c.hooks = h }
}

// WithLogger sets where the relay logs its start (Info), failed sends and rounds (Warn), the
// recovery after them (Info) and errors that stop it (Error). Default: a logger that discards
// everything.
func WithLogger(l *slog.Logger) RelayOption {
	return func(c *relayConfig) {
		if l == nil {
			c.errs = append(c.errs, errors.New("outbox: WithLogger(nil)"))
			return
		}
		c.logger = l
	}
}

// Hooks are optional callbacks for metrics and tracing, called synchronously on the relay's
// goroutine: keep them fast. Nil fields are skipped.
type Hooks struct {
	// OnSend is called after every send to the broker, successful or not, as soon as SendSync
	// returns and before the rows are recorded as sent. A message whose rows could not be
	// recorded is sent again later, so OnSend can see a message id more than once (the copies
	// share the id, and consumers that deduplicate by id apply it once).
	OnSend func(ctx context.Context, s Send)

	// OnStatus is called every WithStatusInterval with the pending messages per topic (see
	// Status), for gauges of the backlog and of its age, which is what to alert on.
	OnStatus func(ctx context.Context, status []TopicStatus)
}

// Send describes one send: messages of one topic, sent to one queue with one SendSync.
type Send struct {
	Topic string
	// IDs are the message ids (UNIQ_KEY) in the order they were sent.
	IDs []string
	// Result is the broker's answer (queue, offset of the first message), nil when Err is set.
	Result *primitive.SendResult
	// Err is the send's error, nil when the broker stored the messages.
	Err error
	// Duration is how long SendSync took.
	Duration time.Duration
}
