package rmq

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/apache/rocketmq-client-go/v2/rlog"
)

// The RocketMQ client logs through one process-wide logger (package rlog) that writes every rebalance
// and every failed delivery to stderr at info level. Importing this package replaces it, once, in
// init, before any client goroutine can read it: rlog.SetLogger is an unsynchronised assignment, so
// replacing it later would race with running clients. What the replacement does is held in atomics
// and a registry of running Consumers, and can change at any time.
//
// Where a record goes: a record that names a consumer group (the client's "consumerGroup" field)
// goes to the logger of the running Consumer of that group (its WithLogger); any other record
// (name server and broker connections, which the Consumers of a process share) goes to the logger
// given to SetClientLogger, or, when none was given, to the logger of the longest-running Consumer,
// or to slog.Default() when no Consumer runs. So a process with one Consumer sees every client
// record in that Consumer's log, and two Consumers with different loggers each see their own
// group's records, the shared ones going to the first.

var clientLog struct {
	logger atomic.Pointer[slog.Logger] // set by SetClientLogger; nil: see above
	level  atomic.Int64                // slog.Level

	mu        sync.Mutex
	consumers []*Consumer // running, in start order
}

// registerClientLogger routes the client's records about c's group to c's logger.
func registerClientLogger(c *Consumer) {
	clientLog.mu.Lock()
	defer clientLog.mu.Unlock()
	clientLog.consumers = append(clientLog.consumers, c)
}

func unregisterClientLogger(c *Consumer) {
	clientLog.mu.Lock()
	defer clientLog.mu.Unlock()
	for i, x := range clientLog.consumers {
		if x == c {
			clientLog.consumers = append(clientLog.consumers[:i], clientLog.consumers[i+1:]...)
			return
		}
	}
}

// clientRecordLogger picks the logger of a client record that names group ("" for none).
func clientRecordLogger(group string) *slog.Logger {
	clientLog.mu.Lock()
	defer clientLog.mu.Unlock()
	if group != "" {
		for _, c := range clientLog.consumers {
			// The client prefixes the group with its namespace ("ns%group") when it has one.
			if g := c.cfg.group; group == g || strings.HasSuffix(group, "%"+g) {
				return c.log
			}
		}
	}
	if l := clientLog.logger.Load(); l != nil {
		return l
	}
	if len(clientLog.consumers) > 0 {
		return clientLog.consumers[0].log
	}
	return slog.Default()
}

func init() {
	clientLog.level.Store(int64(slog.LevelError))
	if lvl, ok := parseClientLevel(os.Getenv("ROCKETMQ_GO_LOG_LEVEL")); ok {
		clientLog.level.Store(int64(lvl))
	}
	rlog.SetLogger(clientLogger{})
}

// SetClientLogger sets the logger of the RocketMQ client's own records (process-wide, all
// clients) that name no consumer group of a running Consumer; records naming one go to that
// Consumer's logger. nil restores the default: the logger of the longest-running Consumer, or
// slog.Default() when none runs.
func SetClientLogger(logger *slog.Logger) {
	clientLog.logger.Store(logger)
}

// SetClientLogLevel sets the lowest level of the RocketMQ client's own records that are passed on
// (the client's Warning maps to slog.LevelWarn, Fatal to slog.LevelError, and the client's Fatal never
// exits the process here). Default: slog.LevelError, so a healthy consumer is quiet; the
// ROCKETMQ_GO_LOG_LEVEL variable (debug, info, warn, error) sets it at start-up, and so does
// rlog.SetLogLevel.
func SetClientLogLevel(level slog.Level) {
	clientLog.level.Store(int64(level))
}

func parseClientLevel(s string) (slog.Level, bool) {
	switch strings.ToLower(s) {
	case "debug":
		return slog.LevelDebug, true
	case "info":
		return slog.LevelInfo, true
	case "warn", "warning":
		return slog.LevelWarn, true
	case "error", "fatal":
		return slog.LevelError, true
	}
	return 0, false
}

// clientLogger implements rlog.Logger on top of slog.
type clientLogger struct{}

func (clientLogger) log(level slog.Level, msg string, fields map[string]interface{}) {
	if level < slog.Level(clientLog.level.Load()) {
		return
	}
	if msg == "" && len(fields) == 0 {
		return
	}
	group, _ := fields[rlog.LogKeyConsumerGroup].(string)
	logger := clientRecordLogger(group)
	ctx := context.Background()
	if !logger.Enabled(ctx, level) {
		return
	}
	keys := make([]string, 0, len(fields))
	for k := range fields {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	attrs := make([]slog.Attr, 0, len(keys)+1)
	attrs = append(attrs, slog.String("logger", "rocketmq-client"))
	for _, k := range keys {
		attrs = append(attrs, slog.Any(k, fields[k]))
	}
	logger.LogAttrs(ctx, level, msg, attrs...)
}

func (l clientLogger) Debug(msg string, fields map[string]interface{}) {
	l.log(slog.LevelDebug, msg, fields)
}
func (l clientLogger) Info(msg string, fields map[string]interface{}) {
	l.log(slog.LevelInfo, msg, fields)
}
func (l clientLogger) Warning(msg string, fields map[string]interface{}) {
	l.log(slog.LevelWarn, msg, fields)
}
func (l clientLogger) Error(msg string, fields map[string]interface{}) {
	l.log(slog.LevelError, msg, fields)
}

// Fatal logs at error level. The client's default logger exits the process on Fatal; a library
// must not.
func (l clientLogger) Fatal(msg string, fields map[string]interface{}) {
	l.log(slog.LevelError, msg, fields)
}

// Level is what rlog.SetLogLevel calls.
func (clientLogger) Level(level string) {
	if lvl, ok := parseClientLevel(level); ok {
		clientLog.level.Store(int64(lvl))
	}
}

var errClientLogPath = errors.New("rmq: the RocketMQ client logs through slog (see rmq.SetClientLogger); no output path")

// OutputPath is what rlog.SetOutputPath calls.
func (clientLogger) OutputPath(string) error { return errClientLogPath }
