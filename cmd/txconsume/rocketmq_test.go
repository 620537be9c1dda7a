package main

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	rocketmq "github.com/apache/rocketmq-client-go/v2"
	"github.com/apache/rocketmq-client-go/v2/admin"
	"github.com/apache/rocketmq-client-go/v2/consumer"
	"github.com/apache/rocketmq-client-go/v2/primitive"
	"github.com/apache/rocketmq-client-go/v2/producer"
	"github.com/jmoiron/sqlx"
	"github.com/stretchr/testify/require"

	"github.com/txconsume/txconsume/internal/testenv"
	"github.com/txconsume/txconsume/migrations"
	"github.com/txconsume/txconsume/txconsume"
	"github.com/txconsume/txconsume/txconsume/rmq"
)

func TestTopicCreate(t *testing.T) {
	ns, _ := testenv.RocketMQServer(t)
	topic, group := testenv.UniqueName(t, "t"), testenv.UniqueName(t, "g")

	r := cli(t, "topic", "create", "-namesrv", ns, "-topic", topic, "-queues", "2", "-retry-group", group)
	require.Equal(t, 0, r.code, r.stderr)
	require.Contains(t, r.stdout, "topic "+topic+" created on cluster DefaultCluster with 2 queue(s) per broker")
	require.Contains(t, r.stdout, "topic %RETRY%"+group+" created with 1 queue")

	client, err := admin.NewAdmin(admin.WithResolver(primitive.NewPassthroughResolver([]string{ns})))
	require.NoError(t, err)
	t.Cleanup(func() { _ = client.Close() })
	mqs, err := client.FetchPublishMessageQueues(context.Background(), topic)
	require.NoError(t, err)
	require.Len(t, mqs, 2)

	t.Setenv(envNamesrv, ns)
	require.Equal(t, 0, cli(t, "topic", "create", "-topic", topic, "-queues", "2").code, "again, name server from the environment")
	require.Equal(t, 2, cli(t, "topic", "create", "-namesrv", ns).code, "no -topic")
	require.Equal(t, 2, cli(t, "topic", "delete", "-topic", topic).code, "unknown action")
	r = cli(t, "topic", "create", "-namesrv", ns, "-topic", topic, "-cluster", "Nope")
	require.Equal(t, 1, r.code)
	require.Contains(t, r.stderr, "cluster not found")
}

