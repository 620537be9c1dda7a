package chaos

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/apache/rocketmq-client-go/v2/primitive"
	"github.com/go-sql-driver/mysql"
	"github.com/jmoiron/sqlx"
	"github.com/stretchr/testify/require"

	"github.com/txconsume/txconsume/internal/testenv"
	"github.com/txconsume/txconsume/txconsume/rmq"
)

// TestDatabaseRestart: the database server is killed (SIGKILL) or stopped (SIGTERM) and started
// again while a stream is consumed. Deliveries fail while it is down (and come back through the
// retry topic); none is applied twice, none is lost.
func TestDatabaseRestart(t *testing.T) {
	parallel(t)
	db := testenv.PrivateDatabase(t)
	s := newScenario(t, "database restart", scenarioConfig{ledgerDSN: testenv.PrivateDatabaseDSN(t, db)})
	s.startWorker("c1", s.spec())
	s.restartCycles(db, form(1, 5))
}

// TestConnectionsKilled: the consumer's database connections are killed while it consumes: by the
// server (KILL CONNECTION) at random and hunted at the moment their transaction commits, then by a
// proxy between consumer and server right after the consumer sent COMMIT. A transaction killed
// before COMMIT rolls back and its message comes again; one killed during or after COMMIT may have
// committed or not (txconsume.ErrCommitUnknown), and running it again finds out (Duplicate or
// Applied).
func TestConnectionsKilled(t *testing.T) {
	parallel(t)
	s := newScenario(t, "connections killed", scenarioConfig{})
	proxy := testenv.StartProxy(t, dsnAddr(t, s.cfg.ledgerDSN))
	spec := s.spec()
	spec.DSN = dsnThrough(t, spec.DSN, proxy.Addr())
	s.startWorker("c1", spec)
	st := s.startStream(form(1200, 6000), rate())
	st.waitSent(form(300, 600))

	// The killer works on a connection of its own, on the same server, and only kills connections
	// to this scenario's database: other tests share the server.
	killer := testenv.OpenMySQL(t, testenv.MySQLDSN(t))
	var dbName string
	if err := s.ledger.Get(&dbName, `SELECT DATABASE()`); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), form(8*time.Second, 40*time.Second))
	defer cancel()
	random, atCommit := killConnections(ctx, killer, dbName, s)
	s.awaitRecovery("connections killed", time.Now(), 2*time.Minute)
	cut := cutAfterCommits(t, proxy, form(20, 200))
	s.awaitRecovery("connections cut after COMMIT", time.Now(), 2*time.Minute)
	s.note("%d connections killed at random, %d during COMMIT, %d cut by the proxy after COMMIT", random, atCommit, cut)
	if atCommit == 0 {
		t.Errorf("chaos: no connection was killed during COMMIT: the scenario did not test what it says")
	}
	st.stop()
	s.settle(3 * time.Minute)
	s.finish()
}

