package integration

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	rocketmq "github.com/apache/rocketmq-client-go/v2"
	"github.com/apache/rocketmq-client-go/v2/primitive"
	"github.com/apache/rocketmq-client-go/v2/producer"
	"github.com/jmoiron/sqlx"
	"github.com/stretchr/testify/require"

	"github.com/txconsume/txconsume/internal/testenv"
	"github.com/txconsume/txconsume/migrations"
	"github.com/txconsume/txconsume/txconsume"
)

// rmqEnv is one end-to-end setup: a fresh database with txconsume's schema and a ledger, a topic and
// a group of its own on the real broker, and a started producer.
type rmqEnv struct {
	t     *testing.T
	db    *sqlx.DB
	dsn   string
	mq    *testenv.RocketMQ
	prod  rocketmq.Producer
	stats *resultStats
}

// The ledger has no unique constraint on purpose: an effect applied twice shows up as a second row.
var rmqLedgerSchema = []string{`
CREATE TABLE ledger (
    id       BIGINT AUTO_INCREMENT PRIMARY KEY,
    msg_key  VARCHAR(128) NOT NULL,
    body     VARCHAR(255) NOT NULL,
    consumer VARCHAR(64)  NOT NULL DEFAULT '',
    KEY ledger_msg_key (msg_key)
) ENGINE = InnoDB`,
	`CREATE TABLE counter (id INT PRIMARY KEY, n BIGINT NOT NULL) ENGINE = InnoDB`,
	`INSERT INTO counter (id, n) VALUES (1, 0)`,
}

func newRMQEnv(t *testing.T, producerOpts ...producer.Option) *rmqEnv {
	t.Helper()
	return newRMQEnvOn(t, nil, producerOpts...)
}

// newRMQEnvOn is newRMQEnv on the broker of mq (with its topic and group), or on a topic and group
// of the shared broker when mq is nil.
func newRMQEnvOn(t *testing.T, mq *testenv.RocketMQ, producerOpts ...producer.Option) *rmqEnv {
	t.Helper()
	dsn := testenv.MySQLDSN(t)
	db := testenv.OpenMySQL(t, dsn)
	ctx := context.Background()
	require.NoError(t, migrations.Up(ctx, db.DB))
	for _, stmt := range rmqLedgerSchema {
		_, err := db.ExecContext(ctx, stmt)
		require.NoError(t, err)
	}

	if mq == nil {
		mq = testenv.NewRocketMQ(t)
	}
	// The broker creates %RETRY%<group> on the first redelivery, and a running client learns new routes
	// only every 30s; created up front, the retry topic's route is known from the consumer's start.
	mq.CreateTopic(t, retryTopic(mq.Group), 1)
	prod := mq.StartProducer(t, append([]producer.Option{producer.WithRetry(2)}, producerOpts...)...)
	return &rmqEnv{t: t, db: db, dsn: dsn, mq: mq, prod: prod, stats: &resultStats{}}
}

