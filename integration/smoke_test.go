package integration

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/apache/rocketmq-client-go/v2"
	"github.com/apache/rocketmq-client-go/v2/consumer"
	"github.com/apache/rocketmq-client-go/v2/primitive"
	"github.com/apache/rocketmq-client-go/v2/producer"
	"github.com/stretchr/testify/require"

	"github.com/txconsume/txconsume/internal/testenv"
)

// TestSmokeMySQL proves the database answers and keeps transactional semantics:
// a committed write is visible, a rolled-back one is not.
func TestSmokeMySQL(t *testing.T) {
	db := testenv.MySQL(t)
	ctx := context.Background()
	_, err := db.ExecContext(ctx, `CREATE TABLE smoke (id INT PRIMARY KEY, v VARCHAR(32) NOT NULL) ENGINE=InnoDB`)
	require.NoError(t, err)

	tx, err := db.BeginTxx(ctx, nil)
	require.NoError(t, err)
	_, err = tx.ExecContext(ctx, `INSERT INTO smoke (id, v) VALUES (1, 'committed')`)
	require.NoError(t, err)
	require.NoError(t, tx.Commit())

	tx, err = db.BeginTxx(ctx, nil)
	require.NoError(t, err)
	_, err = tx.ExecContext(ctx, `INSERT INTO smoke (id, v) VALUES (2, 'rolled back')`)
	require.NoError(t, err)
	require.NoError(t, tx.Rollback())

	var values []string
	require.NoError(t, db.SelectContext(ctx, &values, `SELECT v FROM smoke ORDER BY id`))
	require.Equal(t, []string{"committed"}, values)
}

// TestSmokeRedis proves SET/GET round trips and that an expiry really removes the key.
func TestSmokeRedis(t *testing.T) {
	rdb, prefix := testenv.Redis(t)
	ctx := context.Background()
	key := prefix + "smoke"
	require.NoError(t, rdb.Set(ctx, key, "v1", 300*time.Millisecond).Err())
	got, err := rdb.Get(ctx, key).Result()
	require.NoError(t, err)
	require.Equal(t, "v1", got)
	require.Eventually(t, func() bool { return rdb.Exists(ctx, key).Val() == 0 },
		5*time.Second, 50*time.Millisecond, "key with a 300ms expiry still exists")
}

// TestSmokeRocketMQ creates a topic, produces 100 messages and consumes all of them with a
// push consumer, checking every body arrived.
func TestSmokeRocketMQ(t *testing.T) {
	const total = 100
	mq := testenv.NewRocketMQ(t)
	ns := primitive.NamesrvAddr{mq.NameServer}

	p, err := rocketmq.NewProducer(producer.WithNameServer(ns), producer.WithRetry(2),
		producer.WithGroupName(mq.Group+"_producer"))
	require.NoError(t, err)
	require.NoError(t, p.Start())
	defer func() { require.NoError(t, p.Shutdown()) }()

	ctx := context.Background()
	want := make(map[string]bool, total)
	for i := 0; i < total; i++ {
		body := fmt.Sprintf("smoke-%03d", i)
		want[body] = true
		res, err := p.SendSync(ctx, primitive.NewMessage(mq.Topic, []byte(body)))
		require.NoError(t, err)
		require.Equal(t, primitive.SendOK, res.Status)
	}

	var mu sync.Mutex
	seen := make(map[string]bool, total)
	c, err := rocketmq.NewPushConsumer(consumer.WithNameServer(ns), consumer.WithGroupName(mq.Group),
		consumer.WithConsumeFromWhere(consumer.ConsumeFromFirstOffset))
	require.NoError(t, err)
	err = c.Subscribe(mq.Topic, consumer.MessageSelector{},
		func(_ context.Context, msgs ...*primitive.MessageExt) (consumer.ConsumeResult, error) {
			mu.Lock()
			defer mu.Unlock()
			for _, m := range msgs {
				seen[string(m.Body)] = true
			}
			return consumer.ConsumeSuccess, nil
		})
	require.NoError(t, err)
	require.NoError(t, c.Start())
	defer func() { require.NoError(t, c.Shutdown()) }()

	require.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(seen) == total
	}, 90*time.Second, 100*time.Millisecond, "not every message was consumed")
	mu.Lock()
	defer mu.Unlock()
	require.Equal(t, want, seen)
}
