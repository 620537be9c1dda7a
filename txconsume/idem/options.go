package idem

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/txconsume/txconsume/txconsume"
)

// Defaults of the options.
const (
	// DefaultProcessingTTL is how long a PROCESSING record holds a key when WithProcessingTTL is
	// not given.
	DefaultProcessingTTL = time.Minute
	// DefaultRetention is how long a CONSUMED record is kept when WithRetention is not given:
	// RocketMQ's default commit-log retention (fileReservedTime, 72 hours), after which the broker
	// no longer holds the message to redeliver it.
	DefaultRetention = 72 * time.Hour
	// maxSafetyMargin caps the part of the TTL kept back for marking the record consumed.
	maxSafetyMargin = 5 * time.Second
)

// InProgressPolicy says what Process does with a delivery whose key another attempt is
// processing.
type InProgressPolicy int

const (
	// RetryLater returns an error wrapping ErrInProgress (inside txconsume.RetryAfter: 1s,
	// doubling with each redelivery, capped by the time the other attempt's record has left), so
	// the broker redelivers the message later, when the first attempt has either consumed the key (then the redelivery is
	// acknowledged as a duplicate) or failed and released it (then the redelivery processes it).
	// Nothing is lost if the first attempt fails. The default.
	RetryLater InProgressPolicy = iota
	// AckAsDuplicate returns Duplicate: the delivery is acknowledged at once. Redelivery traffic
	// stays low, but if the attempt in progress then fails or crashes, this copy of the message is
	// gone; only another delivery of the same key (a redelivery of the failed attempt's own
	// message) can process it. Use it only when a lost duplicate is acceptable.
	AckAsDuplicate
)

// Option configures a Processor.
type Option func(*config)

type config struct {
	ttl        time.Duration
	retention  time.Duration
	inProgress InProgressPolicy
	keyFunc    txconsume.KeyFunc
	failOpen   bool
	logger     *slog.Logger
	hooks      txconsume.Hooks
}

func defaultConfig() config {
	return config{
		ttl:       DefaultProcessingTTL,
		retention: DefaultRetention,
		keyFunc:   txconsume.KeyByID,
		logger:    slog.Default(),
	}
}

func (c *config) validate() error {
	var errs []error
	if c.ttl < 10*time.Millisecond {
		errs = append(errs, fmt.Errorf("idem: processing TTL %v must be at least 10ms", c.ttl))
	}
	if c.retention < time.Millisecond {
		errs = append(errs, fmt.Errorf("idem: retention %v must be at least 1ms", c.retention))
	}
	if c.inProgress != RetryLater && c.inProgress != AckAsDuplicate {
		errs = append(errs, fmt.Errorf("idem: unknown in-progress policy %d", c.inProgress))
	}
	if c.keyFunc == nil {
		errs = append(errs, errors.New("idem: key func is nil"))
	}
	if c.logger == nil {
		errs = append(errs, errors.New("idem: logger is nil"))
	}
	return errors.Join(errs...)
}

// safetyMargin is the part of the TTL the handler may not use: the record must still be ours when
// MarkConsumed reaches the store after the handler returns. A fifth of the TTL, at most 5s.
func safetyMargin(ttl time.Duration) time.Duration {
	return min(ttl/5, maxSafetyMargin)
}

// WithProcessingTTL sets how long a PROCESSING record holds its key. If the process dies while
// handling a message, the key is blocked (duplicates are retried later) until the TTL passes,
// then the next delivery processes it again. The handler runs under a context whose deadline ends
// before the TTL, keeping a safety margin (a fifth of the TTL, at most 5s) to record the outcome;
// set the TTL comfortably above the handler's worst case, since a handler that ignores its
// context and runs past the TTL can have its key taken over and its effect repeated.
// Minimum 10ms. Default: DefaultProcessingTTL (1 minute).
func WithProcessingTTL(ttl time.Duration) Option {
	return func(c *config) { c.ttl = ttl }
}

// WithRetention sets how long a CONSUMED record is kept. A duplicate that arrives within the
// retention is acknowledged without running the handler; one that arrives later is processed
// again. Minimum 1ms. Default: DefaultRetention (72 hours, RocketMQ's default message retention).
func WithRetention(d time.Duration) Option {
	return func(c *config) { c.retention = d }
}

// WithInProgressPolicy sets what happens to a delivery whose key another attempt is processing.
// Default: RetryLater.
func WithInProgressPolicy(p InProgressPolicy) Option {
	return func(c *config) { c.inProgress = p }
}

// WithKeyFunc sets how a message's idempotency key is derived. Records are namespaced by group
// and topic, so the key only has to be unique within a topic. Default: txconsume.KeyByID (the
// RocketMQ UNIQ_KEY).
func WithKeyFunc(f txconsume.KeyFunc) Option {
	return func(c *config) { c.keyFunc = f }
}

// WithFailOpen makes Process run the handler without a record when the store cannot be reached
// to acquire the key, and log a warning. Deliveries then keep flowing during a store outage, at
// the price of duplicates reaching the handler (nothing deduplicates them). Without it, an
// unreachable store makes Process return a *StoreError and the broker redelivers later: the
// handler is never run blindly. Default: off.
func WithFailOpen() Option {
	return func(c *config) { c.failOpen = true }
}

// WithLogger sets the logger for records that could not be released or marked, for fail-open runs
// and for discarded messages (unless the transport that called Process logs them itself, as
// package rmq does: one line per discard). Default: slog.Default().
func WithLogger(l *slog.Logger) Option {
	return func(c *config) { c.logger = l }
}

// WithHooks sets callbacks for metrics and tracing, the same Hooks as the transactional
// Processor takes (package oteltxconsume provides them for OpenTelemetry): OnStart, OnHandler,
// OnResult and OnInProgress are called; OnRetry never is, status mode has no transaction to
// retry. Default: none.
func WithHooks(h txconsume.Hooks) Option {
	return func(c *config) { c.hooks = h }
}
