// Command order-service consumes order-paid events from RocketMQ and applies each payment to
// MySQL exactly once: the order is marked paid, its quantity leaves stock and a ledger entry is
// written, in one transaction with txconsume's deduplication record.
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
//	-goroutines        ORDER_SERVICE_GOROUTINES     default 20
//	-shutdown-timeout  ORDER_SERVICE_SHUTDOWN_TIMEOUT  default 30s
//	-consume-from      ORDER_SERVICE_CONSUME_FROM   where a new group starts: last (default) or first
//	-log-level         ORDER_SERVICE_LOG_LEVEL      debug, info (default), warn, error
//	-log-format        ORDER_SERVICE_LOG_FORMAT     text (default) or json
//	-metrics-addr      ORDER_SERVICE_METRICS_ADDR   serve /metrics and /readyz there, e.g. :9464 (default: off)
//
// The service applies its migrations at start, and shuts down gracefully on SIGTERM or SIGINT:
// it stops taking deliveries and lets the transactions in flight finish first. At debug level it
// logs one "consumed" record per delivery.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/txconsume/txconsume/examples/order-service/service"
	"github.com/txconsume/txconsume/txconsume/rmq"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "order-service:", err)
		os.Exit(1)
	}
}

func run() error {
	fs := flag.NewFlagSet("order-service", flag.ContinueOnError)
	var (
		dsn        = fs.String("mysql-dsn", os.Getenv("TXCONSUME_MYSQL_DSN"), "MySQL DSN (env TXCONSUME_MYSQL_DSN)")
		namesrv    = fs.String("namesrv", os.Getenv("TXCONSUME_ROCKETMQ_NAMESRV"), "RocketMQ name servers (env TXCONSUME_ROCKETMQ_NAMESRV)")
		topic      = fs.String("topic", envOr("ORDER_SERVICE_TOPIC", "order-paid"), "topic of order-paid events")
		group      = fs.String("group", envOr("ORDER_SERVICE_GROUP", "order-service"), "consumer group")
		mode       = fs.String("mode", envOr("ORDER_SERVICE_MODE", service.ModeTxconsume), "txconsume, or naive (the article's check, for comparison)")
		goroutines = fs.Int("goroutines", envInt("ORDER_SERVICE_GOROUTINES", 20), "deliveries processed at once")
		shutdown   = fs.Duration("shutdown-timeout", envDuration("ORDER_SERVICE_SHUTDOWN_TIMEOUT", 30*time.Second), "wait for in-flight transactions on shutdown")
		from       = fs.String("consume-from", envOr("ORDER_SERVICE_CONSUME_FROM", "last"), "where a group without a stored offset starts: last or first")
		level      = fs.String("log-level", envOr("ORDER_SERVICE_LOG_LEVEL", "info"), "debug, info, warn or error")
		format     = fs.String("log-format", envOr("ORDER_SERVICE_LOG_FORMAT", "text"), "text or json")
		metrics    = fs.String("metrics-addr", os.Getenv("ORDER_SERVICE_METRICS_ADDR"), "serve /metrics (Prometheus) and /readyz at this address, e.g. :9464")
	)
	if err := fs.Parse(os.Args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if *from != "last" && *from != "first" {
		return fmt.Errorf("-consume-from %q is neither last nor first", *from)
	}
	log, err := newLogger(*level, *format)
	if err != nil {
		return err
	}
	// The RocketMQ client's own records (rebalances, connection trouble) go to the same log.
	rmq.SetClientLogger(log.With("component", "rocketmq-client"))

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	return service.Run(ctx, service.Config{
		MySQLDSN:        *dsn,
		NameServers:     service.SplitAddrs(*namesrv),
		Topic:           *topic,
		Group:           *group,
		Mode:            *mode,
		Goroutines:      *goroutines,
		ShutdownTimeout: *shutdown,
		FromFirstOffset: *from == "first",
		MetricsAddr:     *metrics,
	}, log)
}

func newLogger(level, format string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("-log-level: %w", err)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(os.Stderr, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(os.Stderr, opts)), nil
	}
	return nil, fmt.Errorf("-log-format %q is neither text nor json", format)
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func envInt(name string, def int) int {
	if n, err := strconv.Atoi(os.Getenv(name)); err == nil {
		return n
	}
	return def
}

func envDuration(name string, def time.Duration) time.Duration {
	if d, err := time.ParseDuration(os.Getenv(name)); err == nil {
		return d
	}
	return def
}
