package rmq

import (
	"log/slog"
	"time"

	"github.com/apache/rocketmq-client-go/v2/primitive"
)

// A delivery whose handler does not return holds one of the Consumer's goroutines, and when every
// goroutine is held the consumer stops without a word: a database that stopped answering without
// closing its connections (a network partition, a server frozen) leaves queries waiting for as long
// as the TCP stack keeps retransmitting, a quarter of an hour by default, unless the DSN sets
// readTimeout and writeTimeout. The Consumer watches its deliveries and logs the ones in flight for
// longer than WithStallWarning.

// DefaultStallWarning is the default of WithStallWarning.
const DefaultStallWarning = time.Minute

// flight is one delivery in progress.
type flight struct {
	start  time.Time
	msgID  string // the first message's id
	msgs   int
	warned time.Time // when it was last logged as stalled
}

// track records a delivery that enters the Processor; untrack forgets it.
func (c *Consumer) track(msgs []*primitive.MessageExt) *flight {
	f := &flight{start: time.Now(), msgs: len(msgs)}
	if len(msgs) > 0 {
		f.msgID = FromMessageExt(msgs[0]).ID
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.flights == nil {
		c.flights = map[*flight]struct{}{}
	}
	c.flights[f] = struct{}{}
	return f
}

func (c *Consumer) untrack(f *flight) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.flights, f)
}

// watchStalls logs stalled deliveries until stop is closed.
func (c *Consumer) watchStalls(stop <-chan struct{}) {
	every := max(c.cfg.stallAfter/4, 10*time.Millisecond)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case now := <-t.C:
			c.reportStalls(now)
		}
	}
}

// reportStalls logs each delivery in flight for stallAfter or more, once per stallAfter.
func (c *Consumer) reportStalls(now time.Time) {
	type stalled struct {
		msgID string
		msgs  int
		age   time.Duration
	}
	var report []stalled
	c.mu.Lock()
	total := 0
	for f := range c.flights {
		if now.Sub(f.start) < c.cfg.stallAfter {
			continue
		}
		total++
		if f.warned.IsZero() || now.Sub(f.warned) >= c.cfg.stallAfter {
			f.warned = now
			report = append(report, stalled{f.msgID, f.msgs, now.Sub(f.start)})
		}
	}
	inflight := c.inflight
	c.mu.Unlock()
	for _, s := range report {
		c.log.Warn("rmq: delivery stalled: its handler has not returned (a database or service that does not answer?)",
			slog.String("group", c.cfg.group), slog.String("msg_id", s.msgID), slog.Int("messages", s.msgs),
			slog.Duration("in_flight_for", s.age.Round(time.Second)), slog.Int("stalled", total),
			slog.Int("in_flight", inflight))
	}
}