// killConnections kills connections to database dbName until ctx ends: every 200ms one at random,
// and in between, any connection the server shows executing COMMIT. It returns how many
// connections of each kind it killed.
func killConnections(ctx context.Context, killer *sqlx.DB, dbName string, s *scenario) (random, atCommit int) {
	type conn struct {
		ID   int64  `db:"id"`
		Info string `db:"info"`
	}
	nextRandom := time.Now()
	killed := map[int64]bool{} // a killed connection shows in the process list until it notices
	kill := func(id int64) bool {
		if killed[id] {
			return false
		}
		_, err := killer.ExecContext(ctx, fmt.Sprintf("KILL CONNECTION %d", id))
		killed[id] = err == nil
		return err == nil
	}
	for ctx.Err() == nil {
		var conns []conn
		err := killer.SelectContext(ctx, &conns, `SELECT id, COALESCE(info, '') AS info
			FROM information_schema.processlist WHERE db = ? AND id <> CONNECTION_ID()`, dbName)
		if err != nil {
			continue
		}
		for _, c := range conns {
			if c.Info == "COMMIT" && kill(c.ID) {
				atCommit++
			}
		}
		if time.Now().After(nextRandom) && len(conns) > 0 {
			if kill(conns[s.rng.IntN(len(conns))].ID) {
				random++
			}
			nextRandom = time.Now().Add(200 * time.Millisecond)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return random, atCommit
}

// TestDatabaseOutageDeadLetters: a database outage longer than the redelivery budget. A delivery
// waits out an outage in place for WithOutageRetry, then goes back to the broker and spends one
// redelivery; with a short budget (here 1s of waiting, 2 redeliveries 1s apart) messages are given
// up to the dead-letter topic while the database is down: visibly (the consumer logs each and calls
// WithOnDeadLetter), and nothing is lost. Replayed once the database is back (what `txconsume dlq
// replay` does), each is applied exactly once.
func TestDatabaseOutageDeadLetters(t *testing.T) {
	parallel(t)
	db := testenv.PrivateDatabase(t)
	s := newScenario(t, "database down past the redelivery budget", scenarioConfig{ledgerDSN: testenv.PrivateDatabaseDSN(t, db)})
	spec := s.spec()
	spec.MaxReconsume = 2
	spec.OutageRetry = "1s"
	s.startWorker("c1", spec)
	st := s.startStream(form(600, 3000), rate())
	st.waitSent(form(200, 1000))
	db.Kill(t)
	time.Sleep(form(10*time.Second, 20*time.Second))
	s.awaitRecovery("database restart", s.restart(db), 2*time.Minute)
	st.stop()
	s.settle(3 * time.Minute)

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var letters []*primitive.MessageExt
	for len(letters) < s.deadLettered() {
		var err error
		letters, err = s.admin.DeadLetters(ctx, s.group, 100000)
		if err != nil && !errors.Is(err, rmq.ErrTopicNotFound) {
			t.Fatal(err)
		}
		if ctx.Err() != nil {
			t.Fatalf("chaos: %d dead letters in %%DLQ%%%s, %d reported by the consumer", len(letters), s.group, s.deadLettered())
		}
		time.Sleep(200 * time.Millisecond)
	}
	if len(letters) == 0 {
		t.Fatalf("chaos: the outage gave up no message: the scenario did not test what it says")
	}
	queues := s.topicQueues()
	for i, m := range letters {
		replay, err := rmq.ReplayMessage(m)
		require.NoError(t, err)
		q := queues[i%len(queues)]
		replay.WithProperty(queueProperty, queueLabel(q))
		_, err = s.prod.send(replay.Topic, replay.Body, replay.GetProperties(), q)
		require.NoError(t, err)
	}
	s.note("%d messages dead-lettered during the outage, replayed", len(letters))
	s.forgetDeadLetters()
	s.settle(3 * time.Minute)
	s.finish()
}

// cutAfterCommits has the proxy cut n connections, one at a time, right after the consumer sent
// COMMIT on them: the server commits, the consumer never hears it. It returns how many it cut.
func cutAfterCommits(t *testing.T, proxy *testenv.Proxy, n int) int {
	cut := 0
	for range n {
		tr := proxy.CutAfterClientSends(testenv.MySQLCommitPacket)
		select {
		case <-tr.Fired():
			cut++
		case <-time.After(30 * time.Second):
			if !tr.Disarm() {
				t.Fatalf("chaos: no COMMIT passed the proxy in 30s (%d cut so far)", cut)
			}
			cut++
		}
	}
	return cut
}

// dsnAddr returns the host:port of a DSN.
func dsnAddr(t *testing.T, dsn string) string {
	cfg, err := mysql.ParseDSN(dsn)
	require.NoError(t, err)
	return cfg.Addr
}

// dsnThrough returns dsn with its address replaced by addr (a proxy's), and the parameters given
// ("a=1&b=2") added.
func dsnThrough(t *testing.T, dsn, addr string, params ...string) string {
	cfg, err := mysql.ParseDSN(dsn)
	require.NoError(t, err)
	cfg.Addr = addr
	out := cfg.FormatDSN()
	for _, p := range params {
		out = testenv.DSNWithParams(out, p)
	}
	return out
}

// TestDatabaseUnreachable: the database stops answering without closing any connection (a network
// partition, a frozen server) for a while, through a proxy between consumer and server that holds
// every byte, then forwards them again. With the DSN as most are written, without I/O timeouts,
// queries wait the partition out: the consumer stops, says so (WithStallWarning), and resumes when
// the partition heals. With readTimeout and writeTimeout in the DSN, queries fail instead, the
// deliveries wait out the outage in place (WithOutageRetry) and resume when it heals. In the long
// form, some partitions also cut every connection.
func TestDatabaseUnreachable(t *testing.T) {
	parallel(t)
	run := func(t *testing.T, name string, params []string, logged string) {
		s := newScenario(t, name, scenarioConfig{})
		proxy := testenv.StartProxy(t, dsnAddr(t, s.cfg.ledgerDSN))
		spec := s.spec()
		spec.DSN = dsnThrough(t, spec.DSN, proxy.Addr(), params...)
		spec.StallWarning = "2s"
		s.startWorker("c1", spec)
		cycles := form(1, 3)
		perCycle := form(600, 1500)
		st := s.startStream(perCycle*cycles, rate())
		for c := 1; c <= cycles; c++ {
			st.waitSent(perCycle*(c-1) + perCycle/3)
			proxy.Blackhole()
			if config().long && c%2 == 0 {
				proxy.CutAll()
			}
			time.Sleep(time.Duration(form(6000, 5000+s.rng.IntN(25000))) * time.Millisecond)
			proxy.Forward()
			s.awaitRecovery(name, time.Now(), 2*time.Minute)
		}
		st.stop()
		s.settle(3 * time.Minute)
		s.requireLogged(logged)
		s.finish()
	}
	t.Run("no I/O timeouts", func(t *testing.T) {
		run(t, "database unreachable (DSN without timeouts)", nil, "rmq: delivery stalled")
	})
	t.Run("with I/O timeouts", func(t *testing.T) {
		run(t, "database unreachable (DSN with timeouts)", []string{"readTimeout=2s&writeTimeout=2s&timeout=2s"},
			"rmq: database unreachable; deliveries wait and are retried in place")
	})
}
