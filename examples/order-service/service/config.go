// Package service runs the example's services. The order service consumes order-paid events
// from RocketMQ and applies each payment exactly once to MySQL with txconsume; with a shipped
// topic it also emits an order-shipped event per payment through the outbox and relays it. The
// shipping service (ModeShipping) consumes those events exactly once. cmd/order-service and
// cmd/shipping-service are their command lines.
package service

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// Modes of the service.
const (
	// ModeTxconsume consumes through a txconsume processor: exactly once per order.
	ModeTxconsume = "txconsume"
	// ModeNaive consumes with the article's "SELECT, then apply if not paid" check and no
	// library, to show what it lets through. Never use it for real.
	ModeNaive = "naive"
	// ModeShipping is the shipping service: it consumes order-shipped events and records a
	// shipment for each, exactly once.
	ModeShipping = "shipping"
)

// Config configures the service. Zero fields take the documented defaults.
type Config struct {
	// MySQLDSN is the go-sql-driver/mysql DSN of the service's database. Required.
	MySQLDSN string
	// NameServers are the RocketMQ name server addresses (host:port). Required.
	NameServers []string
	// Topic is the topic consumed: order-paid events, or order-shipped events in ModeShipping.
	// Default "order-paid" ("order-shipped" in ModeShipping).
	Topic string
	// ShippedTopic, when set, makes the order service (ModeTxconsume) enqueue an order-shipped
	// event on this topic in every payment's transaction (outbox.Enqueue) and run an outbox
	// relay that publishes them. The topic must exist. Default "": no events.
	ShippedTopic string
	// OutboxRetention keeps the relayed events in the outbox table for this long (an audit
	// trail; the demo counts them there). Default 0: deleted within a second of being sent.
	OutboxRetention time.Duration
	// Group is the consumer group; deduplication records are kept per group. Default
	// "order-service" ("shipping-service" in ModeShipping).
	Group string
	// Mode is ModeTxconsume (default), ModeNaive or ModeShipping.
	Mode string
	// Goroutines is how many deliveries are processed at once. Default 20.
	Goroutines int
	// ShutdownTimeout bounds the wait for in-flight transactions on shutdown. Default 30s.
	ShutdownTimeout time.Duration
	// StatsInterval is how often the service logs its counters. Default 10s; negative: never.
	StatsInterval time.Duration
	// MetricsAddr is where the service serves /metrics (its txconsume metrics, in the Prometheus
	// text format through the OpenTelemetry Prometheus exporter) and /readyz (the consumer's
	// Check). Default "": no server.
	MetricsAddr string
	// FromFirstOffset makes a group that has no stored offset yet start at the beginning of
	// each queue instead of at its end. Default false (the client's default: a new group skips
	// what was published before it first joined). Turn it on when a new group must see
	// everything on the topic, as in the demo, which publishes right after starting the
	// service, possibly before the group has been assigned its queues.
	FromFirstOffset bool
}

func (c *Config) setDefaults() error {
	if c.Topic == "" {
		c.Topic = "order-paid"
		if c.Mode == ModeShipping {
			c.Topic = "order-shipped"
		}
	}
	if c.Group == "" {
		c.Group = "order-service"
		if c.Mode == ModeShipping {
			c.Group = "shipping-service"
		}
	}
	if c.Mode == "" {
		c.Mode = ModeTxconsume
	}
	if c.Goroutines == 0 {
		c.Goroutines = 20
	}
	if c.ShutdownTimeout == 0 {
		c.ShutdownTimeout = 30 * time.Second
	}
	if c.StatsInterval == 0 {
		c.StatsInterval = 10 * time.Second
	}
	switch {
	case c.MySQLDSN == "":
		return errors.New("service: a MySQL DSN is required")
	case len(c.NameServers) == 0:
		return errors.New("service: a RocketMQ name server is required")
	case c.Mode != ModeTxconsume && c.Mode != ModeNaive && c.Mode != ModeShipping:
		return fmt.Errorf("service: mode %q is not %q, %q or %q", c.Mode, ModeTxconsume, ModeNaive, ModeShipping)
	case c.ShippedTopic != "" && c.Mode != ModeTxconsume:
		return fmt.Errorf("service: a shipped topic needs mode %q", ModeTxconsume)
	case c.OutboxRetention < 0:
		return errors.New("service: the outbox retention must not be negative")
	case c.Goroutines < 1:
		return fmt.Errorf("service: goroutines must be at least 1, not %d", c.Goroutines)
	}
	return nil
}

// SplitAddrs splits a list of addresses separated by commas or semicolons (RocketMQ's own
// separator), dropping empty entries.
func SplitAddrs(s string) []string {
	var out []string
	for _, a := range strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ';' }) {
		if a = strings.TrimSpace(a); a != "" {
			out = append(out, a)
		}
	}
	return out
}
