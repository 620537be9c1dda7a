package outbox_test

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	rocketmq "github.com/apache/rocketmq-client-go/v2"
	"github.com/apache/rocketmq-client-go/v2/producer"
	"github.com/go-sql-driver/mysql"
	"github.com/jmoiron/sqlx"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/txconsume/txconsume/internal/testenv"
	"github.com/txconsume/txconsume/txconsume/outbox"
)

// The RocketMQ client leaves goroutines of its own behind after Shutdown; every relay a test
// starts must have returned by the end.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(testenv.M(m), testenv.IgnoreRocketMQClient()...)
}

// newDB returns a pool on a fresh database with txconsume's schema, and its DSN.
func newDB(t *testing.T) (*sqlx.DB, string) {
	t.Helper()
	return outbox.MigratedDB(t)
}

// newProducer starts a producer on the test's broker with the outbox's queue selector (or the
// options given instead).
func newProducer(t *testing.T, mq *testenv.RocketMQ, opts ...producer.Option) rocketmq.Producer {
	t.Helper()
	return outbox.StartProducer(t, mq.NameServer, opts...)
}

// sends records what the relays' OnSend hooks report.
type sends struct {
	mu     sync.Mutex
	all    []outbox.Send
	byID   map[string][]placement // every time an id was stored by the broker
	failed int
	notify chan struct{}
}

// placement is where the broker stored one copy of a message.
type placement struct {
	relay  string
	queue  int
	offset int64
}

func newSends() *sends {
	return &sends{byID: map[string][]placement{}, notify: make(chan struct{}, 1)}
}

// hook returns an OnSend hook that records the sends of the relay named relay.
func (s *sends) hook(relay string) func(context.Context, outbox.Send) {
	return func(_ context.Context, snd outbox.Send) {
		s.mu.Lock()
		s.all = append(s.all, snd)
		if snd.Err != nil {
			s.failed++
		} else {
			for i, id := range snd.IDs {
				s.byID[id] = append(s.byID[id], placement{relay: relay, queue: snd.Result.MessageQueue.QueueId,
					offset: snd.Result.QueueOffset + int64(i)})
			}
		}
		s.mu.Unlock()
		select {
		case s.notify <- struct{}{}:
		default:
		}
	}
}

func (s *sends) copies(id string) []placement {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]placement(nil), s.byID[id]...)
}

func (s *sends) distinct() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.byID)
}

func (s *sends) failures() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.failed
}

// runRelay runs r until the test ends (or stop is called) and returns stop, which cancels Run
// and returns its error.
func runRelay(t *testing.T, r *outbox.Relay) (stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	wait := startRelay(t, ctx, r)
	return func() error {
		cancel()
		return wait()
	}
}

// startRelay runs r until ctx ends or the test ends and returns wait, which waits for Run to
// return and returns its error.
func startRelay(t *testing.T, ctx context.Context, r *outbox.Relay) (wait func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	var once sync.Once
	var err error
	wait = func() error {
		once.Do(func() {
			select {
			case err = <-done:
			case <-time.After(60 * time.Second):
				err = fmt.Errorf("relay did not stop within 60s")
			}
		})
		return err
	}
	t.Cleanup(func() {
		cancel()
		_ = wait()
	})
	return wait
}

// enqueue enqueues msgs in one committed transaction.
func enqueue(t *testing.T, db *sqlx.DB, msgs ...outbox.Message) {
	t.Helper()
	tx, err := db.Beginx()
	require.NoError(t, err)
	require.NoError(t, outbox.Enqueue(context.Background(), tx, msgs...))
	require.NoError(t, tx.Commit())
}

// pendingIDs returns the message ids of the rows in the outbox table, in id order.
func pendingIDs(t *testing.T, db *sqlx.DB) []string {
	t.Helper()
	var ids []string
	require.NoError(t, db.Select(&ids, "SELECT msg_id FROM txconsume_outbox WHERE sent_at IS NULL ORDER BY id"))
	return ids
}

func countRows(t *testing.T, db *sqlx.DB, where string) int {
	t.Helper()
	var n int
	require.NoError(t, db.Get(&n, "SELECT COUNT(*) FROM txconsume_outbox WHERE "+where))
	return n
}

// eventually polls cond until it holds; the bound is about liveness, not speed.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	require.Eventually(t, cond, 90*time.Second, 20*time.Millisecond, "waiting for %s", what)
}

// dsnOf returns the DSN of db's database, to open a second pool on it.
func dsnOf(t *testing.T, db *sqlx.DB) string {
	t.Helper()
	var name string
	require.NoError(t, db.Get(&name, "SELECT DATABASE()"))
	cfg, err := mysql.ParseDSN(testenv.MySQLBaseDSN(t))
	require.NoError(t, err)
	cfg.DBName = name
	return cfg.FormatDSN()
}

// killTransactions kills the connections with an open transaction in db's database (other
// than db's own session) and returns how many it killed.
func killTransactions(t *testing.T, db *sqlx.DB) int {
	t.Helper()
	var ids []int64
	require.NoError(t, db.Select(&ids, `SELECT t.trx_mysql_thread_id FROM information_schema.innodb_trx t
		JOIN information_schema.processlist p ON p.id = t.trx_mysql_thread_id
		WHERE p.db = DATABASE() AND p.id <> CONNECTION_ID()`))
	for _, id := range ids {
		_, err := db.Exec("KILL " + strconv.FormatInt(id, 10))
		require.NoError(t, err)
	}
	return len(ids)
}

// closedAddr returns a loopback address nothing listens on.
func closedAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	require.NoError(t, l.Close())
	return addr
}

// pauseFirstSend wraps an OnSend hook so that the first send, once recorded, is reported on
// first and holds the relay inside its round (its rows sent, not yet recorded as sent, its
// shards and rows locked) until release is closed.
func pauseFirstSend(record func(context.Context, outbox.Send)) (hook func(context.Context, outbox.Send), first <-chan outbox.Send, release chan<- struct{}) {
	firstCh := make(chan outbox.Send, 1)
	releaseCh := make(chan struct{})
	var once sync.Once
	hook = func(ctx context.Context, s outbox.Send) {
		record(ctx, s)
		once.Do(func() {
			firstCh <- s
			<-releaseCh
		})
	}
	return hook, firstCh, releaseCh
}
