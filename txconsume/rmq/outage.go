package rmq

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/apache/rocketmq-client-go/v2/primitive"

	"github.com/txconsume/txconsume/txconsume"
	"github.com/txconsume/txconsume/txconsume/internal/sqlerr"
)

// Riding out an outage of the database (or of the status mode's store).
//
// A delivery that fails goes back to the broker, which redelivers it after the retry delay and
// counts one more attempt; after MaxReconsumeTimes attempts the message is given up to the
// dead-letter topic. When the database is down, every delivery fails at once, so each message spends
// its attempts at the pace of the retry delay: with WithRetryDelayLevel(2) (5s), an outage of a
// minute and a half gives messages up that nothing was wrong with, and every attempt logs a warning
// and travels through the retry topic.
//
// So a delivery that failed only because the database could not be reached (sqlerr.IsUnavailable)
// is run again in place, with a backoff, for up to WithOutageRetry: the consumer's goroutines wait,
// the client stops handing out messages once they all wait, nothing spends an attempt, and
// consumption resumes within a backoff step of the database answering. An outage (a delivery that
// fails again at its first retry) is logged once when it begins, every 30s while it lasts, and once
// when it ends; a single broken connection that the first retry replaces is not logged.

// DefaultOutageRetry is the default of WithOutageRetry.
const DefaultOutageRetry = time.Minute

// Backoff of the retries in place: from the first to the last step, doubling.
const (
	outageFirstStep = 100 * time.Millisecond
	outageLastStep  = 2 * time.Second
)

// outageReminder is how often an outage that lasts is logged again.
const outageReminder = 30 * time.Second

// processThroughOutage runs a delivery, and again while it fails only because the database or
// store cannot be reached, for up to the configured time; it returns the last outcome.
func (l *listener) processThroughOutage(ctx context.Context, msgs []*primitive.MessageExt, ordered bool) *deliveryOutcome {
	d := l.process(ctx, msgs, ordered)
	if l.cfg.outageRetry <= 0 || !d.unavailable() {
		return d
	}
	// A connection that broke alone (killed, timed out) is replaced at the first retry: only a
	// delivery that fails again is waiting out an outage, and logged.
	waiting := false
	defer func() {
		if waiting {
			l.outage.end(ctx, l, d.err == nil)
		}
	}()
	start, step := time.Now(), outageFirstStep
	for d.unavailable() && time.Since(start) < l.cfg.outageRetry {
		t := time.NewTimer(step)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return d
		case <-l.cfg.drain:
			t.Stop()
			return d
		}
		step = min(2*step, outageLastStep)
		d = l.process(ctx, msgs, ordered)
		if !waiting && d.unavailable() {
			waiting = true
			l.outage.begin(ctx, l, d.err)
		}
	}
	return d
}

// unavailable reports whether the delivery failed, and every failure in it says the database or
// store could not be reached.
func (d *deliveryOutcome) unavailable() bool {
	if d.err == nil {
		return false
	}
	failures := false
	for _, f := range d.failed {
		if f == nil {
			continue
		}
		if !unavailable(f) {
			return false
		}
		failures = true
	}
	return failures || unavailable(d.err)
}

// unavailable reports an error that says the database or store could not be reached, or that a
// commit's outcome is unknown because the connection failed: running the delivery again settles it
// (a Duplicate if the commit happened).
func unavailable(err error) bool {
	return sqlerr.IsUnavailable(err) || errors.Is(err, txconsume.ErrCommitUnknown)
}

// outageLog logs an outage once for all the deliveries that wait through it.
type outageLog struct {
	mu      sync.Mutex
	waiting int       // deliveries retrying in place now
	since   time.Time // when the first of them began; zero when none waits
	logged  time.Time // when the outage was last logged
}

func (o *outageLog) begin(ctx context.Context, l *listener, err error) {
	o.mu.Lock()
	o.waiting++
	now := time.Now()
	first := o.since.IsZero()
	if first {
		o.since = now
	}
	remind := !first && now.Sub(o.logged) >= outageReminder
	if first || remind {
		o.logged = now
	}
	waiting, since := o.waiting, o.since
	o.mu.Unlock()
	switch {
	case first:
		l.cfg.logger.LogAttrs(ctx, slog.LevelWarn, "rmq: database unreachable; deliveries wait and are retried in place",
			slog.String("group", l.group(ctx)), slog.Duration("for_up_to", l.cfg.outageRetry), slog.Any("error", err))
	case remind:
		l.cfg.logger.LogAttrs(ctx, slog.LevelWarn, "rmq: database still unreachable",
			slog.String("group", l.group(ctx)), slog.Duration("for", now.Sub(since).Round(time.Second)),
			slog.Int("waiting", waiting), slog.Any("error", err))
	}
}

func (o *outageLog) end(ctx context.Context, l *listener, succeeded bool) {
	o.mu.Lock()
	o.waiting--
	var over time.Duration
	if succeeded && !o.since.IsZero() {
		over = time.Since(o.since)
		o.since = time.Time{} // the outage is over for every delivery that still waits
	} else if o.waiting == 0 {
		o.since = time.Time{}
	}
	o.mu.Unlock()
	if over > 0 {
		l.cfg.logger.LogAttrs(ctx, slog.LevelInfo, "rmq: database answers again; waiting deliveries resume",
			slog.String("group", l.group(ctx)), slog.Duration("unreachable_for", over.Round(time.Millisecond)))
	}
}

var errOutageRetryNegative = errors.New("rmq: outage retry must not be negative")
