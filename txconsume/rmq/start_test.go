package rmq_test

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/apache/rocketmq-client-go/v2/consumer"
	"github.com/apache/rocketmq-client-go/v2/primitive"
	"github.com/apache/rocketmq-client-go/v2/producer"
	"github.com/jmoiron/sqlx"
	"github.com/stretchr/testify/require"

	"github.com/txconsume/txconsume/internal/testenv"
	"github.com/txconsume/txconsume/migrations"
	"github.com/txconsume/txconsume/txconsume"
	"github.com/txconsume/txconsume/txconsume/idem"
	"github.com/txconsume/txconsume/txconsume/rmq"
)

// TestRMQStartFailsFast: Start checks what every delivery would otherwise fail on, and says the
// real cause; a consumer that passes the checks consumes.
func TestRMQStartFailsFast(t *testing.T) {
	ctx := context.Background()
	// setup returns a migrated database, a processor on it that counts applied messages, and the
	// test's topic.
	setup := func(t *testing.T, migrate bool) (*sqlx.DB, *txconsume.Processor, *testenv.RocketMQ, *atomic.Int64) {
		db := testenv.MySQL(t)
		if migrate {
			require.NoError(t, migrations.Up(ctx, db.DB))
		}
		mq := testenv.NewRocketMQ(t)
		var applied atomic.Int64
		p, err := txconsume.New(db, mq.Group, func(context.Context, *sqlx.Tx, *txconsume.Message) error { return nil },
			txconsume.WithHooks(txconsume.Hooks{OnResult: func(_ context.Context, _ *txconsume.Message, r txconsume.Result, err error, _ time.Duration) {
				if err == nil && r == txconsume.Applied {
					applied.Add(1)
				}
			}}))
		require.NoError(t, err)
		return db, p, mq, &applied
	}
	start := func(t *testing.T, p rmq.Processor, opts ...rmq.Option) (*rmq.Consumer, error) {
		opts = append([]rmq.Option{quiet, rmq.WithConsumeFromWhere(consumer.ConsumeFromFirstOffset)}, opts...)
		c, err := rmq.NewConsumer(p, opts...)
		require.NoError(t, err)
		err = c.Start()
		t.Cleanup(func() { _ = c.Shutdown(context.Background()) })
		return c, err
	}

	t.Run("a schema nobody migrated", func(t *testing.T) {
		_, p, mq, _ := setup(t, false)
		_, err := start(t, p, rmq.WithNameServers(mq.NameServer), rmq.WithSubscription(mq.Topic, "*"))
		require.ErrorIs(t, err, migrations.ErrNotMigrated)
		require.ErrorContains(t, err, "txconsume migrate up")
		require.ErrorContains(t, err, mq.Group)
	})
	t.Run("a name server port nothing listens on", func(t *testing.T) {
		_, p, mq, _ := setup(t, true)
		addr := closedAddr(t)
		_, err := start(t, p, rmq.WithNameServers(addr), rmq.WithSubscription(mq.Topic, "*"))
		require.ErrorIs(t, err, rmq.ErrNameServerUnreachable)
		require.ErrorContains(t, err, addr)
		require.ErrorContains(t, err, "connection refused")
	})
	t.Run("a topic nobody created", func(t *testing.T) {
		_, p, mq, _ := setup(t, true)
		_, err := start(t, p, rmq.WithNameServers(mq.NameServer), rmq.WithSubscription(mq.Topic+"_missing", "*"))
		require.ErrorIs(t, err, rmq.ErrTopicNotFound)
		require.ErrorContains(t, err, mq.Topic+"_missing")
		require.ErrorContains(t, err, "txconsume topic create")
	})
	t.Run("a host name for the name server consumes", func(t *testing.T) {
		_, p, mq, applied := setup(t, true)
		_, port, err := net.SplitHostPort(mq.NameServer)
		require.NoError(t, err)
		byName := net.JoinHostPort("localhost", port)
		c, err := start(t, p, rmq.WithNameServers(byName), rmq.WithSubscription(mq.Topic, "*"))
		require.NoError(t, err)
		require.NoError(t, c.Check(ctx), "Check passes on a healthy consumer")

		prod := mq.StartProducer(t, producer.WithNsResolver(rmq.NewResolver([]string{byName}, nil)))
		_, err = prod.SendSync(ctx, primitive.NewMessage(mq.Topic, []byte("hello")))
		require.NoError(t, err)
		require.Eventually(t, func() bool { return applied.Load() == 1 }, 60*time.Second, 50*time.Millisecond)
	})
	t.Run("an unknown host name is said so", func(t *testing.T) {
		_, p, mq, _ := setup(t, true)
		_, err := start(t, p, rmq.WithNameServers("no-such-host.invalid:9876"), rmq.WithSubscription(mq.Topic, "*"))
		require.ErrorIs(t, err, rmq.ErrNameServerUnreachable)
		require.ErrorContains(t, err, "no-such-host.invalid")
	})
}

func closedAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	require.NoError(t, l.Close())
	return addr
}

// TestRMQOneGroup: the consumer takes its group from the Processor, and refuses another name.
func TestRMQOneGroup(t *testing.T) {
	db := testenv.MySQL(t)
	p, err := txconsume.New(db, "wallet-A", func(context.Context, *sqlx.Tx, *txconsume.Message) error { return nil })
	require.NoError(t, err)
	base := []rmq.Option{rmq.WithNameServers("127.0.0.1:9876"), rmq.WithSubscription("t", "*")}

	c, err := rmq.NewConsumer(p, base...)
	require.NoError(t, err)
	require.Equal(t, "wallet-A", c.Group())

	c, err = rmq.NewConsumer(p, append(base, rmq.WithGroup("wallet-A"))...)
	require.NoError(t, err)
	require.Equal(t, "wallet-A", c.Group())

	_, err = rmq.NewConsumer(p, append(base, rmq.WithGroup("wallet-B"))...)
	require.ErrorContains(t, err, `WithGroup("wallet-B") differs from the Processor's group "wallet-A"`)

	store, prefix := testenv.Redis(t)
	q, err := idem.New(idem.NewRedisStore(store, prefix), "mailer", func(context.Context, *txconsume.Message) error { return nil })
	require.NoError(t, err)
	_, err = rmq.NewConsumer(q, append(base, rmq.WithGroup("billing"))...)
	require.ErrorContains(t, err, `differs from the Processor's group "mailer"`)
}

// TestRMQDiscardLoggedOnce: with the processors of this module, a discard is one line, the
// listener's, with the group and the handler's reason; the processor's own logger stays quiet.
func TestRMQDiscardLoggedOnce(t *testing.T) {
	ctx := context.Background()
	poison := errors.New("amount is negative")
	db := testenv.MySQL(t)
	require.NoError(t, migrations.Up(ctx, db.DB))
	store, prefix := testenv.Redis(t)
	for name, newProcessor := range map[string]func(log *slog.Logger) rmq.Processor{
		"transactional": func(log *slog.Logger) rmq.Processor {
			p, err := txconsume.New(db, "ledger", func(context.Context, *sqlx.Tx, *txconsume.Message) error {
				return txconsume.Discard(poison)
			}, txconsume.WithLogger(log))
			require.NoError(t, err)
			return p
		},
		"status mode": func(log *slog.Logger) rmq.Processor {
			p, err := idem.New(idem.NewRedisStore(store, prefix), "ledger", func(context.Context, *txconsume.Message) error {
				return txconsume.Discard(poison)
			}, idem.WithLogger(log))
			require.NoError(t, err)
			return p
		},
	} {
		t.Run(name, func(t *testing.T) {
			processorLogs, listenerLogs := &logRecords{}, &logRecords{}
			l := rmq.Listener(newProcessor(slog.New(processorLogs)), rmq.WithLogger(slog.New(listenerLogs)))
			cctx, _ := concurrentCtx()
			res, err := l(cctx, ext("poison-"+strings.ReplaceAll(name, " ", "-")))
			require.NoError(t, err)
			require.Equal(t, consumer.ConsumeSuccess, res)
			require.Empty(t, processorLogs.all())
			lines := listenerLogs.all()
			require.Len(t, lines, 1, lines)
			require.Contains(t, lines[0], "WARN rmq: message discarded group=ledger")
			require.Contains(t, lines[0], "reason=txconsume: discarded: amount is negative")
		})
	}
}
