package service

import (
	"context"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/txconsume/txconsume/txconsume"
	"github.com/txconsume/txconsume/txconsume/outbox"
)

// Stats counts the results of deliveries and logs one "consumed" record (Debug) per delivery.
// The demo reads those records to count deliveries and suppressed duplicates.
type Stats struct {
	log                                   *slog.Logger
	libLog                                *slog.Logger // for the processor, whose lines name the group; nil: log
	applied, duplicate, discarded, failed atomic.Int64
}

// NewStats returns counters that log to log.
func NewStats(log *slog.Logger) *Stats { return &Stats{log: log} }

// Result names used in "consumed" records.
const (
	ResultApplied   = "applied"
	ResultDuplicate = "duplicate"
	ResultDiscarded = "discarded"
	ResultError     = "error"
)

// OnResult is a txconsume.Hooks.OnResult: it runs after the commit or rollback that decided msg.
func (s *Stats) OnResult(ctx context.Context, msg *txconsume.Message, r txconsume.Result, err error, elapsed time.Duration) {
	name := ResultError
	switch r {
	case txconsume.Applied:
		name = ResultApplied
	case txconsume.Duplicate:
		name = ResultDuplicate
	case txconsume.Discarded:
		name = ResultDiscarded
	}
	s.Record(ctx, name, msg, elapsed, err)
}

// Record counts one delivery's result and logs it.
func (s *Stats) Record(ctx context.Context, result string, msg *txconsume.Message, elapsed time.Duration, err error) {
	switch result {
	case ResultApplied:
		s.applied.Add(1)
	case ResultDuplicate:
		s.duplicate.Add(1)
	case ResultDiscarded:
		s.discarded.Add(1)
	default:
		s.failed.Add(1)
	}
	if !s.log.Enabled(ctx, slog.LevelDebug) {
		return
	}
	key := ""
	if len(msg.Keys) > 0 {
		key = msg.Keys[0]
	}
	attrs := []slog.Attr{
		slog.String("result", result), slog.String("key", key), slog.String("msg_id", msg.ID),
		slog.Int("reconsume", int(msg.ReconsumeTimes)), slog.Duration("elapsed", elapsed),
	}
	if err != nil {
		attrs = append(attrs, slog.String("err", err.Error()))
	}
	s.log.LogAttrs(ctx, slog.LevelDebug, "consumed", attrs...)
}

// OnSend is an outbox.Hooks.OnSend: at debug level it logs one "relayed" record per send of the
// outbox relay that the broker stored (messages: how many, copies sent again after a crash
// included). The demo reads those records.
func (s *Stats) OnSend(ctx context.Context, send outbox.Send) {
	if send.Err != nil || !s.log.Enabled(ctx, slog.LevelDebug) {
		return // the relay logs failed sends itself
	}
	s.log.LogAttrs(ctx, slog.LevelDebug, "relayed", slog.String("topic", send.Topic),
		slog.Int("messages", len(send.IDs)), slog.Duration("elapsed", send.Duration))
}

// LogTotals logs the counters at Info.
func (s *Stats) LogTotals(msg string) {
	s.log.Info(msg, "applied", s.applied.Load(), "duplicate", s.duplicate.Load(),
		"discarded", s.discarded.Load(), "failed", s.failed.Load())
}

// logEvery logs the counters every interval until ctx ends.
func (s *Stats) logEvery(ctx context.Context, interval time.Duration) {
	if interval <= 0 {
		return
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.LogTotals("stats")
		}
	}
}

// processorLog is the logger for the processor.
func (s *Stats) processorLog() *slog.Logger {
	if s.libLog != nil {
		return s.libLog
	}
	return s.log
}
