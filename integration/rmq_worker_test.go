package integration

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/apache/rocketmq-client-go/v2/consumer"
	"github.com/jmoiron/sqlx"

	"github.com/txconsume/txconsume/txconsume"
	"github.com/txconsume/txconsume/txconsume/rmq"
)

// The RocketMQ client has data races of its own (its orderly queue reads a tree map without the lock
// that guards writes, its Shutdown closes a channel that a pull may be sending on; upstream
// apache/rocketmq-client-go #790 and PR #1115). Under -race, any test that runs the client in its own
// process would fail at random on them. So the consumers of these tests run in child processes: the
// test binary started again with TXCONSUME_RMQ_WORKER holding a workerSpec, which is also what a
// consumer really is, a separate service instance. The child runs under the race detector too; the
// parent fails the test on every race report that involves this module's code and tolerates those
// confined to the client.

const rmqWorkerEnv = "TXCONSUME_RMQ_WORKER"

// workerSpec says what one consumer process runs.
type workerSpec struct {
	DSN, NameServer, Topic, Group, Instance string
	Handler                                 string // ledger, orderly, poison, slow, dlq, forward
	ForwardTopic                            string // forward: the topic it enqueues to
	Label                                   string // the ledger's consumer column
	FailTimes                               int    // messages with property "fail" fail while ReconsumeTimes < FailTimes
	Crash                                   bool   // messages with property "crash": first delivery commits, then reports failure
	KeyByFirstKey                           bool
	Orderly                                 bool
	BatchMax                                int
	SuspendMillis                           int
	MaxReconsume                            int32
}

var errInjected = errors.New("injected failure")

// runRMQWorker is the child's main: it prints "ready" once consuming, one line per outcome, and
// obeys "release" (lets the slow handler commit) and "shutdown" (Shutdown, then exit) on stdin.
func runRMQWorker(specJSON string) int {
	var spec workerSpec
	db, ok := childSetup(specJSON, &spec, func() string { return spec.DSN })
	if !ok {
		return 2
	}
	defer db.Close()
	out := &lineWriter{}
	db.SetMaxOpenConns(32)

	release := make(chan struct{})
	var p rmq.Processor
	if spec.Handler == "dlq" {
		p = dlqPrinter{out}
	} else {
		var opts []txconsume.Option
		if spec.KeyByFirstKey {
			opts = append(opts, txconsume.WithKeyFunc(txconsume.KeyByFirstKey))
		}
		proc, err := txconsume.New(db, spec.Group, workerHandler(spec, db, out, release), opts...)
		if err != nil {
			fmt.Fprintln(os.Stderr, "new processor:", err)
			return 2
		}
		p = &reporting{inner: proc, out: out, crash: spec.Crash}
	}

	opts := []rmq.Option{
		rmq.WithNameServers(spec.NameServer),
		rmq.WithGroup(spec.Group),
		rmq.WithSubscription(spec.Topic, "*"),
		rmq.WithConsumeFromWhere(consumer.ConsumeFromFirstOffset),
		rmq.WithRetryDelayLevel(1),
		rmq.WithGoroutines(8),
		rmq.WithLogger(slog.New(&eventHandler{out: out})),
	}
	if spec.Instance != "" {
		opts = append(opts, rmq.WithInstanceName(spec.Instance))
	}
	if spec.Orderly {
		opts = append(opts, rmq.WithOrderly())
	}
	if spec.BatchMax > 0 {
		opts = append(opts, rmq.WithBatchMaxSize(spec.BatchMax))
	}
	if spec.SuspendMillis > 0 {
		opts = append(opts, rmq.WithSuspendTime(time.Duration(spec.SuspendMillis)*time.Millisecond))
	}
	if spec.MaxReconsume != 0 {
		opts = append(opts, rmq.WithMaxReconsumeTimes(spec.MaxReconsume))
	}
	c, err := rmq.NewConsumer(p, opts...)
	if err != nil {
		fmt.Fprintln(os.Stderr, "new consumer:", err)
		return 2
	}
	if err := c.Start(); err != nil {
		fmt.Fprintln(os.Stderr, "start:", err)
		return 2
	}
	out.line("ready")
	// Commands are read while Shutdown runs, so that "release" can reach a handler Shutdown waits for.
	done := make(chan struct{})
	var shutdownOnce, releaseOnce sync.Once
	shutdown := func() {
		shutdownOnce.Do(func() {
			go func() {
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				defer cancel()
				err := c.Shutdown(ctx)
				out.line(fmt.Sprintf("E shutdown-returned %v", err))
				close(done)
			}()
		})
	}
	go func() {
		in := bufio.NewScanner(os.Stdin)
		for in.Scan() {
			switch in.Text() {
			case "release":
				releaseOnce.Do(func() { close(release) })
			case "shutdown":
				shutdown()
			}
		}
		shutdown() // the parent went away
	}()
	<-done
	return 0
}

// childSetup decodes a child process's spec and opens its database (dsn reads the DSN from the
// decoded spec). It reports what failed on stderr.
func childSetup(specJSON string, spec any, dsn func() string) (*sqlx.DB, bool) {
	if err := json.Unmarshal([]byte(specJSON), spec); err != nil {
		fmt.Fprintln(os.Stderr, "child spec:", err)
		return nil, false
	}
	db, err := sqlx.Open("mysql", dsn())
	if err != nil {
		fmt.Fprintln(os.Stderr, "open db:", err)
		return nil, false
	}
	return db, true
}

