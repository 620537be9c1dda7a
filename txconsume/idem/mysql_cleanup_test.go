package idem_test

import (
	"context"
	"crypto/rand"
	"database/sql"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/txconsume/txconsume/internal/testenv"
	"github.com/txconsume/txconsume/txconsume/idem"
)

func TestMySQLStoreCleanup(t *testing.T) {
	ctx := context.Background()
	_, db := setupMySQL(t)
	s := idem.NewMySQLStore(db)
	key := func(i int) idem.Key { return idem.Key{Group: "g", Topic: "t", ID: fmt.Sprintf("k-%d", i)} }
	rows := func() int {
		var n int
		require.NoError(t, db.QueryRowContext(ctx, "SELECT COUNT(*) FROM txconsume_idem").Scan(&n))
		return n
	}

	// 0-2: CONSUMED with a short retention; 3-4: PROCESSING with a short TTL (crashed attempts);
	// 5: CONSUMED for an hour; 6: PROCESSING for an hour.
	for i := range 7 {
		o := rand.Text()
		ttl := 200 * time.Millisecond
		if i >= 5 {
			ttl = time.Hour
		}
		a, err := s.Acquire(ctx, key(i), o, ttl)
		require.NoError(t, err)
		require.Equal(t, idem.Acquired, a.State)
		if i <= 2 || i == 5 {
			require.NoError(t, s.MarkConsumed(ctx, key(i), o, ttl))
		}
	}
	require.Equal(t, 7, rows())

	var deleted int64
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		n, err := s.Cleanup(ctx, 2) // batches of 2: several statements
		require.NoError(c, err)
		deleted += n
		require.EqualValues(c, 5, deleted)
	}, 15*time.Second, 50*time.Millisecond)
	require.Equal(t, 2, rows(), "live records are kept")

	for i, want := range map[int]idem.State{5: idem.Consumed, 6: idem.InProgress} {
		a, err := s.Acquire(ctx, key(i), rand.Text(), time.Hour)
		require.NoError(t, err)
		require.Equal(t, want, a.State)
	}
	n, err := s.Cleanup(ctx, 0)
	require.NoError(t, err)
	require.Zero(t, n)
	_, err = s.Cleanup(ctx, idem.MaxCleanupBatch+1)
	require.ErrorContains(t, err, "batch must be at most 10000")
}

// A record that expired and was taken over between a cleanup batch's read and its delete is
// the new holder's: the delete checks the expiry again and keeps it.
func TestMySQLStoreCleanupKeepsTakenOverRecords(t *testing.T) {
	ctx := context.Background()
	_, db := setupMySQL(t)
	s := idem.NewMySQLStore(db)
	for _, id := range []string{"a", "b"} {
		a, err := s.Acquire(ctx, idem.Key{Group: "g", Topic: "t", ID: id}, rand.Text(), time.Millisecond)
		require.NoError(t, err)
		require.Equal(t, idem.Acquired, a.State)
	}
	var q string
	var args []any
	require.EventuallyWithT(t, func(c *assert.CollectT) { // both expired on the database clock
		var err error
		q, args, err = s.CleanupStatement(ctx, 10)
		require.NoError(c, err)
		require.Contains(c, args[0], `"61"`) // hex of "a"
		require.Contains(c, args[0], `"62"`)
	}, 15*time.Second, 20*time.Millisecond)

	a, err := s.Acquire(ctx, idem.Key{Group: "g", Topic: "t", ID: "a"}, rand.Text(), time.Hour)
	require.NoError(t, err)
	require.Equal(t, idem.Acquired, a.State, "the expired record is taken over")

	res, err := db.ExecContext(ctx, q, args...)
	require.NoError(t, err)
	n, err := res.RowsAffected()
	require.NoError(t, err)
	require.EqualValues(t, 1, n, "only b is still expired")
	a, err = s.Acquire(ctx, idem.Key{Group: "g", Topic: "t", ID: "a"}, rand.Text(), time.Hour)
	require.NoError(t, err)
	require.Equal(t, idem.InProgress, a.State, "the new holder's record is kept")
}

