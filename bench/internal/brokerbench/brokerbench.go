// Package brokerbench measures consumers end to end through the real broker: a backlog of
// messages is published once per workload, and each consumer variant drains all of it with a
// consumer group of its own and a fresh database, then consumes a paced stream whose latencies
// (born timestamp to commit) are recorded.
//
// Variants: txconsume's exactly-once consumer (rmq.Consumer) with its defaults and with fixed
// delivery sizes; a hand-written at-least-once consumer (a transaction per delivery, no
// deduplication) with the client's defaults, the baseline; and the naive check-then-insert
// consumer (a plain SELECT for the message id, then the effects and an INSERT of the id).
//
// Workloads: cold, where every message updates a row of its own, and hot, where every message
// updates one of 20 rows (a popular product's stock, a merchant's balance); both then insert a
// ledger row.
package brokerbench

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"time"

	rocketmq "github.com/apache/rocketmq-client-go/v2"
	"github.com/apache/rocketmq-client-go/v2/consumer"
	"github.com/apache/rocketmq-client-go/v2/primitive"
	"github.com/apache/rocketmq-client-go/v2/producer"
	"github.com/apache/rocketmq-client-go/v2/rlog"
	"github.com/jmoiron/sqlx"

	"github.com/txconsume/txconsume/bench/internal/benchenv"
	"github.com/txconsume/txconsume/bench/internal/report"
	"github.com/txconsume/txconsume/migrations"
	"github.com/txconsume/txconsume/txconsume"
	"github.com/txconsume/txconsume/txconsume/rmq"
)

// Suite is the name of the suite's rows.
const Suite = "broker"

// Kinds of consumer.
const (
	ExactlyOnce = "exactly-once"
	AtLeastOnce = "at-least-once"
	Naive       = "naive check-then-insert"
)

// Variant is one consumer configuration.
type Variant struct {
	Kind string
	// Batch is the most messages per delivery; 0 leaves the consumer's default.
	Batch int
}

// Name is the variant's label in the table.
func (v Variant) Name() string {
	if v.Batch == 0 {
		if v.Kind == ExactlyOnce {
			return fmt.Sprintf("%s, defaults (batch %d)", v.Kind, rmq.DefaultBatchMaxSize)
		}
		return v.Kind + ", client defaults (batch 1)"
	}
	return fmt.Sprintf("%s, batch %d", v.Kind, v.Batch)
}

// Baseline is the variant every other is compared with.
var Baseline = Variant{Kind: AtLeastOnce}

// Workload says which rows the messages update.
type Workload struct {
	Name string
	// HotRows is the number of rows all messages update; 0: each message its own row.
	HotRows int
}

// Workloads are the cold and the hot workload.
var Workloads = []Workload{{Name: "cold"}, {Name: "hot", HotRows: 20}}

// Config sizes a run.
type Config struct {
	Messages int           // backlog drained for throughput
	Paced    int           // messages sent at Rate for latency
	Rate     int           // msgs/s of the paced stream
	Repeats  int           // times every variant runs, interleaved
	Timeout  time.Duration // per variant for the backlog (half of it for the paced stream); a variant still draining is cut off and marked
	Variants []Variant
	Log      func(format string, args ...any)
}