// TestDeadLetters drives a message to the dead-letter topic through a real consumer, then lists
// and replays it with the CLI: the hook fired and the log said so at the moment it was given up;
// the replay is applied once, and a second replay is a Duplicate.
func TestDeadLetters(t *testing.T) {
	ctx := context.Background()
	ns, _ := testenv.RocketMQServer(t)
	db := testenv.MySQL(t)
	require.NoError(t, migrations.Up(ctx, db.DB))
	_, err := db.ExecContext(ctx, `CREATE TABLE ledger (id BIGINT AUTO_INCREMENT PRIMARY KEY, body VARCHAR(64) NOT NULL)`)
	require.NoError(t, err)
	topic, group := testenv.UniqueName(t, "t"), testenv.UniqueName(t, "g")
	r := cli(t, "topic", "create", "-namesrv", ns, "-topic", topic, "-queues", "2", "-retry-group", group)
	require.Equal(t, 0, r.code, r.stderr)

	// The handler fails "poison" while the payment provider is down.
	var down atomic.Bool
	down.Store(true)
	results := &resultsByID{m: map[string][]string{}}
	p, err := txconsume.New(db, group, func(ctx context.Context, tx *sqlx.Tx, m *txconsume.Message) error {
		if string(m.Body) == "poison" && down.Load() {
			return errors.New("payment provider down")
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO ledger (body) VALUES (?)`, string(m.Body))
		return err
	}, txconsume.WithHooks(txconsume.Hooks{OnResult: results.add}))
	require.NoError(t, err)

	logs := &logLines{}
	dead := make(chan rmq.DeadLetter, 4)
	c, err := rmq.NewConsumer(p,
		rmq.WithNameServers(ns),
		rmq.WithSubscription(topic, "*"),
		rmq.WithConsumeFromWhere(consumer.ConsumeFromFirstOffset),
		rmq.WithRetryDelayLevel(1),
		rmq.WithMaxReconsumeTimes(1),
		rmq.WithLogger(slog.New(slog.NewTextHandler(logs, nil))),
		rmq.WithOnDeadLetter(func(_ context.Context, dl rmq.DeadLetter) { dead <- dl }),
	)
	require.NoError(t, err)
	require.NoError(t, c.Start())
	t.Cleanup(func() { _ = c.Shutdown(context.Background()) })

	prod, err := rocketmq.NewProducer(producer.WithNsResolver(rmq.NewResolver([]string{ns}, nil)),
		producer.WithGroupName(group+"_p"), producer.WithInstanceName(testenv.UniqueName(t, "p")))
	require.NoError(t, err)
	require.NoError(t, prod.Start())
	t.Cleanup(func() { _ = prod.Shutdown() })
	var poisonID string
	for _, body := range []string{"good-1", "poison", "good-2"} {
		m := primitive.NewMessage(topic, []byte(body))
		m.WithKeys([]string{"key-" + body})
		res, err := prod.SendSync(ctx, m)
		require.NoError(t, err)
		if body == "poison" {
			poisonID = res.MsgID
		}
	}

	var dl rmq.DeadLetter
	select {
	case dl = <-dead:
	case <-time.After(90 * time.Second):
		t.Fatalf("the poison message was not given up; log:\n%s", logs.String())
	}
	require.Equal(t, poisonID, dl.Message.ID)
	require.Equal(t, rmq.DeadLetterTopic(group), dl.Topic)
	require.ErrorContains(t, dl.Err, "payment provider down")
	require.Equal(t, []string{"failed", "failed"}, results.get(poisonID), "the first delivery and MaxReconsumeTimes=1 redelivery")
	lastAttempt := logs.find("moving it to the dead-letter topic")
	require.Len(t, lastAttempt, 1, logs.String())
	for _, want := range []string{"group=" + group, "dead_letter_topic=%DLQ%" + group, "id=" + poisonID,
		"keys=[key-poison]", "payment provider down"} {
		require.Contains(t, lastAttempt[0], want)
	}
	require.Len(t, logs.find("redelivering"), 1, "only the first failure is redelivered: %s", logs.String())

	// The broker stores the dead letter after the client sent it back: wait for list to show it.
	var list result
	require.Eventually(t, func() bool {
		list = cli(t, "dlq", "list", "-namesrv", ns, "-group", group)
		return list.code == 0 && strings.Contains(list.stdout, poisonID)
	}, 60*time.Second, 200*time.Millisecond, "dlq list: %+v", list)
	require.Contains(t, list.stdout, "1 dead letter(s) in %DLQ%"+group)
	require.Contains(t, list.stdout, topic, "the original topic")
	require.Contains(t, list.stdout, "key-poison")

	r = cli(t, "dlq", "replay", "-namesrv", ns, "-group", group, "-id", "no-such-id")
	require.Equal(t, 1, r.code)
	require.Contains(t, r.stderr, "not in the dead-letter topic: no-such-id")
	require.Equal(t, 2, cli(t, "dlq", "replay", "-namesrv", ns, "-group", group).code, "neither -id nor -all")

	down.Store(false) // the cause is fixed: replay
	r = cli(t, "dlq", "replay", "-namesrv", ns, "-group", group, "-id", poisonID)
	require.Equal(t, 0, r.code, r.stderr)
	require.Equal(t, "replayed "+poisonID+" to "+topic+"\n", r.stdout)
	require.Eventually(t, func() bool { return len(results.get(poisonID)) == 3 }, 60*time.Second, 50*time.Millisecond)
	require.Equal(t, []string{"failed", "failed", "applied"}, results.get(poisonID))

	r = cli(t, "dlq", "replay", "-namesrv", ns, "-group", group, "-all")
	require.Equal(t, 0, r.code, r.stderr)
	require.Eventually(t, func() bool { return len(results.get(poisonID)) == 4 }, 60*time.Second, 50*time.Millisecond)
	require.Equal(t, "duplicate", results.get(poisonID)[3], "a replay of an applied message is a Duplicate")

	var rows []string
	require.NoError(t, db.SelectContext(ctx, &rows, `SELECT body FROM ledger ORDER BY body`))
	require.Equal(t, []string{"good-1", "good-2", "poison"}, rows, "every message applied once")
}

// resultsByID records the outcome of every delivery per message id.
type resultsByID struct {
	mu sync.Mutex
	m  map[string][]string
}

func (r *resultsByID) add(_ context.Context, m *txconsume.Message, res txconsume.Result, err error, _ time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	name := res.String()
	if err != nil {
		name = "failed"
	}
	r.m[m.ID] = append(r.m[m.ID], name)
}

func (r *resultsByID) get(id string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.m[id]...)
}

// logLines is an io.Writer for a slog text handler that keeps the lines.
type logLines struct{ testenv.LockedBuffer }

func (l *logLines) find(s string) []string {
	var out []string
	for _, line := range strings.Split(l.String(), "\n") {
		if strings.Contains(line, s) {
			out = append(out, line)
		}
	}
	return out
}
