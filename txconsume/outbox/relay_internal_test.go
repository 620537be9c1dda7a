package outbox

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/txconsume/txconsume/internal/testenv"
)

// counter counts the messages a relay's sends stored, per message id.
type counter struct {
	mu   sync.Mutex
	byID map[string]int
}

func (c *counter) onSend(_ context.Context, s Send) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if s.Err == nil {
		for _, id := range s.IDs {
			c.byID[id]++
		}
	}
}

func (c *counter) total() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, v := range c.byID {
		n += v
	}
	return n
}

func runInternal(t *testing.T, r *Relay) func() {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	stop := func() {
		cancel()
		require.NoError(t, <-done)
	}
	var once sync.Once
	t.Cleanup(func() { once.Do(stop) })
	return func() { once.Do(stop) }
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	require.Eventually(t, cond, 90*time.Second, 20*time.Millisecond, "waiting for %s", what)
}

// TestRelayPollsForRowsNobodyAnnounced: rows committed without a wake-up in this process (as
// by another process) are found by polling.
func TestRelayPollsForRowsNobodyAnnounced(t *testing.T) {
	db, _ := migratedDB(t)
	mq := testenv.NewRocketMQ(t)
	c := &counter{byID: map[string]int{}}
	r, err := NewRelay(db, StartProducer(t, mq.NameServer), WithPollInterval(100*time.Millisecond),
		WithHooks(Hooks{OnSend: c.onSend}))
	require.NoError(t, err)
	stop := runInternal(t, r)
	time.Sleep(400 * time.Millisecond) // past the first rounds: the relay polls
	insertCommitted(t, db, mq.Topic, 3)
	waitFor(t, "the rows sent", func() bool { return c.total() == 3 })
	stop()
}

// TestRelayRegroupsWhenQueueCountChanges: a relay that grouped keys for another queue count
// than the topic has (the topic was resized) sends nothing to a wrong queue: the selector
// refuses the send, and the relay regroups with the topic's count.
func TestRelayRegroupsWhenQueueCountChanges(t *testing.T) {
	db, _ := migratedDB(t)
	mq := testenv.NewRocketMQ(t) // 4 queues
	var mu sync.Mutex
	queueOf := map[string]map[int]bool{}
	failures := 0
	hook := func(_ context.Context, s Send) {
		mu.Lock()
		defer mu.Unlock()
		if s.Err != nil {
			failures++
			return
		}
		if queueOf[s.Topic] == nil {
			queueOf[s.Topic] = map[int]bool{}
		}
		queueOf[s.Topic][s.Result.MessageQueue.QueueId] = true
	}
	var logs lockedLog
	r, err := NewRelay(db, StartProducer(t, mq.NameServer), WithHooks(Hooks{OnSend: hook}),
		WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	require.NoError(t, err)
	r.queues[mq.Topic] = 8 // what it learned before the topic shrank
	tx, err := db.Beginx()
	require.NoError(t, err)
	require.NoError(t, Enqueue(context.Background(), tx, Message{Topic: mq.Topic, ShardingKey: "order-1", Body: []byte("1")},
		Message{Topic: mq.Topic, ShardingKey: "order-1", Body: []byte("2")}))
	require.NoError(t, tx.Commit())
	stop := runInternal(t, r)
	waitFor(t, "the rows sent", func() bool {
		var n int
		require.NoError(t, db.Get(&n, "SELECT COUNT(*) FROM "+Table))
		return n == 0
	})
	stop()
	require.Equal(t, 4, r.queues[mq.Topic])
	require.Len(t, queueOf[mq.Topic], 1, "both messages on the key's queue")
	require.Zero(t, failures, "a refused send is not a failed one")
	require.Equal(t, 1, strings.Count(logs.String(), "queue count changed; regrouping"), logs.String())
}

// lockedLog is a log destination for a relay's goroutine and the test's.
type lockedLog struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestRelayKeepsSentRows: with a retention, sent rows stay, marked, until they are older than
// the retention; the cleanup then deletes them, and only them.
func TestRelayKeepsSentRows(t *testing.T) {
	ctx := context.Background()
	db, _ := migratedDB(t)
	mq := testenv.NewRocketMQ(t)
	c := &counter{byID: map[string]int{}}
	r, err := NewRelay(db, StartProducer(t, mq.NameServer), WithRetention(time.Hour), WithCleanupBatch(2),
		WithHooks(Hooks{OnSend: c.onSend}))
	require.NoError(t, err)
	insertCommitted(t, db, mq.Topic, 5)
	res, err := r.round(ctx)
	require.NoError(t, err)
	require.Equal(t, 5, res.sent)
	insertCommitted(t, db, mq.Topic, 1) // pending
	count := func(where string) int {
		var n int
		require.NoError(t, db.Get(&n, "SELECT COUNT(*) FROM "+Table+" WHERE "+where))
		return n
	}
	require.Equal(t, 5, count("sent_at IS NOT NULL"))

	more, err := r.cleanup(ctx)
	require.NoError(t, err)
	require.False(t, more)
	require.Equal(t, 5, count("sent_at IS NOT NULL"), "younger than the retention")
	_, err = db.Exec("UPDATE " + Table + " SET sent_at = sent_at - INTERVAL 2 HOUR WHERE sent_at IS NOT NULL")
	require.NoError(t, err)
	for more = true; more; { // batches of 2
		more, err = r.cleanup(ctx)
		require.NoError(t, err)
	}
	require.Zero(t, count("sent_at IS NOT NULL"))
	require.Equal(t, 1, count("sent_at IS NULL"), "the pending row stays")
	require.Equal(t, 5, c.total())
}
