package chaos

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/apache/rocketmq-client-go/v2/primitive"
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
	cycles := form(1, 5)
	perCycle := form(1200, 1200)
	st := s.startStream(perCycle*cycles, 150)
	for c := 1; c <= cycles; c++ {
		st.waitSent(perCycle*(c-1) + perCycle/3)
		if c%2 == 1 {
			db.Kill(t)
		} else {
			db.Stop(t)
		}
		time.Sleep(time.Duration(1000+s.rng.IntN(form(1000, 9000))) * time.Millisecond)
		s.awaitRecovery("database restart", s.restart(db), 2*time.Minute)
	}
	st.stop()
	s.settle(3 * time.Minute)
	s.finish()
}

// TestConnectionsKilled: the consumer's database connections are killed (KILL CONNECTION) while it
// consumes: at random, and hunted at the moment their transaction commits. A transaction killed
// before COMMIT rolls back and its message comes again; one killed during COMMIT may have
// committed or not, and its redelivery finds out (Duplicate or Applied).
func TestConnectionsKilled(t *testing.T) {
	parallel(t)
	s := newScenario(t, "connections killed", scenarioConfig{})
	s.startWorker("c1", s.spec())
	st := s.startStream(form(1500, 6000), 150)
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
	end := time.Now()
	s.note("%d connections killed at random, %d during COMMIT", random, atCommit)
	if atCommit == 0 {
		t.Errorf("chaos: no connection was killed during COMMIT: the scenario did not test what it says")
	}
	s.awaitRecovery("connections killed", end, 2*time.Minute)
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
		time.Sleep(2 * time.Millisecond)
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
	st := s.startStream(form(900, 3000), 150)
	st.waitSent(form(300, 1000))
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
		replay.Queue = queues[i%len(queues)]
		replay.WithProperty(queueProperty, queueLabel(replay.Queue))
		res, err := s.prod.SendSync(ctx, replay)
		require.NoError(t, err)
		require.Equal(t, primitive.SendOK, res.Status)
	}
	s.note("%d messages dead-lettered during the outage, replayed", len(letters))
	s.forgetDeadLetters()
	s.settle(3 * time.Minute)
	s.finish()
}
