package demo

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"time"

	_ "github.com/go-sql-driver/mysql" // the MySQL driver for database/sql
	"github.com/jmoiron/sqlx"
)

// consumerRun is one of the two consumers of a run, with its database.
type consumerRun struct {
	svc       *service
	db        *sqlx.DB
	group     string
	drainedAt time.Time // zero until drained
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

	lib, err := openConsumer(ctx, &cfg, pl, "order-service", cfg.MySQLDSN, cfg.Group, "txconsume")
	if err != nil {
		return nil, err
	}
	defer lib.close()
	var naive *consumerRun
	if cfg.NaiveDSN != "" {
		if naive, err = openConsumer(ctx, &cfg, pl, "naive", cfg.NaiveDSN, cfg.NaiveGroup, "naive"); err != nil {
			return nil, err
		}
		defer naive.close()
	}
	prog.event("seeded %d orders; starting the services (logs in %s)", len(pl.orders), cfg.LogDir)
	for _, c := range []*consumerRun{lib, naive} {
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

	// The killer SIGKILLs the service each time another 1/(Kills+1) of the orders is applied,
	// and starts it again at once.
	var (
		killsMu sync.Mutex
		kills   []Kill
		killErr = make(chan error, 1)
	)
	killsDone := make(chan struct{})
	go func() {
		defer close(killsDone)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for k := 1; k <= cfg.Kills; k++ {
			at := k * len(pl.orders) / (cfg.Kills + 1)
			for lib.svc.tally.snapshot().Applied < at {
				select {
				case <-runCtx.Done():
					return
				case <-tick.C:
				}
			}
			applied := lib.svc.tally.snapshot().Applied
			if err := lib.svc.kill(); err != nil {
				killErr <- err
				return
			}
			prog.event("SIGKILL order-service after %d applied; restarting it", applied)
			down := time.Now()
			if err := lib.svc.start(runCtx); err != nil {
				killErr <- err
				return
			}
			kill := Kill{AfterApplied: applied, Downtime: time.Since(down)}
			killsMu.Lock()
			kills = append(kills, kill)
			killsMu.Unlock()
			prog.event("order-service consuming again after %s", kill.Downtime.Round(time.Millisecond))
		}
	}()

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
		case err := <-killErr:
			return nil, err
		case <-deadline:
			timedOut = true
			break wait
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-tick.C:
		}
		prog.status(statusLine(pub.sent.Load(), pl.messages, lib, naive), false)
		if !published || !closed(killsDone) {
			continue
		}
		all := true
		for _, c := range []*consumerRun{lib, naive} {
			if c == nil || !c.drainedAt.IsZero() {
				continue
			}
			ok, err := c.drained(ctx, pl, cfg.Quiet)
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
	prog.status(statusLine(pub.sent.Load(), pl.messages, lib, naive), true)
	prog.done()
	cancel()
	<-killsDone
	if timedOut {
		prog.event("timed out after %s waiting for the consumers to drain", cfg.Timeout)
	}

	rep := &Report{
		Orders: len(pl.orders), Messages: pl.messages, SameIDResends: pl.sameIDDups, NewIDResends: pl.newIDDups,
		Published: int(pub.sent.Load()), PublishTime: pubElapsed, LogDir: cfg.LogDir,
	}
	killsMu.Lock()
	rep.Kills = kills
	killsMu.Unlock()
	if rep.Lib, err = lib.outcome(ctx, pl, true); err != nil {
		return nil, err
	}
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

func openConsumer(ctx context.Context, cfg *Config, pl *plan, name, dsn, group, mode string) (*consumerRun, error) {
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
	if err := pl.seed(ctx, db); err != nil {
		_ = db.Close()
		return nil, err
	}
	svc, err := newService(name, cfg.ServiceBin, filepath.Join(cfg.LogDir, name+".log"), []string{
		"-mysql-dsn", dsn, "-namesrv", cfg.NameServer, "-topic", cfg.Topic, "-group", group,
		"-mode", mode, "-log-level", "debug", "-log-format", "json",
		// The topic is new and publishing starts as soon as the service logs "consuming",
		// maybe before its group has been assigned queues: start from the first offset so
		// nothing published in between is skipped.
		"-consume-from", "first",
	})
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

// drained reports whether the consumer has consumed everything that was sent: every message was
// reported consumed at least as many times as it was sent, the database shows every order paid,
// and no delivery arrived for quiet (a message still in flight after a restart, or waiting for a
// retry, would arrive within that time).
func (c *consumerRun) drained(ctx context.Context, pl *plan, quiet time.Duration) (bool, error) {
	if !c.svc.running() || c.svc.tally.missing(pl.copies) > 0 {
		return false, nil
	}
	if last := c.svc.tally.snapshot().Last; time.Since(last) < quiet {
		return false, nil
	}
	paid, err := paidOrders(ctx, c.db)
	if err != nil {
		return false, fmt.Errorf("demo: poll %s database: %w", c.svc.name, err)
	}
	return paid == len(pl.orders), nil
}

// outcome stops the service gracefully and counts its effects.
func (c *consumerRun) outcome(ctx context.Context, pl *plan, dedup bool) (Outcome, error) {
	o := Outcome{Name: c.svc.name, Drained: !c.drainedAt.IsZero(), DedupRows: -1}
	o.ShutdownTime, o.ShutdownErr = c.svc.stop(time.Minute)
	o.Counts = c.svc.tally.snapshot()
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

func statusLine(sent int64, total int, lib, naive *consumerRun) string {
	s := fmt.Sprintf("sent %d/%d", sent, total)
	for _, c := range []*consumerRun{lib, naive} {
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
