package chaos

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/apache/rocketmq-client-go/v2/consumer"
	"github.com/jmoiron/sqlx"
	"github.com/redis/go-redis/v9"

	"github.com/txconsume/txconsume/txconsume"
	"github.com/txconsume/txconsume/txconsume/idem"
	"github.com/txconsume/txconsume/txconsume/rmq"
)

// The consumers of a scenario are processes of their own, as services are: the test binary started
// again with TXCONSUME_CHAOS_WORKER holding a workerSpec. That also keeps the RocketMQ client's own
// data races (see testenv.RaceReports) out of the test process. A worker reports on stdout, one line
// per event:
//
//	ready                          consuming
//	R <outcome> <key> <queue>      a delivery's result, from the Processor's OnResult hook
//	                               (applied, duplicate, discarded, failed)
//	D <key>                        a message given up to the dead-letter topic (WithOnDeadLetter)
//	L <level> <message>            a log record at warning level or above, and the consumer's
//	                               own records about brokers
//	E shutdown <error>             Shutdown returned
//
// It shuts down gracefully on "shutdown" on stdin and on SIGTERM, as a service does on a deploy.

const workerEnv = "TXCONSUME_CHAOS_WORKER"

// Processing modes of a worker.
const (
	modeTx        = "tx"         // txconsume.Processor: effects and dedup in one transaction
	modeIdemMySQL = "idem-mysql" // status mode, MySQL store
	modeIdemRedis = "idem-redis" // status mode, Redis store
)

type workerSpec struct {
	Mode            string
	DSN             string // the ledger's database (modeTx: with the dedup table)
	StoreDSN        string // modeIdemMySQL: the store's database
	RedisAddr       string // modeIdemRedis
	RedisPrefix     string
	NameServer      string
	Topic, Group    string
	Instance        string
	Goroutines      int
	RetryDelayLevel int
	MaxReconsume    int32
	OutageRetry     string // a time.Duration for rmq.WithOutageRetry; "" leaves the default
	StallWarning    string // a time.Duration for rmq.WithStallWarning; "" leaves the default
	// ClientRecovery leaves the client's own behaviour after a closed broker connection in place
	// (the allocation strategy given to the client directly replaces the Consumer's wrapper), to
	// measure what the Consumer's recovery saves.
	ClientRecovery bool
}

// queueProperty names the user property in which the stream records the queue a message was sent
// to, so that the parent can tell when every queue delivers again.
const queueProperty = "chaos_queue"

func runWorker(specJSON string) int {
	var spec workerSpec
	if err := json.Unmarshal([]byte(specJSON), &spec); err != nil {
		fmt.Fprintln(os.Stderr, "worker spec:", err)
		return 2
	}
	out := &lineWriter{}
	var logger *slog.Logger
	if dir := os.Getenv("TXCONSUME_CHAOS_LOG_DIR"); dir != "" {
		// Every record, the client's from info level, to a file per worker, besides the report.
		f, err := os.Create(filepath.Join(dir, fmt.Sprintf("%s-%s-%d.log", spec.Group, spec.Instance, os.Getpid())))
		if err != nil {
			fmt.Fprintln(os.Stderr, "log file:", err)
			return 2
		}
		defer f.Close()
		rmq.SetClientLogLevel(slog.LevelInfo)
		logger = slog.New(teeHandler{&reportingHandler{out: out}, slog.NewTextHandler(f, &slog.HandlerOptions{Level: slog.LevelDebug})})
	} else {
		logger = slog.New(&reportingHandler{out: out})
	}

	ledgerDB, err := sqlx.Open("mysql", spec.DSN)
	if err != nil {
		fmt.Fprintln(os.Stderr, "open ledger db:", err)
		return 2
	}
	defer ledgerDB.Close()
	ledgerDB.SetMaxOpenConns(spec.Goroutines + 4)

	hooks := txconsume.Hooks{OnResult: func(_ context.Context, msg *txconsume.Message, r txconsume.Result, err error, _ time.Duration) {
		outcome := r.String()
		if err != nil {
			outcome = "failed"
		}
		out.line(fmt.Sprintf("R %s %s %s", outcome, msg.ID, queueOf(msg)))
	}}

	var p rmq.Processor
	switch spec.Mode {
	case modeTx:
		p, err = txconsume.New(ledgerDB, spec.Group, ledgerTx, txconsume.WithHooks(hooks), txconsume.WithLogger(logger))
	case modeIdemMySQL, modeIdemRedis:
		var store idem.Store
		if spec.Mode == modeIdemMySQL {
			storeDB, oerr := sqlx.Open("mysql", spec.StoreDSN)
			if oerr != nil {
				fmt.Fprintln(os.Stderr, "open store db:", oerr)
				return 2
			}
			defer storeDB.Close()
			store = idem.NewMySQLStore(storeDB.DB)
		} else {
			client := redis.NewClient(&redis.Options{Addr: spec.RedisAddr})
			defer client.Close()
			store = idem.NewRedisStore(client, spec.RedisPrefix)
		}
		p, err = idem.New(store, spec.Group, ledgerOutside(ledgerDB), idem.WithHooks(hooks), idem.WithLogger(logger))
	default:
		err = fmt.Errorf("unknown mode %q", spec.Mode)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "new processor:", err)
		return 2
	}

	opts := []rmq.Option{
		rmq.WithNameServers(spec.NameServer),
		rmq.WithSubscription(spec.Topic, "*"),
		rmq.WithConsumeFromWhere(consumer.ConsumeFromFirstOffset),
		rmq.WithRetryDelayLevel(spec.RetryDelayLevel),
		rmq.WithGoroutines(spec.Goroutines),
		rmq.WithLogger(logger),
		rmq.WithOnDeadLetter(func(_ context.Context, dl rmq.DeadLetter) {
			out.line("D " + dl.Message.ID)
		}),
	}
	if spec.Instance != "" {
		opts = append(opts, rmq.WithInstanceName(spec.Instance))
	}
	if spec.MaxReconsume != 0 {
		opts = append(opts, rmq.WithMaxReconsumeTimes(spec.MaxReconsume))
	}
	for _, o := range []struct {
		value string
		opt   func(time.Duration) rmq.Option
	}{
		{spec.OutageRetry, func(d time.Duration) rmq.Option { return rmq.WithOutageRetry(d) }},
		{spec.StallWarning, rmq.WithStallWarning},
	} {
		if o.value == "" {
			continue
		}
		d, err := time.ParseDuration(o.value)
		if err != nil {
			fmt.Fprintln(os.Stderr, "worker spec:", err)
			return 2
		}
		opts = append(opts, o.opt(d))
	}
	if spec.ClientRecovery {
		opts = append(opts, rmq.WithClientOptions(consumer.WithStrategy(consumer.AllocateByAveragely)))
	}
	c, err := rmq.NewConsumer(p, opts...)
	if err != nil {
		fmt.Fprintln(os.Stderr, "new consumer:", err)
		return 2
	}
	// Start checks the database (or store) first; a worker started while it is down waits, as an
	// orchestrator restarting a service would.
	deadline := time.Now().Add(2 * time.Minute)
	for {
		err = c.Start()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			fmt.Fprintln(os.Stderr, "start:", err)
			return 2
		}
		time.Sleep(500 * time.Millisecond)
	}
	out.line("ready")

	done := make(chan struct{})
	var once sync.Once
	shutdown := func() {
		once.Do(func() {
			go func() {
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				defer cancel()
				err := c.Shutdown(ctx)
				out.line(fmt.Sprintf("E shutdown %v", err))
				close(done)
			}()
		})
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM)
	go func() {
		<-sigs
		shutdown()
	}()
	go func() {
		in := bufio.NewScanner(os.Stdin)
		for in.Scan() {
			if in.Text() == "shutdown" {
				shutdown()
			}
		}
		shutdown() // the parent went away
	}()
	<-done
	return 0
}

