package demo

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	_ "github.com/go-sql-driver/mysql" // the MySQL driver for database/sql
	"github.com/jmoiron/sqlx"
)

// consumerRun is one of the consumers of a run, with its database.
type consumerRun struct {
	svc       *service
	db        *sqlx.DB
	group     string
	drainedAt time.Time // zero until drained
	// settled reports whether the database shows every effect the run must have, and the
	// copies of each message (by UNIQ_KEY) that the service must have reported consumed.
	settled func(ctx context.Context) (copies map[string]int, ok bool, err error)
}

// Run executes the demo described by cfg and returns its report. An error means the run could not
// be carried out (services unreachable, a publish failed); a run that was carried out returns a
// report whose Failures list every mismatch found in the database.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	pl := newPlan(&cfg)
	prog := newProgress(cfg.Progress, cfg.Live)
	defer prog.done()

	lib, err := openConsumer(ctx, &cfg, "order-service", cfg.ServiceBin, cfg.MySQLDSN, cfg.Group, cfg.Topic, pl.seed,
		"-mode", "txconsume", "-shipped-topic", cfg.ShippedTopic,
		// Relayed events stay in the outbox table, marked sent, so that they can be counted.
		"-outbox-retention", "1h")
	if err != nil {
		return nil, err
	}
	defer lib.close()
	lib.settled = pl.ordersPaid(lib.db)
	lib.svc.relays = true
	var naive *consumerRun
	if cfg.NaiveDSN != "" {
		if naive, err = openConsumer(ctx, &cfg, "naive", cfg.ServiceBin, cfg.NaiveDSN, cfg.NaiveGroup, cfg.Topic, pl.seed,
			"-mode", "naive"); err != nil {
			return nil, err
		}
		defer naive.close()
		naive.settled = pl.ordersPaid(naive.db)
	}
	ship, err := openConsumer(ctx, &cfg, "shipping-service", cfg.ShippingBin, cfg.ShippingDSN, cfg.ShippingGroup, cfg.ShippedTopic, nil)
	if err != nil {
		return nil, err
	}
	defer ship.close()
	ship.settled = pl.ordersShipped(lib.db, ship.db)
	consumers := []*consumerRun{lib, naive, ship}
	prog.event("seeded %d orders; starting the services (logs in %s)", len(pl.orders), cfg.LogDir)
	for _, c := range consumers {
		if c == nil {
			continue
		}
		if err := c.svc.start(ctx); err != nil {
			return nil, err
		}
	}

	pub, err := newPublisher(cfg.NameServer)
	if err != nil {
		return nil, err
	}
	defer pub.close()

	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	start := time.Now()
	pubDone := make(chan error, 1)
	go func() { pubDone <- pub.publish(runCtx, cfg.Topic, pl) }()

	// The killers SIGKILL the order service (and its relay with it) and the shipping service
	// midway, and start them again at once.
	libKiller := startKiller(runCtx, lib.svc, cfg.Kills, len(pl.orders), prog)
	shipKiller := startKiller(runCtx, ship.svc, cfg.ShippingKills, len(pl.orders), prog)

	var (
		published  bool
		pubElapsed time.Duration
		deadline   = time.After(cfg.Timeout)
		tick       = time.NewTicker(250 * time.Millisecond)
		timedOut   bool
	)
	defer tick.Stop()
wait:
	for {
		select {
		case err := <-pubDone:
			if err != nil {
				return nil, err
			}
			published, pubElapsed = true, time.Since(start)
			prog.event("published %d messages in %s", pub.sent.Load(), pubElapsed.Round(time.Millisecond))
		case err := <-libKiller.err:
			return nil, err
		case err := <-shipKiller.err:
			return nil, err
		case <-deadline:
			timedOut = true
			break wait
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-tick.C:
		}
		prog.status(statusLine(pub.sent.Load(), pl.messages, consumers), false)
		if !published || !closed(libKiller.done) || !closed(shipKiller.done) {
			continue
		}
		all := true
		for _, c := range consumers {
			if c == nil || !c.drainedAt.IsZero() {
				continue
			}
			ok, err := c.drained(ctx, cfg.Quiet)
			if err != nil {
				return nil, err
			}
			if ok {
				c.drainedAt = time.Now()
				prog.event("%s drained", c.svc.name)
			} else {
				all = false
			}
		}
		if all {
			break
		}
	}
	prog.status(statusLine(pub.sent.Load(), pl.messages, consumers), true)
	prog.done()
	cancel()
	<-libKiller.done
	<-shipKiller.done
	if timedOut {
		prog.event("timed out after %s waiting for the consumers to drain", cfg.Timeout)
	}

	rep := &Report{
		Orders: len(pl.orders), Messages: pl.messages, SameIDResends: pl.sameIDDups, NewIDResends: pl.newIDDups,
		Published: int(pub.sent.Load()), PublishTime: pubElapsed, LogDir: cfg.LogDir,
	}
	rep.Kills = libKiller.list()
	// The shipping service stops first: its database and the order service's outbox are read
	// once both are stopped.
	shipOut := ship.stop()
	if rep.Lib, err = lib.outcome(ctx, pl, true); err != nil {
		return nil, err
	}
	if rep.Chain, err = chainOutcome(ctx, lib, ship, shipOut, pl); err != nil {
		return nil, err
	}
	rep.Chain.KillsWanted, rep.Chain.Kills = cfg.ShippingKills, shipKiller.list()
	if naive != nil {
		o, err := naive.outcome(ctx, pl, false)
		if err != nil {
			return nil, err
		}
		rep.Naive = &o
	}
	rep.KillsWanted = cfg.Kills
	return rep, nil
}

