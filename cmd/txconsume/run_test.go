package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/txconsume/txconsume/internal/testenv"
	"github.com/txconsume/txconsume/migrations"
	"github.com/txconsume/txconsume/txconsume"
	"github.com/txconsume/txconsume/txconsume/idem"
	"github.com/txconsume/txconsume/txconsume/outbox"
)

func TestMain(m *testing.M) {
	// Every pool and client a command opens must be closed by the time it returns.
	// (The dlq tests run a RocketMQ consumer and producer, whose client leaves goroutines behind.)
	goleak.VerifyTestMain(testenv.M(m), testenv.IgnoreRocketMQClient()...)
}

type result struct {
	code           int
	stdout, stderr string
}

func cli(t *testing.T, args ...string) result {
	t.Helper()
	var out, errOut bytes.Buffer
	code := run(context.Background(), args, &out, &errOut)
	return result{code: code, stdout: out.String(), stderr: errOut.String()}
}

func TestCLI(t *testing.T) {
	ctx := context.Background()

	// setup returns a fresh database's DSN and a pool on it, migrated unless told otherwise.
	setup := func(t *testing.T, migrate bool) (string, *sql.DB) {
		dsn := testenv.MySQLDSN(t)
		db := testenv.OpenMySQL(t, dsn).DB
		if migrate {
			require.NoError(t, migrations.Up(ctx, db))
		}
		return dsn, db
	}
	count := func(t *testing.T, db *sql.DB, q string, args ...any) int {
		var n int
		require.NoError(t, db.QueryRowContext(ctx, q, args...).Scan(&n))
		return n
	}
	exec := func(t *testing.T, db *sql.DB, q string, args ...any) {
		_, err := db.ExecContext(ctx, q, args...)
		require.NoError(t, err)
	}
	dedup := func(t *testing.T, db *sql.DB, group, key string, ageHours int) {
		exec(t, db, "INSERT INTO txconsume_dedup (consumer_group, dedup_key, topic, msg_id, created_at) "+
			"VALUES (?, ?, 'orders', LEFT(?, 255), UTC_TIMESTAMP(6) - INTERVAL ? HOUR)", group, txconsume.StoredKey(key), "msg-"+key, ageHours)
	}

	t.Run("migrate up, status, down", func(t *testing.T) {
		dsn, db := setup(t, false)
		r := cli(t, "migrate", "status", "-dsn", dsn)
		require.Equal(t, 0, r.code, r.stderr)
		require.Contains(t, r.stdout, "pending  00001 00001_txconsume_dedup.sql")
		require.Contains(t, r.stdout, "0 applied, 3 pending")

		r = cli(t, "migrate", "up", "-dsn", dsn)
		require.Equal(t, 0, r.code, r.stderr)
		require.Contains(t, r.stdout, "applied  00002 00002_txconsume_idem.sql")
		require.Contains(t, r.stdout, "applied  00003 00003_txconsume_outbox.sql")
		require.Equal(t, 1, count(t, db, "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = DATABASE() AND table_name = 'txconsume_idem'"))
		require.Equal(t, 2, count(t, db, "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = DATABASE() AND table_name LIKE 'txconsume_outbox%'"))

		r = cli(t, "migrate", "-dsn", dsn, "status") // flags before the action work too
		require.Equal(t, 0, r.code, r.stderr)
		require.Contains(t, r.stdout, "3 applied, 0 pending")

		r = cli(t, "migrate", "down", "-dsn", dsn)
		require.Equal(t, 0, r.code, r.stderr)
		require.Contains(t, r.stdout, "rolled back 00003_txconsume_outbox.sql")
		require.Contains(t, r.stdout, "2 applied, 1 pending")
		require.Equal(t, 0, count(t, db, "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = DATABASE() AND table_name LIKE 'txconsume_outbox%'"))

		r = cli(t, "migrate", "down", "-dsn", dsn)
		require.Equal(t, 0, r.code, r.stderr)
		require.Contains(t, r.stdout, "rolled back 00002_txconsume_idem.sql")
		require.Contains(t, r.stdout, "1 applied, 2 pending")
		require.Equal(t, 0, count(t, db, "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = DATABASE() AND table_name = 'txconsume_idem'"))

		require.Equal(t, 0, cli(t, "migrate", "down", "-dsn", dsn).code)
		r = cli(t, "migrate", "down", "-dsn", dsn)
		require.Equal(t, 1, r.code)
		require.Contains(t, r.stderr, "nothing to roll back")
	})

	t.Run("gc deletes only old rows, in batches, and dry run deletes nothing", func(t *testing.T) {
		dsn, db := setup(t, true)
		for i, k := range []string{"a", "b", "c", "d", "e"} {
			dedup(t, db, "g", "old-"+k, 200+i)
		}
		dedup(t, db, "h", "old-x", 300)
		dedup(t, db, "g", "new-1", 1)
		dedup(t, db, "g", "edge", 167)
		// idem: one expired record, one live one.
		s := idem.NewMySQLStore(db)
		for _, id := range []string{"expired", "live"} {
			_, err := s.Acquire(ctx, idem.Key{Group: "g", Topic: "t", ID: id}, rand.Text(), time.Hour)
			require.NoError(t, err)
		}
		exec(t, db, "UPDATE txconsume_idem SET expires_at = UTC_TIMESTAMP(6) - INTERVAL 1 SECOND WHERE idem_key = 'expired'")

		r := cli(t, "gc", "-dsn", dsn, "-older-than", "168h", "-dry-run")
		require.Equal(t, 0, r.code, r.stderr)
		require.Contains(t, r.stdout, "would delete 6 dedup records older than 168h0m0s (every group)")
		require.Contains(t, r.stdout, "would delete 1 expired idem records")
		require.Equal(t, 8, count(t, db, "SELECT COUNT(*) FROM txconsume_dedup"))
		require.Equal(t, 2, count(t, db, "SELECT COUNT(*) FROM txconsume_idem"))

		r = cli(t, "gc", "-dsn", dsn, "-older-than", "168h", "-group", "h")
		require.Equal(t, 0, r.code, r.stderr)
		require.Contains(t, r.stdout, "deleted 1 dedup records older than 168h0m0s (group h) in 1 batches")
		require.NotContains(t, r.stdout, "idem", "-group leaves the idem table alone")
		require.Equal(t, 2, count(t, db, "SELECT COUNT(*) FROM txconsume_idem"))

		r = cli(t, "gc", "-dsn", dsn, "-older-than", "168h", "-batch", "2")
		require.Equal(t, 0, r.code, r.stderr)
		require.Contains(t, r.stdout, "deleted 5 dedup records older than 168h0m0s (every group) in 3 batches")
		require.Contains(t, r.stdout, "deleted 1 expired idem records")
		require.Equal(t, 2, count(t, db, "SELECT COUNT(*) FROM txconsume_dedup WHERE dedup_key IN ('new-1', 'edge')"))
		require.Equal(t, 2, count(t, db, "SELECT COUNT(*) FROM txconsume_dedup"))
		require.Equal(t, 1, count(t, db, "SELECT COUNT(*) FROM txconsume_idem WHERE idem_key = 'live'"))
		require.Equal(t, 1, count(t, db, "SELECT COUNT(*) FROM txconsume_idem"))
	})

	t.Run("gc refuses a retention below the broker's unless forced", func(t *testing.T) {
		dsn, db := setup(t, true)
		dedup(t, db, "g", "two-days", 48)
		r := cli(t, "gc", "-dsn", dsn, "-older-than", "24h")
		require.Equal(t, 2, r.code)
		require.Contains(t, r.stderr, "shorter than the broker's default retention")
		require.Equal(t, 1, count(t, db, "SELECT COUNT(*) FROM txconsume_dedup"))

		r = cli(t, "gc", "-dsn", dsn, "-older-than", "24h", "-force", "-table", "dedup")
		require.Equal(t, 0, r.code, r.stderr)
		require.Equal(t, 0, count(t, db, "SELECT COUNT(*) FROM txconsume_dedup"))
	})

	t.Run("inspect shows the dedup record and idem records in MySQL and Redis", func(t *testing.T) {
		dsn, db := setup(t, true)
		client, prefix := testenv.Redis(t)
		long := strings.Repeat("z", 300)
		dedup(t, db, "g", "k-1", 5)
		dedup(t, db, "g", long, 5)
		exec(t, db, "UPDATE txconsume_dedup SET outcome = 'discarded' WHERE dedup_key = 'k-1'")
		owner := rand.Text()
		_, err := idem.NewMySQLStore(db).Acquire(ctx, idem.Key{Group: "g", Topic: "orders", ID: "k-1"}, owner, time.Hour)
		require.NoError(t, err)
		rs := idem.NewRedisStore(client, prefix)
		_, err = rs.Acquire(ctx, idem.Key{Group: "g", Topic: "payments", ID: "k-1"}, "redis-owner", time.Hour)
		require.NoError(t, err)
		require.NoError(t, rs.MarkConsumed(ctx, idem.Key{Group: "g", Topic: "payments", ID: "k-1"}, "redis-owner", time.Hour))

		r := cli(t, "inspect", "-dsn", dsn, "-group", "g", "-key", "k-1",
			"-redis", client.Options().Addr, "-redis-prefix", prefix)
		require.Equal(t, 0, r.code, r.stderr)
		for _, want := range []string{
			"outcome     discarded", "topic       orders", "msg_id      msg-k-1", "created_at  ",
			"idem mysql: topic \"orders\"", "state       PROCESSING", "owner       " + owner,
			"idem redis: topic \"payments\"", "state       CONSUMED", "owner       redis-owner",
		} {
			require.Contains(t, r.stdout, want)
		}

		r = cli(t, "inspect", "-dsn", dsn, "-group", "g", "-key", long, "-redis", client.Options().Addr, "-redis-prefix", prefix)
		require.Equal(t, 0, r.code, r.stderr)
		require.Contains(t, r.stdout, "stored key "+txconsume.StoredKey(long))
		require.Contains(t, r.stdout, "msg_id      msg-"+long[:250])
		require.Contains(t, r.stdout, "idem mysql: no record")

		r = cli(t, "inspect", "-dsn", dsn, "-group", "other", "-key", "k-1")
		require.Equal(t, 0, r.code, r.stderr)
		require.Contains(t, r.stdout, "dedup: no record")
	})

	t.Run("release removes a PROCESSING record, not a CONSUMED one without -force", func(t *testing.T) {
		dsn, db := setup(t, true)
		s := idem.NewMySQLStore(db)
		stuck, done := idem.Key{Group: "g", Topic: "t", ID: "stuck"}, idem.Key{Group: "g", Topic: "t", ID: "done"}
		_, err := s.Acquire(ctx, stuck, "dead-owner", 24*time.Hour)
		require.NoError(t, err)
		_, err = s.Acquire(ctx, done, "o", time.Hour)
		require.NoError(t, err)
		require.NoError(t, s.MarkConsumed(ctx, done, "o", time.Hour))

		r := cli(t, "release", "-dsn", dsn, "-store", "mysql", "-group", "g", "-key", "stuck")
		require.Equal(t, 0, r.code, r.stderr)
		require.Contains(t, r.stdout, "released mysql idem record: topic \"t\"")
		require.Contains(t, r.stdout, "owner       dead-owner")
		a, err := s.Acquire(ctx, stuck, "next", time.Hour)
		require.NoError(t, err)
		require.Equal(t, idem.Acquired, a.State, "the next delivery can process the key")

		r = cli(t, "release", "-dsn", dsn, "-store", "mysql", "-group", "g", "-key", "done", "-topic", "t")
		require.Equal(t, 1, r.code)
		require.Contains(t, r.stderr, "the record is CONSUMED, not PROCESSING: nothing removed")
		require.Empty(t, r.stdout)
		require.Equal(t, 1, count(t, db, "SELECT COUNT(*) FROM txconsume_idem WHERE idem_key = 'done'"))

		r = cli(t, "release", "-dsn", dsn, "-store", "mysql", "-group", "g", "-key", "done", "-force")
		require.Equal(t, 0, r.code, r.stderr)
		require.Contains(t, r.stdout, "state       CONSUMED")
		require.Equal(t, 0, count(t, db, "SELECT COUNT(*) FROM txconsume_idem WHERE idem_key = 'done'"))

		r = cli(t, "release", "-dsn", dsn, "-store", "mysql", "-group", "g", "-key", "absent")
		require.Equal(t, 1, r.code)
		require.Contains(t, r.stderr, "no mysql idem record")
	})

	t.Run("release in Redis", func(t *testing.T) {
		client, prefix := testenv.Redis(t)
		addr := client.Options().Addr
		s := idem.NewRedisStore(client, prefix)
		k := idem.Key{Group: "g", Topic: "t", ID: "stuck"}
		_, err := s.Acquire(ctx, k, "dead-owner", 24*time.Hour)
		require.NoError(t, err)
		// A second topic makes the key ambiguous without -topic.
		_, err = s.Acquire(ctx, idem.Key{Group: "g", Topic: "t2", ID: "stuck"}, "o2", time.Hour)
		require.NoError(t, err)
		require.NoError(t, s.MarkConsumed(ctx, idem.Key{Group: "g", Topic: "t2", ID: "stuck"}, "o2", time.Hour))

		r := cli(t, "release", "-store", "redis", "-redis", addr, "-redis-prefix", prefix, "-group", "g", "-key", "stuck")
		require.Equal(t, 2, r.code)
		require.Contains(t, r.stderr, `several topics ("t", "t2")`)

		r = cli(t, "release", "-store", "redis", "-redis", addr, "-redis-prefix", prefix, "-group", "g", "-key", "stuck", "-topic", "t2")
		require.Equal(t, 1, r.code)
		require.Contains(t, r.stderr, "CONSUMED, not PROCESSING")

		r = cli(t, "release", "-store", "redis", "-redis", addr, "-redis-prefix", prefix, "-group", "g", "-key", "stuck", "-topic", "t")
		require.Equal(t, 0, r.code, r.stderr)
		require.Contains(t, r.stdout, "owner       dead-owner")
		a, err := s.Acquire(ctx, k, "next", time.Hour)
		require.NoError(t, err)
		require.Equal(t, idem.Acquired, a.State)
		a, err = s.Acquire(ctx, idem.Key{Group: "g", Topic: "t2", ID: "stuck"}, "x", time.Hour)
		require.NoError(t, err)
		require.Equal(t, idem.Consumed, a.State, "the other topic's record is untouched")
	})

	t.Run("forget requires -yes and then re-opens the key", func(t *testing.T) {
		dsn, db := setup(t, true)
		sdb := testenv.OpenMySQL(t, dsn)
		applied := 0
		p, err := txconsume.New(sdb, "g", func(context.Context, *sqlx.Tx, *txconsume.Message) error {
			applied++
			return nil
		})
		require.NoError(t, err)
		m := &txconsume.Message{ID: "m-1", Topic: "orders"}
		_, err = p.Process(ctx, m)
		require.NoError(t, err)

		r := cli(t, "forget", "-dsn", dsn, "-group", "g", "-key", "m-1")
		require.Equal(t, 2, r.code)
		require.Contains(t, r.stderr, "add -yes to confirm")
		require.Equal(t, 1, count(t, db, "SELECT COUNT(*) FROM txconsume_dedup"))

		r = cli(t, "forget", "-dsn", dsn, "-group", "g", "-key", "m-1", "-yes")
		require.Equal(t, 0, r.code, r.stderr)
		require.Contains(t, r.stdout, `deleted dedup record of group "g" key "m-1"`)
		require.Contains(t, r.stdout, "outcome     applied")
		require.Equal(t, 0, count(t, db, "SELECT COUNT(*) FROM txconsume_dedup"))

		res, err := p.Process(ctx, m)
		require.NoError(t, err)
		require.Equal(t, txconsume.Applied, res)
		require.Equal(t, 2, applied, "forgotten: the redelivery was applied again")

		require.NoError(t, db.Close())
		r = cli(t, "forget", "-dsn", dsn, "-group", "g", "-key", "absent", "-yes")
		require.Equal(t, 1, r.code)
		require.Contains(t, r.stderr, "nothing deleted")
	})

	t.Run("outbox status shows the backlog per topic and fails past -max-age", func(t *testing.T) {
		dsn, db := setup(t, true)
		r := cli(t, "outbox", "status", "-dsn", dsn)
		require.Equal(t, 0, r.code, r.stderr)
		require.Equal(t, "the outbox is empty\n", r.stdout)

		tx, err := sqlx.NewDb(db, "mysql").Beginx()
		require.NoError(t, err)
		msg := func(topic string) outbox.Message { return outbox.Message{Topic: topic, Body: []byte("x")} }
		require.NoError(t, outbox.Enqueue(ctx, tx, msg("orders"), msg("orders"), msg("payments")))
		require.NoError(t, tx.Commit())
		exec(t, db, "UPDATE txconsume_outbox SET created_at = UTC_TIMESTAMP(6) - INTERVAL 90 SECOND WHERE topic = 'orders'")
		exec(t, db, "UPDATE txconsume_outbox SET sent_at = UTC_TIMESTAMP(6) WHERE topic = 'payments'")

		r = cli(t, "outbox", "status", "-dsn", dsn)
		require.Equal(t, 0, r.code, r.stderr)
		lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
		require.Len(t, lines, 3, r.stdout)
		require.Equal(t, []string{"TOPIC", "PENDING", "OLDEST", "PENDING", "KEPT"}, strings.Fields(lines[0]))
		orders := strings.Fields(lines[1])
		require.Equal(t, "orders", orders[0])
		require.Equal(t, "2", orders[1])
		age, err := time.ParseDuration(orders[2])
		require.NoError(t, err)
		require.InDelta(t, 90*time.Second, age, float64(30*time.Second))
		require.Equal(t, "0", orders[3])
		require.Equal(t, []string{"payments", "0", "0s", "1"}, strings.Fields(lines[2]))

		r = cli(t, "outbox", "status", "-dsn", dsn, "-max-age", "1m")
		require.Equal(t, 1, r.code)
		require.Contains(t, r.stderr, "pending messages older than 1m0s in 1 topic(s): [orders]")
		require.Equal(t, 0, cli(t, "outbox", "status", "-dsn", dsn, "-max-age", "5m").code)
	})

	t.Run("outbox status without the schema says what to do", func(t *testing.T) {
		dsn, _ := setup(t, false)
		r := cli(t, "outbox", "status", "-dsn", dsn)
		require.Equal(t, 1, r.code)
		require.Contains(t, r.stderr, "txconsume migrate up")
	})

	t.Run("bad usage exits 2 with a message", func(t *testing.T) {
		t.Setenv(envDSN, "")
		t.Setenv(envRedis, "")
		for _, tc := range []struct {
			args []string
			want string
		}{
			{nil, "no command given"},
			{[]string{"frobnicate"}, `unknown command "frobnicate"`},
			{[]string{"migrate"}, "missing action"},
			{[]string{"migrate", "sideways", "-dsn", "x@tcp(127.0.0.1:1)/db"}, `unknown action "sideways"`},
			{[]string{"migrate", "status"}, "no database: set -dsn or TXCONSUME_MYSQL_DSN"},
			{[]string{"gc", "-older-than", "soon"}, "invalid value"},
			{[]string{"gc", "-batch", "0"}, "-batch must be 1 to 10000"},
			{[]string{"gc", "-table", "all", "-group", "g"}, "-group applies to the dedup table only"},
			{[]string{"gc", "-table", "nope"}, `unknown -table "nope"`},
			{[]string{"gc", "extra"}, `unexpected argument "extra"`},
			{[]string{"inspect", "-group", "g"}, "-key is required"},
			{[]string{"inspect", "-nope"}, "flag provided but not defined: -nope"},
			{[]string{"release", "-group", "g", "-key", "k"}, "-store is required"},
			{[]string{"release", "-group", "g", "-key", "k", "-store", "disk"}, `unknown -store "disk"`},
			{[]string{"release", "-group", "g", "-key", "k", "-store", "redis"}, "no Redis: set -redis or TXCONSUME_REDIS_ADDR"},
			{[]string{"forget", "-group", "g", "-key", "k"}, "add -yes to confirm"},
			{[]string{"outbox"}, "want: txconsume outbox status"},
			{[]string{"outbox", "list"}, "want: txconsume outbox status"},
			{[]string{"outbox", "status", "-max-age", "-1s"}, "-max-age must not be negative"},
		} {
			r := cli(t, tc.args...)
			require.Equal(t, 2, r.code, "%v: %s", tc.args, r.stderr)
			require.Contains(t, r.stderr, tc.want, "%v", tc.args)
			require.Empty(t, r.stdout, "%v", tc.args)
		}
	})

	t.Run("help exits 0", func(t *testing.T) {
		r := cli(t, "help")
		require.Equal(t, 0, r.code)
		require.Contains(t, r.stdout, "forget   DANGEROUS")
		for _, c := range commands() {
			r := cli(t, c.name, "-h")
			require.Equal(t, 0, r.code, c.name)
			require.Contains(t, r.stderr, "Usage: txconsume "+c.name)
			if dsn := os.Getenv(envDSN); dsn != "" {
				require.NotContains(t, r.stderr, dsn, "-h must not print the DSN (and its password) from the environment")
			}
		}
		r = cli(t, "help", "gc")
		require.Equal(t, 0, r.code)
		require.Contains(t, r.stderr, "RE-OPENS ITS KEY")
	})

	t.Run("an unreachable database is a failure, exit 1", func(t *testing.T) {
		r := cli(t, "migrate", "status", "-dsn", "u:p@tcp(127.0.0.1:1)/db?timeout=2s")
		require.Equal(t, 1, r.code)
		require.Contains(t, r.stderr, "connect to MySQL")
	})
}