// Run measures every variant on every workload and returns the rows.
func Run(ctx context.Context, cfg Config) ([]report.Row, error) {
	rlog.SetLogLevel("error")
	base, err := benchenv.BaseDSN()
	if err != nil {
		return nil, err
	}
	ns, err := benchenv.NameServer()
	if err != nil {
		return nil, err
	}
	admin, err := rmq.NewAdmin([]string{ns})
	if err != nil {
		return nil, err
	}
	prod, err := rocketmq.NewProducer(producer.WithNsResolver(primitive.NewPassthroughResolver([]string{ns})),
		producer.WithGroupName("txbench_producer_"+benchenv.RandomHex(4)), producer.WithRetry(2))
	if err != nil {
		return nil, err
	}
	if err := prod.Start(); err != nil {
		return nil, err
	}
	defer func() { _ = prod.Shutdown() }()

	var rows []report.Row
	for _, wl := range Workloads {
		topic := "txbench_" + wl.Name + "_" + benchenv.RandomHex(4)
		if err := admin.CreateTopic(ctx, rmq.TopicConfig{Topic: topic, Queues: 4}); err != nil {
			return nil, err
		}
		start := time.Now()
		if err := publish(ctx, prod, topic, wl, 0, cfg.Messages); err != nil {
			return nil, err
		}
		cfg.Log("broker %s: published %d messages in %s", wl.Name, cfg.Messages, time.Since(start).Round(time.Millisecond))
		byVariant := make([]report.Row, len(cfg.Variants))
		for i, v := range cfg.Variants {
			byVariant[i] = report.Row{Suite: Suite, Case: wl.Name + " / " + v.Name()}
			if v != Baseline {
				byVariant[i].Baseline = wl.Name + " / " + Baseline.Name()
			}
		}
		var lat = make([][]time.Duration, len(cfg.Variants))
		notes := make([][]string, len(cfg.Variants))
		for r := range cfg.Repeats {
			for i, v := range cfg.Variants {
				m, err := runVariant(ctx, cfg, base, admin, prod, ns, topic, wl, v)
				if err != nil {
					return nil, fmt.Errorf("broker %s %s: %w", wl.Name, v.Name(), err)
				}
				cfg.Log("broker %s / %s, run %d: %.0f msgs/s, p50 %s p99 %s %s", wl.Name, v.Name(), r+1, m.rate,
					pct(m.latencies, 50), pct(m.latencies, 99), m.note)
				byVariant[i].Rates = append(byVariant[i].Rates, m.rate)
				lat[i] = append(lat[i], m.latencies...)
				if m.note != "" {
					notes[i] = append(notes[i], m.note)
				}
			}
		}
		for i := range byVariant {
			byVariant[i].P50, byVariant[i].P99 = pct(lat[i], 50), pct(lat[i], 99)
			byVariant[i].Note = summarize(notes[i])
		}
		rows = append(rows, byVariant...)
	}
	return rows, nil
}

func summarize(notes []string) string {
	slices.Sort(notes)
	notes = slices.Compact(notes)
	s := ""
	for i, n := range notes {
		if i > 0 {
			s += "; "
		}
		s += n
	}
	return s
}

