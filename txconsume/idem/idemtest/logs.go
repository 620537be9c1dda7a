package idemtest

import (
	"context"
	"log/slog"
	"sync"
)

// logSink is a slog.Handler that keeps records, so the suite can check that a failure the
// Processor does not return (a record it could not mark) is at least logged, never silent.
type logSink struct {
	mu      sync.Mutex
	records []slog.Record
}

func (s *logSink) Enabled(context.Context, slog.Level) bool { return true }

func (s *logSink) Handle(_ context.Context, r slog.Record) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.records = append(s.records, r.Clone())
	return nil
}

func (s *logSink) WithAttrs([]slog.Attr) slog.Handler { return s }
func (s *logSink) WithGroup(string) slog.Handler      { return s }

// count returns how many records at level or above were logged.
func (s *logSink) count(level slog.Level) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, r := range s.records {
		if r.Level >= level {
			n++
		}
	}
	return n
}

// messagesAt returns the messages of the records logged at level or above.
func (s *logSink) messagesAt(level slog.Level) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, r := range s.records {
		if r.Level >= level {
			out = append(out, r.Message)
		}
	}
	return out
}
