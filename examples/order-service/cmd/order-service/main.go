// Command order-service consumes order-paid events from RocketMQ and applies each payment to
// MySQL exactly once: the order is marked paid, its quantity leaves stock and a ledger entry is
// written, in one transaction with txconsume's deduplication record. With -shipped-topic, the
// same transaction enqueues an order-shipped event in the outbox, and a relay in the service
// publishes it (cmd/shipping-service consumes it).
//
// Usage:
//
//	order-service [flags]
//
// Every flag has an environment variable, used when the flag is not given:
//
//	-mysql-dsn         TXCONSUME_MYSQL_DSN          go-sql-driver DSN (required)
//	-namesrv           TXCONSUME_ROCKETMQ_NAMESRV   name servers, host:port[;host:port] (required)
//	-topic             ORDER_SERVICE_TOPIC          default order-paid
//	-group             ORDER_SERVICE_GROUP          default order-service
//	-mode              ORDER_SERVICE_MODE           txconsume (default) or naive
//	-shipped-topic     ORDER_SERVICE_SHIPPED_TOPIC  emit order-shipped events there (default: none)
//	-outbox-retention  ORDER_SERVICE_OUTBOX_RETENTION  keep relayed events that long (default 0)
//	-goroutines        ORDER_SERVICE_GOROUTINES     default 20
//	-shutdown-timeout  ORDER_SERVICE_SHUTDOWN_TIMEOUT  default 30s
//	-consume-from      ORDER_SERVICE_CONSUME_FROM   where a new group starts: last (default) or first
//	-log-level         ORDER_SERVICE_LOG_LEVEL      debug, info (default), warn, error
//	-log-format        ORDER_SERVICE_LOG_FORMAT     text (default) or json
//	-metrics-addr      ORDER_SERVICE_METRICS_ADDR   serve /metrics and /readyz there, e.g. :9464 (default: off)
//
// The service applies its migrations at start, and shuts down gracefully on SIGTERM or SIGINT:
// it stops taking deliveries and lets the transactions in flight finish first, then stops its
// relay. At debug level it logs one "consumed" record per delivery and one "relayed" record per
// send of the relay.
package main

import (
	"flag"

	"github.com/txconsume/txconsume/examples/order-service/internal/cli"
	"github.com/txconsume/txconsume/examples/order-service/service"
)

func main() {
	cli.Main(cli.Command{
		Name: "order-service", EnvPrefix: "ORDER_SERVICE_",
		Defaults: service.Config{Topic: "order-paid", Group: "order-service"},
		Flags: func(fs *flag.FlagSet, cfg *service.Config, env func(name, def string) string) {
			fs.StringVar(&cfg.Mode, "mode", env("MODE", service.ModeTxconsume), "txconsume, or naive (the article's check, for comparison)")
			fs.StringVar(&cfg.ShippedTopic, "shipped-topic", env("SHIPPED_TOPIC", ""),
				"enqueue an order-shipped event per payment through the outbox and relay it to this topic")
			fs.DurationVar(&cfg.OutboxRetention, "outbox-retention", cli.EnvDuration(env("OUTBOX_RETENTION", ""), 0),
				"keep relayed events in the outbox table this long")
		},
	})
}