// publish sends messages [from, from+n) of wl to topic from a few goroutines.
func publish(ctx context.Context, prod rocketmq.Producer, topic string, wl Workload, from, n int) error {
	const senders = 16
	var wg sync.WaitGroup
	errs := make(chan error, senders)
	for w := range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := from + w; i < from+n; i += senders {
				if err := send(ctx, prod, topic, wl, i); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	return <-errs
}

func send(ctx context.Context, prod rocketmq.Producer, topic string, wl Workload, i int) error {
	row := i
	if wl.HotRows > 0 {
		row = i % wl.HotRows
	}
	res, err := prod.SendSync(ctx, primitive.NewMessage(topic, []byte(strconv.Itoa(row))))
	if err == nil && res.Status != primitive.SendOK {
		err = fmt.Errorf("send status %v", res.Status)
	}
	return err
}

type measurement struct {
	rate      float64
	latencies []time.Duration
	note      string
}

// schema is the business side: the rows the messages update and a ledger without a unique key,
// so that an effect applied twice shows up as a second row.
var schema = []string{
	`CREATE TABLE account (id INT PRIMARY KEY, balance BIGINT NOT NULL) ENGINE = InnoDB`,
	`CREATE TABLE ledger (id BIGINT AUTO_INCREMENT PRIMARY KEY, msg_key VARBINARY(128) NOT NULL,
		account INT NOT NULL, KEY ledger_msg_key (msg_key)) ENGINE = InnoDB`,
	`CREATE TABLE naive_processed (msg_key VARBINARY(128) NOT NULL, KEY (msg_key)) ENGINE = InnoDB`,
}

// apply is the business effect of one message.
func apply(ctx context.Context, tx *sqlx.Tx, id string, body []byte) error {
	row, err := strconv.Atoi(string(body))
	if err != nil {
		return txconsume.Discard(err)
	}
	if _, err := tx.ExecContext(ctx, "UPDATE account SET balance = balance + 1 WHERE id = ?", row); err != nil {
		return err
	}
	_, err = tx.ExecContext(ctx, "INSERT INTO ledger (msg_key, account) VALUES (?, ?)", id, row)
	return err
}

func setupDB(ctx context.Context, base string, wl Workload, accounts int) (*sqlx.DB, func(), error) {
	name, drop, err := benchenv.TempDatabase(ctx, base, "txbench_broker")
	if err != nil {
		return nil, nil, err
	}
	// Every consumer gets the pool the README recommends (txconsume.Open), which for the
	// hand-written ones is a plain pool with the same settings.
	db, err := benchenv.OpenGuarded(base, name, 40)
	if err != nil {
		drop()
		return nil, nil, err
	}
	cleanup := func() { _ = db.Close(); drop() }
	fail := func(err error) (*sqlx.DB, func(), error) { cleanup(); return nil, nil, err }
	if err := migrations.Up(ctx, db.DB); err != nil {
		return fail(err)
	}
	for _, s := range schema {
		if _, err := db.ExecContext(ctx, s); err != nil {
			return fail(err)
		}
	}
	if wl.HotRows > 0 {
		accounts = wl.HotRows
	}
	for lo := 0; lo < accounts; lo += 1000 {
		q := "INSERT INTO account (id, balance) VALUES "
		for i := lo; i < min(lo+1000, accounts); i++ {
			if i > lo {
				q += ","
			}
			q += "(" + strconv.Itoa(i) + ",0)"
		}
		if _, err := db.ExecContext(ctx, q); err != nil {
			return fail(err)
		}
	}
	return db, cleanup, nil
}

// tracker records the first commit of every message.
type tracker struct {
	mu          sync.Mutex
	seen        map[string]bool
	first, last time.Time
	backlog     int // commits of backlog messages
	paced       []time.Duration
	backlogDone chan struct{}
	pacedDone   chan struct{}
	wantBacklog int
	wantPaced   int
	pacedTopic  string
	// lock conflicts of the exactly-once consumer: batch transactions split, messages retried
	splits, retries int
	failures        int // messages whose processing failed
}

func newTracker(wantBacklog, wantPaced int, pacedTopic string) *tracker {
	return &tracker{seen: map[string]bool{}, backlogDone: make(chan struct{}), pacedDone: make(chan struct{}),
		wantBacklog: wantBacklog, wantPaced: wantPaced, pacedTopic: pacedTopic}
}

func (t *tracker) committed(id, topic string, born time.Time) {
	now := time.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.seen[id] {
		return
	}
	t.seen[id] = true
	if topic == t.pacedTopic {
		t.paced = append(t.paced, now.Sub(born))
		if len(t.paced) == t.wantPaced {
			close(t.pacedDone)
		}
		return
	}
	if t.backlog == 0 {
		t.first = now
	}
	t.last = now
	t.backlog++
	if t.backlog == t.wantBacklog {
		close(t.backlogDone)
	}
}

// failed counts a message whose processing failed (its delivery is redelivered).
func (t *tracker) failed() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.failures++
}

// retried counts a transaction that lost a lock conflict: split (n > 1) or retried (n == 1).
func (t *tracker) retried(n int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if n > 1 {
		t.splits++
	} else {
		t.retries++
	}
}

func (t *tracker) backlogRate() (float64, int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.backlog < 2 {
		return 0, t.backlog
	}
	return float64(t.backlog-1) / t.last.Sub(t.first).Seconds(), t.backlog
}

type startStopper interface {
	Start() error
	Shutdown(context.Context) error
}

