// Package demo drives the order-service demo: it seeds orders, runs the service (and the naive
// consumer) as child processes, publishes order-paid events with injected duplicates, SIGKILLs
// the service midway, waits until everything is consumed and counts the effects in MySQL. The
// order service emits an order-shipped event per payment through its outbox and relay, and the
// shipping service, SIGKILLed midway too, consumes them: the counts cover that chain as well.
package demo

import (
	"errors"
	"io"
	"time"
)

// Config is one demo run. The caller creates the databases and the topic; Run does the rest.
type Config struct {
	// ServiceBin is the order-service binary (see BuildService), ShippingBin the
	// shipping-service binary (see BuildShippingService).
	ServiceBin, ShippingBin string
	// MySQLDSN selects the database of the txconsume service.
	MySQLDSN string
	// NaiveDSN selects a separate database for the naive consumer; empty disables it.
	NaiveDSN string
	// ShippingDSN selects the shipping service's database, another one.
	ShippingDSN string
	// NameServer is the RocketMQ namesrv address (host:port).
	NameServer string
	// Topic carries the order-paid events; it must exist. Group and NaiveGroup are the consumer
	// groups of the two services.
	Topic, Group, NaiveGroup string
	// ShippedTopic carries the order-shipped events that the order service emits through its
	// outbox; it must exist. ShippingGroup is the shipping service's consumer group.
	ShippedTopic, ShippingGroup string

	// Orders is the number of orders, each paid by one event. Default 2000.
	Orders int
	// SameIDResends is the fraction of orders whose event is sent a second time with the same
	// UNIQ_KEY (a producer retry). NewIDResends is the fraction sent a second time as a new
	// message with a new UNIQ_KEY (an upstream that re-publishes a payment). Defaults 0.15 each.
	SameIDResends, NewIDResends float64
	// Kills is how many times the service is SIGKILLed and restarted, evenly spread over the
	// orders applied. Its outbox relay runs in it and dies with it. Default 1; negative means
	// none.
	Kills int
	// ShippingKills is the same for the shipping service, spread over the shipments applied.
	// Default 1; negative means none.
	ShippingKills int
	// Seed makes the choice of duplicated orders reproducible. Default 1.
	Seed uint64
	// Timeout bounds waiting for the consumers to drain. Default 5 minutes, although a run drains
	// much sooner: after a SIGKILL the broker may keep listing the dead consumer for up to 150s,
	// and the queues it allocates to it wait that long (docs/upstream.md, report 6).
	Timeout time.Duration
	// Quiet is how long no delivery may arrive before a consumer counts as drained. Default 3s.
	Quiet time.Duration

	// LogDir receives the services' logs (order-service.log, naive.log, shipping-service.log).
	// Required.
	LogDir string
	// Progress receives the progress line; nil means none. Live rewrites one line with
	// carriage returns (for a terminal) instead of printing a line every few seconds.
	Progress io.Writer
	Live     bool
}

func (c *Config) setDefaults() error {
	if c.Orders == 0 {
		c.Orders = 2000
	}
	if c.SameIDResends == 0 {
		c.SameIDResends = 0.15
	}
	if c.NewIDResends == 0 {
		c.NewIDResends = 0.15
	}
	if c.Kills == 0 {
		c.Kills = 1
	}
	if c.Kills < 0 {
		c.Kills = 0
	}
	if c.ShippingKills == 0 {
		c.ShippingKills = 1
	}
	if c.ShippingKills < 0 {
		c.ShippingKills = 0
	}
	if c.Seed == 0 {
		c.Seed = 1
	}
	if c.Timeout == 0 {
		c.Timeout = 5 * time.Minute
	}
	if c.Quiet == 0 {
		c.Quiet = 3 * time.Second
	}
	switch {
	case c.ServiceBin == "" || c.ShippingBin == "":
		return errors.New("demo: ServiceBin and ShippingBin are required")
	case c.MySQLDSN == "":
		return errors.New("demo: MySQLDSN is required")
	case c.NameServer == "" || c.Topic == "" || c.Group == "":
		return errors.New("demo: NameServer, Topic and Group are required")
	case c.ShippingDSN == "" || c.ShippedTopic == "" || c.ShippingGroup == "":
		return errors.New("demo: ShippingDSN, ShippedTopic and ShippingGroup are required")
	case c.NaiveDSN != "" && c.NaiveGroup == "":
		return errors.New("demo: NaiveGroup is required with NaiveDSN")
	case c.LogDir == "":
		return errors.New("demo: LogDir is required")
	case c.Orders < 0 || c.SameIDResends < 0 || c.SameIDResends > 1 || c.NewIDResends < 0 || c.NewIDResends > 1:
		return errors.New("demo: Orders must be positive and resend fractions within [0, 1]")
	}
	return nil
}
