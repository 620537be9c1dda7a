// Package cli is the command line the example's services share: flags that fall back to
// environment variables, the slog logger, and the signals that stop a service gracefully.
package cli

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

// Command describes one service's command line.
type Command struct {
	// Name is the command's name; EnvPrefix starts its environment variables (ORDER_SERVICE_).
	Name, EnvPrefix string
	// Defaults are the service's configuration before flags and environment: its Mode, and
	// the Topic and Group the flags default to.
	Defaults service.Config
	// Flags registers the flags of this service alone, which write into cfg. Optional.
	Flags func(fs *flag.FlagSet, cfg *service.Config, env func(name, def string) string)
}

// Main runs the service of c with the process's arguments and exits 1 on error.
func Main(c Command) {
	if err := Run(c, os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, c.Name+":", err)
		os.Exit(1)
	}
}

// Run parses args and runs the service until SIGTERM or SIGINT, after which it shuts down
// gracefully.
func Run(c Command, args []string) error {
	cfg := c.Defaults
	env := func(name, def string) string {
		if v := os.Getenv(c.EnvPrefix + name); v != "" {
			return v
		}
		return def
	}
	fs := flag.NewFlagSet(c.Name, flag.ContinueOnError)
	fs.StringVar(&cfg.MySQLDSN, "mysql-dsn", os.Getenv("TXCONSUME_MYSQL_DSN"), "MySQL DSN (env TXCONSUME_MYSQL_DSN)")
	namesrv := fs.String("namesrv", os.Getenv("TXCONSUME_ROCKETMQ_NAMESRV"), "RocketMQ name servers (env TXCONSUME_ROCKETMQ_NAMESRV)")
	fs.StringVar(&cfg.Topic, "topic", env("TOPIC", cfg.Topic), "topic consumed")
	fs.StringVar(&cfg.Group, "group", env("GROUP", cfg.Group), "consumer group")
	fs.IntVar(&cfg.Goroutines, "goroutines", envInt(env("GOROUTINES", ""), 20), "deliveries processed at once")
	fs.DurationVar(&cfg.ShutdownTimeout, "shutdown-timeout", EnvDuration(env("SHUTDOWN_TIMEOUT", ""), 30*time.Second),
		"wait for in-flight transactions on shutdown")
	from := fs.String("consume-from", env("CONSUME_FROM", "last"), "where a group without a stored offset starts: last or first")
	level := fs.String("log-level", env("LOG_LEVEL", "info"), "debug, info, warn or error")
	format := fs.String("log-format", env("LOG_FORMAT", "text"), "text or json")
	fs.StringVar(&cfg.MetricsAddr, "metrics-addr", env("METRICS_ADDR", ""), "serve /metrics (Prometheus) and /readyz at this address, e.g. :9464")
	if c.Flags != nil {
		c.Flags(fs, &cfg, env)
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if *from != "last" && *from != "first" {
		return fmt.Errorf("-consume-from %q is neither last nor first", *from)
	}
	cfg.NameServers = service.SplitAddrs(*namesrv)
	cfg.FromFirstOffset = *from == "first"
	log, err := newLogger(*level, *format)
	if err != nil {
		return err
	}
	// The RocketMQ client's own records (rebalances, connection trouble) go to the same log.
	rmq.SetClientLogger(log.With("component", "rocketmq-client"))

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	return service.Run(ctx, cfg, log)
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

func envInt(v string, def int) int {
	if n, err := strconv.Atoi(v); err == nil {
		return n
	}
	return def
}

// EnvDuration parses v (an environment variable's value) as a duration, def when it is empty
// or not one.
func EnvDuration(v string, def time.Duration) time.Duration {
	if d, err := time.ParseDuration(v); err == nil {
		return d
	}
	return def
}