// ledgerHandler is the business effect: one ledger row and one counter increment per message.
func ledgerHandler(consumerName string) txconsume.Handler {
	return func(ctx context.Context, tx *sqlx.Tx, msg *txconsume.Message) error {
		key := msg.ID
		if len(msg.Keys) > 0 {
			key = msg.Keys[0]
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO ledger (msg_key, body, consumer) VALUES (?, ?, ?)`,
			key, string(msg.Body), consumerName); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `UPDATE counter SET n = n + 1 WHERE id = 1`)
		return err
	}
}

func (e *rmqEnv) newMessage(body string, keys ...string) *primitive.Message {
	m := primitive.NewMessage(e.mq.Topic, []byte(body))
	if len(keys) > 0 {
		m.WithKeys(keys)
	}
	return m
}

// send sends msgs one by one and returns each one's UNIQ_KEY (the producer sets it on the message).
func (e *rmqEnv) send(msgs ...*primitive.Message) []string {
	e.t.Helper()
	ids := make([]string, len(msgs))
	for i, m := range msgs {
		res, err := testenv.SendSync(context.Background(), e.prod, m)
		require.NoError(e.t, err)
		require.Equal(e.t, primitive.SendOK, res.Status)
		ids[i] = m.GetProperty(primitive.PropertyUniqueClientMessageIdKeyIndex)
		require.NotEmpty(e.t, ids[i])
		require.Equal(e.t, ids[i], res.MsgID)
	}
	return ids
}

// resend returns a copy of a sent message carrying the same UNIQ_KEY, as a producer retry after a
// lost acknowledgement would send it: the producer keeps a UNIQ_KEY that is already set.
func resend(m *primitive.Message) *primitive.Message {
	c := primitive.NewMessage(m.Topic, m.Body)
	c.WithProperties(m.GetProperties())
	return c
}

// counts reads the effects: ledger rows, distinct message keys in the ledger, the counter, dedup rows.
type counts struct {
	Ledger, DistinctKeys, Counter, Dedup int
}

func (e *rmqEnv) counts() counts {
	e.t.Helper()
	var c counts
	ctx := context.Background()
	require.NoError(e.t, e.db.GetContext(ctx, &c.Ledger, `SELECT COUNT(*) FROM ledger`))
	require.NoError(e.t, e.db.GetContext(ctx, &c.DistinctKeys, `SELECT COUNT(DISTINCT msg_key) FROM ledger`))
	require.NoError(e.t, e.db.GetContext(ctx, &c.Counter, `SELECT n FROM counter WHERE id = 1`))
	require.NoError(e.t, e.db.GetContext(ctx, &c.Dedup, `SELECT COUNT(*) FROM txconsume_dedup`))
	return c
}

// openTransactions counts the open InnoDB transactions of connections to this test's database.
func (e *rmqEnv) openTransactions() int {
	e.t.Helper()
	var n int
	require.NoError(e.t, e.db.GetContext(context.Background(), &n, `
		SELECT COUNT(*) FROM information_schema.innodb_trx t
		JOIN information_schema.processlist p ON p.id = t.trx_mysql_thread_id
		WHERE p.db = DATABASE()`))
	return n
}

// eventuallyOpenTransactions polls openTransactions until ok(n) holds (bounded at 30s). InnoDB serves
// information_schema.innodb_trx from a cache it refreshes only when the last read is more than 100ms
// old, so the polls are spaced wider than that; a single read could show a state 100ms stale.
func (e *rmqEnv) eventuallyOpenTransactions(ok func(n int) bool) bool {
	e.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		time.Sleep(150 * time.Millisecond)
		if ok(e.openTransactions()) {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
	}
}

// waitFor polls cond until it holds. The bound is about liveness (a lost message would hang the
// test), not speed.
func (e *rmqEnv) waitFor(what string, cond func() bool) {
	e.t.Helper()
	e.waitWithin(what, 90*time.Second, cond)
}

// waitForAfterLeaving is waitFor for what the group can do only once the broker no longer lists a
// consumer that left it. The broker may list one that shut down, or was killed, for up to
// testenv.DeadConsumerListed (docs/upstream.md, report 6), and the queues it allocates that
// consumer wait that long: the bound allows for that wait on top of waitFor's.
func (e *rmqEnv) waitForAfterLeaving(what string, cond func() bool) {
	e.t.Helper()
	e.waitWithin(what, 90*time.Second+testenv.DeadConsumerListed, cond)
}

func (e *rmqEnv) waitWithin(what string, bound time.Duration, cond func() bool) {
	e.t.Helper()
	if !assertEventually(cond, bound) {
		e.t.Fatalf("waiting for %s: not done after %v; processor results: %s; effects: %+v", what, bound, e.stats, e.counts())
	}
}

func assertEventually(cond func() bool, bound time.Duration) bool {
	deadline := time.Now().Add(bound)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
	return true
}

func lastEvent(events []string) string {
	if len(events) == 0 {
		return ""
	}
	return events[len(events)-1]
}

// resultStats counts what the processor reported, to know when every delivery has been seen.
type resultStats struct {
	applied, duplicate, discarded, failed atomic.Int64
	maxBatch                              atomic.Int64
}

func (s *resultStats) String() string {
	return fmt.Sprintf("applied=%d duplicate=%d discarded=%d failed=%d maxBatch=%d",
		s.applied.Load(), s.duplicate.Load(), s.discarded.Load(), s.failed.Load(), s.maxBatch.Load())
}

func (s *resultStats) record(r txconsume.Result, err error) {
	switch {
	case err != nil:
		s.failed.Add(1)
	case r == txconsume.Applied:
		s.applied.Add(1)
	case r == txconsume.Duplicate:
		s.duplicate.Add(1)
	case r == txconsume.Discarded:
		s.discarded.Add(1)
	}
}

func batchFailed(err error, i int) error {
	if err == nil {
		return nil
	}
	var be *txconsume.BatchError
	if errors.As(err, &be) {
		return be.Failed(i)
	}
	return err
}

func retryTopic(group string) string { return "%RETRY%" + group }

func dlqTopic(group string) string { return "%DLQ%" + group }

func bodyOf(i int) string { return fmt.Sprintf("m-%05d", i) }

func hasProperty(msg *txconsume.Message, name string) bool {
	return strings.TrimSpace(msg.Properties[name]) != ""
}

var sqlNoRows = sql.ErrNoRows
