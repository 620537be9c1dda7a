// Command shipping-service consumes the order-shipped events that order-service emits through
// its outbox, and records one shipment per event exactly once, in a transaction with txconsume's
// deduplication record keyed by the message id the outbox gave the event.
//
// Usage:
//
//	shipping-service [flags]
//
// The flags are order-service's, without -mode, -shipped-topic and -outbox-retention, and with
// SHIPPING_SERVICE_ environment variables: -topic (default order-shipped), -group (default
// shipping-service), -mysql-dsn (TXCONSUME_MYSQL_DSN: the shipping service's own database),
// -namesrv, -goroutines, -shutdown-timeout, -consume-from, -log-level, -log-format,
// -metrics-addr. At debug level it logs one "consumed" record per delivery.
package main

import (
	"github.com/txconsume/txconsume/examples/order-service/internal/cli"
	"github.com/txconsume/txconsume/examples/order-service/service"
)

func main() {
	cli.Main(cli.Command{
		Name: "shipping-service", EnvPrefix: "SHIPPING_SERVICE_",
		Defaults: service.Config{Mode: service.ModeShipping, Topic: "order-shipped", Group: "shipping-service"},
	})
}