func TestMySQLStoreRejectsLongNames(t *testing.T) {
	_, db := setupMySQL(t)
	s := idem.NewMySQLStore(db)
	long := string(make([]byte, idem.MySQLMaxNameLen+1))
	_, err := s.Acquire(context.Background(), idem.Key{Group: long, Topic: "t", ID: "k"}, rand.Text(), time.Minute)
	require.ErrorIs(t, err, idem.ErrKeyTooLong)
}

// Cleanup must never make Acquire wait: not for the largest batch, whose plan must stay a
// primary-key lookup, and not at the end of the expired rows, where a DELETE that walks the
// expires_at index would lock the gap into which new records go.
func TestMySQLStoreCleanupLocking(t *testing.T) {
	ctx := context.Background()

	// setup stores expired records and live ones (CONSUMED for another hour), three groups
	// interleaved so that a batch is spread over the primary key.
	setup := func(t *testing.T, expired, live int) (string, *sql.DB, *idem.MySQLStore) {
		dsn, db := setupMySQL(t)
		insert := func(prefix string, n int, expires string) {
			testenv.InsertRows(t, db, "INSERT INTO txconsume_idem (consumer_group, topic, idem_key, status, owner, expires_at, updated_at) VALUES", n,
				func(i int) string {
					return fmt.Sprintf("('g%d', 't', '%s-%05d', 2, 'o', %s, UTC_TIMESTAMP(6))", i%3, prefix, i, expires)
				})
		}
		insert("expired", expired, "UTC_TIMESTAMP(6) - INTERVAL 1 HOUR")
		insert("live", live, "UTC_TIMESTAMP(6) + INTERVAL 1 HOUR")
		_, err := db.ExecContext(ctx, "ANALYZE TABLE txconsume_idem")
		require.NoError(t, err)
		return dsn, db, idem.NewMySQLStore(db)
	}

	t.Run("the largest batch deletes by primary key", func(t *testing.T) {
		_, db, s := setup(t, idem.MaxCleanupBatch+2000, 9000) // 21,000 rows
		q, args, err := s.CleanupStatement(ctx, idem.MaxCleanupBatch)
		require.NoError(t, err)
		testenv.RequirePrimaryKeyReads(t, testenv.Explain(t, db, q, args...), "txconsume_idem")
	})

	for _, tc := range []struct {
		name           string
		expired, batch int
	}{
		{"an uncommitted last batch does not block Acquire of new keys", 500, idem.DefaultCleanupBatch},
		{"an uncommitted largest batch does not block Acquire of new keys", idem.MaxCleanupBatch + 2000, idem.MaxCleanupBatch},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dsn, db, s := setup(t, tc.expired, 1000)
			q, args, err := s.CleanupStatement(ctx, tc.batch)
			require.NoError(t, err)
			tx, n := testenv.ExecOpen(t, db, q, args...)
			require.EqualValues(t, min(tc.expired, tc.batch), n)

			// An Acquire that waited for the batch's locks would fail after a second with 1205.
			consumer := idem.NewMySQLStore(testenv.OpenMySQL(t, testenv.DSNWithParams(dsn, "innodb_lock_wait_timeout=1")).DB)
			for _, ttl := range []time.Duration{time.Minute, 2 * time.Hour} { // before and after the live records
				for _, id := range []string{"brand-new", "expired-99999", "live-99999"} {
					key := idem.Key{Group: "g1", Topic: "t", ID: fmt.Sprintf("%s-%s", id, ttl)}
					a, err := consumer.Acquire(ctx, key, rand.Text(), ttl)
					require.NoError(t, err, "Acquire of %s while a cleanup batch is open", key)
					require.Equal(t, idem.Acquired, a.State)
				}
			}
			require.NoError(t, tx.Commit())
		})
	}
}