func queueOf(msg *txconsume.Message) string {
	if q := msg.Properties[queueProperty]; q != "" {
		return q
	}
	return "-"
}

// ledgerTx is the business effect in transactional mode: a ledger row and a counter increment,
// written in the Processor's transaction.
func ledgerTx(ctx context.Context, tx *sqlx.Tx, msg *txconsume.Message) error {
	if _, err := tx.ExecContext(ctx, `INSERT INTO ledger (msg_key, body) VALUES (?, ?)`, msg.ID, string(msg.Body)); err != nil {
		return err
	}
	_, err := tx.ExecContext(ctx, `UPDATE counter SET n = n + 1 WHERE id = 1`)
	return err
}

// ledgerOutside is the status mode's effect: a ledger row written outside any transaction of the
// store, as an HTTP call to another service would be.
func ledgerOutside(db *sqlx.DB) idem.Handler {
	return func(ctx context.Context, msg *txconsume.Message) error {
		_, err := db.ExecContext(ctx, `INSERT INTO ledger (msg_key, body) VALUES (?, ?)`, msg.ID, string(msg.Body))
		return err
	}
}

// reportingHandler turns log records into "L" lines: warnings and errors, and the Consumer's
// records about brokers and the database, which say what a user sees.
type reportingHandler struct {
	out   *lineWriter
	attrs []slog.Attr
}

func (h *reportingHandler) Enabled(context.Context, slog.Level) bool { return true }

func (h *reportingHandler) Handle(_ context.Context, r slog.Record) error {
	// What an operator reads: warnings and errors, and the Consumer's own lines about the brokers
	// and the database (their recoveries are logged at info level).
	about := strings.Contains(r.Message, "broker") || strings.Contains(r.Message, "database")
	if r.Level < slog.LevelWarn && (r.Level < slog.LevelInfo || !about) {
		return nil
	}
	var b strings.Builder
	b.WriteString(r.Message)
	add := func(a slog.Attr) bool {
		if a.Key == "error" || a.Key == "broker" || a.Key == "unreachable_for" || a.Key == "underlayError" {
			fmt.Fprintf(&b, " %s=%q", a.Key, a.Value.String())
		}
		return true
	}
	for _, a := range h.attrs {
		add(a)
	}
	r.Attrs(add)
	h.out.line(fmt.Sprintf("L %s %s", r.Level, strings.ReplaceAll(b.String(), "\n", " ")))
	return nil
}

func (h *reportingHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &reportingHandler{out: h.out, attrs: append(append([]slog.Attr(nil), h.attrs...), as...)}
}

func (h *reportingHandler) WithGroup(string) slog.Handler { return h }

// teeHandler hands every record to both handlers.
type teeHandler struct{ a, b slog.Handler }

func (h teeHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.a.Enabled(ctx, l) || h.b.Enabled(ctx, l)
}

func (h teeHandler) Handle(ctx context.Context, r slog.Record) error {
	_ = h.a.Handle(ctx, r.Clone())
	if h.b.Enabled(ctx, r.Level) {
		return h.b.Handle(ctx, r)
	}
	return nil
}

func (h teeHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return teeHandler{h.a.WithAttrs(as), h.b.WithAttrs(as)}
}

func (h teeHandler) WithGroup(g string) slog.Handler {
	return teeHandler{h.a.WithGroup(g), h.b.WithGroup(g)}
}

// lineWriter writes whole lines to stdout from many goroutines.
type lineWriter struct{ mu sync.Mutex }

func (w *lineWriter) line(s string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	fmt.Fprintln(os.Stdout, s)
}