// workerHandler builds the business handler the spec names.
func workerHandler(spec workerSpec, db *sqlx.DB, out *lineWriter, release chan struct{}) txconsume.Handler {
	ledger := ledgerHandler(spec.Label)
	var business txconsume.Handler
	switch spec.Handler {
	case "orderly":
		business = orderlyHandler
	case "forward":
		business = forwardHandler(ledger, spec.ForwardTopic)
	case "poison":
		business = func(ctx context.Context, tx *sqlx.Tx, msg *txconsume.Message) error {
			if !hasProperty(msg, "poison") {
				return ledger(ctx, tx, msg)
			}
			// Outside the transaction, so the attempt is counted although the transaction rolls back.
			if _, err := db.ExecContext(ctx, `INSERT INTO attempts (msg_id) VALUES (?)`, msg.ID); err != nil {
				return err
			}
			return errors.New("poison: this message can never be applied")
		}
	case "slow":
		var once sync.Once
		business = func(ctx context.Context, tx *sqlx.Tx, msg *txconsume.Message) error {
			if err := ledger(ctx, tx, msg); err != nil {
				return err
			}
			if hasProperty(msg, "slow") {
				once.Do(func() { out.line("E slow-entered") })
				<-release // the transaction stays open, its writes done, until the parent lets go
			}
			return nil
		}
	default:
		business = ledger
	}
	return func(ctx context.Context, tx *sqlx.Tx, msg *txconsume.Message) error {
		if hasProperty(msg, "fail") && int(msg.ReconsumeTimes) < spec.FailTimes {
			return errInjected
		}
		return business(ctx, tx, msg)
	}
}

// orderlyHandler applies an order's event: it records the event with the sequence number it found
// applied before, then moves the order to the event's sequence number.
func orderlyHandler(ctx context.Context, tx *sqlx.Tx, msg *txconsume.Message) error {
	order := msg.Properties["order"]
	seq, err := strconv.Atoi(msg.Properties["seq"])
	if err != nil {
		return txconsume.Discard(err)
	}
	prev := 0
	err = tx.GetContext(ctx, &prev, `SELECT last_seq FROM order_seq WHERE order_id = ? FOR UPDATE`, order)
	if err != nil && !errors.Is(err, sqlNoRows) {
		return err
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO order_effects (order_id, seq, prev_seq) VALUES (?, ?, ?)`,
		order, seq, prev); err != nil {
		return err
	}
	_, err = tx.ExecContext(ctx, `INSERT INTO order_seq (order_id, last_seq) VALUES (?, ?)
		ON DUPLICATE KEY UPDATE last_seq = VALUES(last_seq)`, order, seq)
	return err
}

// reporting prints every outcome ("R <result> <id> <first key> <slow>") and, for batches, "B <size>".
type reporting struct {
	inner *txconsume.Processor
	out   *lineWriter
	crash bool
}

func (r *reporting) report(msg *txconsume.Message, res txconsume.Result, err error) error {
	if r.crash && err == nil && res == txconsume.Applied && msg.ReconsumeTimes == 0 && hasProperty(msg, "crash") {
		err = errors.New("injected: committed, then died before the ack")
	}
	outcome := res.String()
	if err != nil {
		outcome = "failed"
	}
	key := "-"
	if len(msg.Keys) > 0 {
		key = msg.Keys[0]
	}
	r.out.line(fmt.Sprintf("R %s %s %s %t", outcome, msg.ID, key, hasProperty(msg, "slow")))
	return err
}

func (r *reporting) Process(ctx context.Context, msg *txconsume.Message) (txconsume.Result, error) {
	res, err := r.inner.Process(ctx, msg)
	return res, r.report(msg, res, err)
}

func (r *reporting) ProcessBatch(ctx context.Context, msgs []*txconsume.Message) ([]txconsume.Result, error) {
	r.out.line(fmt.Sprintf("B %d", len(msgs)))
	results, err := r.inner.ProcessBatch(ctx, msgs)
	for i, res := range results {
		_ = r.report(msgs[i], res, batchFailed(err, i))
	}
	return results, err
}

// dlqPrinter reads the dead-letter topic: "D <id> <body>" per message.
type dlqPrinter struct{ out *lineWriter }

func (d dlqPrinter) Process(_ context.Context, msg *txconsume.Message) (txconsume.Result, error) {
	d.out.line(fmt.Sprintf("D %s %s %s", msg.ID, msg.Body, msg.Properties["poison"]))
	return txconsume.Applied, nil
}

// eventHandler turns the Consumer's life-cycle log records into "E" lines.
type eventHandler struct{ out *lineWriter }

func (h *eventHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *eventHandler) Handle(_ context.Context, r slog.Record) error {
	if strings.HasPrefix(r.Message, "rmq: consumer shutting down") {
		h.out.line("E draining")
	}
	return nil
}
func (h *eventHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *eventHandler) WithGroup(string) slog.Handler      { return h }

// lineWriter writes whole lines to stdout from many goroutines.
type lineWriter struct{ mu sync.Mutex }

func (w *lineWriter) line(s string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	fmt.Fprintln(os.Stdout, s)
}
