package service

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/apache/rocketmq-client-go/v2/consumer"
	_ "github.com/go-sql-driver/mysql" // the MySQL driver for database/sql
	"github.com/jmoiron/sqlx"

	"github.com/txconsume/txconsume/examples/order-service/order"
	"github.com/txconsume/txconsume/examples/order-service/shipping"
	"github.com/txconsume/txconsume/migrations"
	"github.com/txconsume/txconsume/txconsume"
	"github.com/txconsume/txconsume/txconsume/rmq"
)

// Run starts the service and blocks until ctx ends, then shuts down gracefully: intake stops and
// the transactions in flight commit or roll back (within cfg.ShutdownTimeout) before Run returns.
// It logs "consuming" once deliveries can arrive.
func Run(ctx context.Context, cfg Config, log *slog.Logger) error {
	if err := cfg.setDefaults(); err != nil {
		return err
	}
	// The library's lines name the group themselves; the service's own lines add it.
	libLog := log.With("mode", cfg.Mode)
	log = libLog.With("group", cfg.Group)
	// txconsume.Open's pool refuses what a handler must not do (go on after a deadlock, commit
	// the Processor's transaction) at no cost; a plain pool would cost three statements more per
	// delivery for the same protection.
	db, err := txconsume.Open(cfg.MySQLDSN)
	if err != nil {
		return fmt.Errorf("service: open mysql: %w", err)
	}
	defer db.Close()
	// Every delivery in flight holds one connection for its transaction. The pool must be larger
	// than that: the processor prepares its claim statement on the pool while a transaction is
	// open, and a pool exhausted by transactions would leave them all waiting for it.
	db.SetMaxOpenConns(cfg.Goroutines + 4)
	db.SetMaxIdleConns(cfg.Goroutines + 4)
	db.SetConnMaxLifetime(5 * time.Minute)

	// Both sets of migrations take a MySQL named lock, so every instance may run them at start.
	migrateCtx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	if cfg.Mode != ModeNaive {
		if err := migrations.Up(migrateCtx, db.DB); err != nil {
			return err
		}
	}
	migrate := order.Migrate
	if cfg.Mode == ModeShipping {
		migrate = shipping.Migrate
	}
	if err := migrate(migrateCtx, db.DB); err != nil {
		return err
	}
	cancel()

	stats := NewStats(log)
	stats.libLog = libLog
	var tel *telemetry
	if cfg.MetricsAddr != "" {
		if tel, err = newTelemetry(); err != nil {
			return err
		}
	}
	var c intake
	if cfg.Mode == ModeNaive {
		c, err = newNaiveConsumer(db, cfg, stats)
	} else {
		c, err = newTxconsumeConsumer(db, cfg, stats, libLog, tel.hooks()...)
	}
	if err != nil {
		return err
	}
	// The relay starts before the consumer (which enqueues) and stops after it, so that it is
	// there for the last transactions' events; what it has not sent when it stops stays in the
	// table for the next start.
	relayFailed := make(<-chan error) // never ready without a relay
	if cfg.ShippedTopic != "" {
		r, err := startRelay(ctx, db, cfg, stats, libLog)
		if err != nil {
			return err
		}
		defer r.stop()
		relayFailed = r.failed
	}
	if err := c.Start(); err != nil {
		return fmt.Errorf("service: start consumer: %w", err)
	}
	log.Info("consuming", "topic", cfg.Topic)
	if tel != nil {
		ready := func(context.Context) error { return nil }
		if checked, ok := c.(interface{ Check(context.Context) error }); ok {
			ready = checked.Check
		}
		if err := tel.serve(cfg.MetricsAddr, ready, log); err != nil {
			_ = c.Shutdown(context.WithoutCancel(ctx))
			return err
		}
	}

	statsCtx, stopStats := context.WithCancel(ctx)
	defer stopStats()
	var wg sync.WaitGroup
	wg.Go(func() { stats.logEvery(statsCtx, cfg.StatsInterval) })
	var relayErr error
	select {
	case <-ctx.Done():
	case relayErr = <-relayFailed:
		log.Error("the outbox relay stopped; shutting down", "error", relayErr)
	}
	stopStats()
	wg.Wait()

	log.Info("shutting down", "timeout", cfg.ShutdownTimeout)
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.ShutdownTimeout)
	defer cancel()
	err = c.Shutdown(sctx)
	stats.LogTotals("stopped")
	if tel != nil {
		// After the consumer: the last deliveries' metrics are still served until here.
		err = errors.Join(err, tel.close(sctx))
	}
	if err != nil {
		return fmt.Errorf("service: shutdown: %w", err)
	}
	if relayErr != nil {
		return fmt.Errorf("service: outbox relay: %w", relayErr)
	}
	return nil
}

// intake is what Run starts and stops: an *rmq.Consumer, or the naive consumer.
type intake interface {
	Start() error
	Shutdown(ctx context.Context) error
}

func newTxconsumeConsumer(db *sqlx.DB, cfg Config, stats *Stats, log *slog.Logger, hooks ...txconsume.Hooks) (*rmq.Consumer, error) {
	var p *txconsume.Processor
	var err error
	tag := order.TagPaid
	if cfg.Mode == ModeShipping {
		p, err = NewShippingProcessor(db, cfg.Group, stats, hooks...)
		tag = order.TagShipped
	} else {
		p, err = NewProcessor(db, cfg.Group, cfg.ShippedTopic, stats, hooks...)
	}
	if err != nil {
		return nil, err
	}
	from := consumer.ConsumeFromLastOffset
	if cfg.FromFirstOffset {
		from = consumer.ConsumeFromFirstOffset
	}
	return rmq.NewConsumer(p, // the group is the processor's
		rmq.WithNameServers(cfg.NameServers...),
		rmq.WithConsumeFromWhere(from),
		rmq.WithSubscription(cfg.Topic, tag),
		rmq.WithGoroutines(cfg.Goroutines),
		// A failed delivery (lost connection, lock wait timeout) comes back after 1s rather
		// than the broker's 10s.
		rmq.WithRetryDelayLevel(1),
		rmq.WithLogger(log))
}