func runVariant(ctx context.Context, cfg Config, base string, admin *rmq.Admin, prod rocketmq.Producer, ns, topic string,
	wl Workload, v Variant) (measurement, error) {
	db, cleanup, err := setupDB(ctx, base, wl, cfg.Messages+cfg.Paced)
	if err != nil {
		return measurement{}, err
	}
	defer cleanup()
	group := "txbench_" + benchenv.RandomHex(6)
	paced := topic + "_p" + benchenv.RandomHex(3)
	if err := admin.CreateTopic(ctx, rmq.TopicConfig{Topic: paced, Queues: 4, RetryGroup: group}); err != nil {
		return measurement{}, err
	}
	tr := newTracker(cfg.Messages, cfg.Paced, paced)
	c, err := newConsumer(db, ns, group, []string{topic, paced}, v, tr)
	if err != nil {
		return measurement{}, err
	}
	if err := c.Start(); err != nil {
		return measurement{}, err
	}
	defer func() { _ = c.Shutdown(context.Background()) }()

	var m measurement
	select {
	case <-tr.backlogDone:
	case <-time.After(cfg.Timeout):
	case <-ctx.Done():
		return m, ctx.Err()
	}
	var done int
	m.rate, done = tr.backlogRate()
	if done < cfg.Messages {
		m.note = fmt.Sprintf("cut off after %s with %d of %d", cfg.Timeout, done, cfg.Messages)
	}
	if cfg.Paced > 0 {
		if err := pace(ctx, prod, paced, wl, cfg.Messages, cfg.Paced, cfg.Rate); err != nil {
			return m, err
		}
		select {
		case <-tr.pacedDone:
		case <-time.After(cfg.Timeout / 2):
		case <-ctx.Done():
			return m, ctx.Err()
		}
		tr.mu.Lock()
		m.latencies = slices.Clone(tr.paced)
		tr.mu.Unlock()
		if len(m.latencies) < cfg.Paced {
			m.note = joinNote(m.note, fmt.Sprintf("paced stream cut off with %d of %d", len(m.latencies), cfg.Paced))
		}
	}
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	_ = c.Shutdown(sctx)
	var ledger, distinct int
	if err := db.GetContext(ctx, &ledger, "SELECT COUNT(*) FROM ledger"); err != nil {
		return m, err
	}
	if err := db.GetContext(ctx, &distinct, "SELECT COUNT(DISTINCT msg_key) FROM ledger"); err != nil {
		return m, err
	}
	tr.mu.Lock()
	if tr.splits+tr.retries > 0 {
		m.note = joinNote(m.note, fmt.Sprintf("lock conflicts: %d splits, %d retries", tr.splits, tr.retries))
	}
	if tr.failures > 0 {
		m.note = joinNote(m.note, fmt.Sprintf("%d failed and redelivered", tr.failures))
	}
	tr.mu.Unlock()
	if twice := ledger - distinct; twice > 0 {
		m.note = joinNote(m.note, fmt.Sprintf("%d applied twice", twice))
	}
	return m, nil
}

func joinNote(a, b string) string {
	if a == "" {
		return b
	}
	return a + ", " + b
}