// openConsumer opens the database of a service, seeds it (when seed is not nil) and prepares
// the service's process, which logs every delivery; args are the service's own flags.
func openConsumer(ctx context.Context, cfg *Config, name, bin, dsn, group, topic string,
	seed func(context.Context, *sqlx.DB) error, args ...string) (*consumerRun, error) {
	db, err := sqlx.Open("mysql", dsn)
	if err != nil {
		return nil, fmt.Errorf("demo: open %s database: %w", name, err)
	}
	pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := db.PingContext(pctx); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("demo: %s database: %w", name, err)
	}
	if seed != nil {
		if err := seed(ctx, db); err != nil {
			_ = db.Close()
			return nil, err
		}
	}
	svc, err := newService(name, bin, filepath.Join(cfg.LogDir, name+".log"), append([]string{
		"-mysql-dsn", dsn, "-namesrv", cfg.NameServer, "-topic", topic, "-group", group,
		"-log-level", "debug", "-log-format", "json",
		// The topic is new and publishing starts as soon as the service logs "consuming",
		// maybe before its group has been assigned queues: start from the first offset so
		// nothing published in between is skipped.
		"-consume-from", "first",
	}, args...))
	if err != nil {
		_ = db.Close()
		return nil, err
	}
	return &consumerRun{svc: svc, db: db, group: group}, nil
}

func (c *consumerRun) close() {
	c.svc.close()
	_ = c.db.Close()
}

// drained reports whether the consumer has consumed everything: the database shows every
// effect, every message was reported consumed at least as many times as it was sent, and no
// delivery arrived for quiet (a message still in flight after a restart, or waiting for a
// retry, would arrive within that time).
func (c *consumerRun) drained(ctx context.Context, quiet time.Duration) (bool, error) {
	if !c.svc.running() {
		return false, nil
	}
	if last := c.svc.tally.snapshot().Last; time.Since(last) < quiet {
		return false, nil
	}
	copies, ok, err := c.settled(ctx)
	if err != nil {
		return false, fmt.Errorf("demo: poll %s database: %w", c.svc.name, err)
	}
	return ok && c.svc.tally.missing(copies) == 0, nil
}

// stop stops the service gracefully and returns what it reported.
func (c *consumerRun) stop() Outcome {
	o := Outcome{Name: c.svc.name, Drained: !c.drainedAt.IsZero(), DedupRows: -1}
	o.ShutdownTime, o.ShutdownErr = c.svc.stop(time.Minute)
	o.Counts = c.svc.tally.snapshot()
	return o
}

// outcome stops the service gracefully and counts its effects.
func (c *consumerRun) outcome(ctx context.Context, pl *plan, dedup bool) (Outcome, error) {
	o := c.stop()
	o.Missing = c.svc.tally.missing(pl.copies)
	var err error
	if o.Effects, err = verify(ctx, c.db, pl); err != nil {
		return o, err
	}
	if dedup {
		if o.DedupRows, err = dedupRows(ctx, c.db, c.group); err != nil {
			return o, fmt.Errorf("demo: count dedup rows: %w", err)
		}
	}
	return o, nil
}

func statusLine(sent int64, total int, consumers []*consumerRun) string {
	s := fmt.Sprintf("sent %d/%d", sent, total)
	for _, c := range consumers {
		if c == nil {
			continue
		}
		n := c.svc.tally.snapshot()
		state := ""
		if !c.svc.running() {
			state = " (down)"
		}
		s += fmt.Sprintf(" | %s%s: seen %d, applied %d, dup %d", c.svc.name, state, n.Seen(), n.Applied, n.Duplicate)
	}
	return s
}

func closed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}