// pace sends n messages at rate per second.
func pace(ctx context.Context, prod rocketmq.Producer, topic string, wl Workload, from, n, rate int) error {
	interval := time.Second / time.Duration(max(rate, 1))
	tick := time.NewTicker(interval)
	defer tick.Stop()
	sem := make(chan struct{}, 16)
	errs := make(chan error, n)
	var wg sync.WaitGroup
	for i := range n {
		<-tick.C
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if err := send(ctx, prod, topic, wl, from+i); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	return <-errs
}

func newConsumer(db *sqlx.DB, ns, group string, topics []string, v Variant, tr *tracker) (startStopper, error) {
	switch v.Kind {
	case ExactlyOnce:
		p, err := txconsume.New(db, group, func(ctx context.Context, tx *sqlx.Tx, m *txconsume.Message) error {
			return apply(ctx, tx, m.ID, m.Body)
		}, txconsume.WithLogger(quiet), txconsume.WithHooks(txconsume.Hooks{
			OnResult: func(_ context.Context, m *txconsume.Message, r txconsume.Result, err error, _ time.Duration) {
				switch {
				case err != nil:
					tr.failed()
				case r == txconsume.Applied:
					tr.committed(m.ID, m.Topic, m.BornAt)
				}
			},
			OnRetry: func(_ context.Context, ms []*txconsume.Message, _ int, _ error, _ time.Duration) {
				tr.retried(len(ms))
			},
		}))
		if err != nil {
			return nil, err
		}
		opts := []rmq.Option{rmq.WithNameServers(ns), rmq.WithLogger(quiet),
			rmq.WithConsumeFromWhere(consumer.ConsumeFromFirstOffset)}
		for _, t := range topics {
			opts = append(opts, rmq.WithSubscription(t, "*"))
		}
		if v.Batch > 0 {
			opts = append(opts, rmq.WithBatchMaxSize(v.Batch))
		}
		return rmq.NewConsumer(p, opts...)
	case AtLeastOnce, Naive:
		opts := []consumer.Option{
			consumer.WithNsResolver(primitive.NewPassthroughResolver([]string{ns})),
			consumer.WithGroupName(group),
			consumer.WithConsumeFromWhere(consumer.ConsumeFromFirstOffset),
		}
		if v.Batch > 0 {
			opts = append(opts, consumer.WithConsumeMessageBatchMaxSize(v.Batch))
		}
		pc, err := rocketmq.NewPushConsumer(opts...)
		if err != nil {
			return nil, err
		}
		consume := atLeastOnce(db, tr)
		if v.Kind == Naive {
			consume = naive(db, tr)
		}
		for _, t := range topics {
			if err := pc.Subscribe(t, consumer.MessageSelector{}, consume); err != nil {
				return nil, err
			}
		}
		return plainConsumer{pc}, nil
	}
	return nil, fmt.Errorf("unknown consumer kind %q", v.Kind)
}

var quiet = slog.New(slog.DiscardHandler)

type plainConsumer struct{ pc rocketmq.PushConsumer }

func (c plainConsumer) Start() error                   { return c.pc.Start() }
func (c plainConsumer) Shutdown(context.Context) error { return c.pc.Shutdown() }

type listenerFunc = func(context.Context, ...*primitive.MessageExt) (consumer.ConsumeResult, error)

// atLeastOnce is the consumer most services start with: the delivery's effects in one
// transaction, no deduplication; a failure (a deadlock, say) hands the delivery back.
func atLeastOnce(db *sqlx.DB, tr *tracker) listenerFunc {
	return func(ctx context.Context, msgs ...*primitive.MessageExt) (consumer.ConsumeResult, error) {
		tx, err := db.BeginTxx(ctx, nil)
		if err != nil {
			return consumer.ConsumeRetryLater, err
		}
		defer func() { _ = tx.Rollback() }()
		for _, m := range msgs {
			if err := apply(ctx, tx, rmq.FromMessageExt(m).ID, m.Body); err != nil {
				return consumer.ConsumeRetryLater, err
			}
		}
		if err := tx.Commit(); err != nil {
			return consumer.ConsumeRetryLater, err
		}
		for _, m := range msgs {
			tm := rmq.FromMessageExt(m)
			tr.committed(tm.ID, tm.Topic, tm.BornAt)
		}
		return consumer.ConsumeSuccess, nil
	}
}

// naive checks for the message id with a plain SELECT, then applies and records it: the pattern
// whose check and insert race (two deliveries of one message can both find it absent).
func naive(db *sqlx.DB, tr *tracker) listenerFunc {
	return func(ctx context.Context, msgs ...*primitive.MessageExt) (consumer.ConsumeResult, error) {
		for _, m := range msgs {
			tm := rmq.FromMessageExt(m)
			err := func() error {
				tx, err := db.BeginTxx(ctx, nil)
				if err != nil {
					return err
				}
				defer func() { _ = tx.Rollback() }()
				var n int
				if err := tx.GetContext(ctx, &n, "SELECT COUNT(*) FROM naive_processed WHERE msg_key = ?", tm.ID); err != nil {
					return err
				}
				if n > 0 {
					return nil
				}
				if err := apply(ctx, tx, tm.ID, m.Body); err != nil {
					return err
				}
				if _, err := tx.ExecContext(ctx, "INSERT INTO naive_processed (msg_key) VALUES (?)", tm.ID); err != nil {
					return err
				}
				return tx.Commit()
			}()
			if err != nil {
				return consumer.ConsumeRetryLater, errors.Join(err)
			}
			tr.committed(tm.ID, tm.Topic, tm.BornAt)
		}
		return consumer.ConsumeSuccess, nil
	}
}

// pct returns the p-th percentile of ds (0 for none).
func pct(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(float64(len(s)-1) * p / 100)
	return s[i]
}
