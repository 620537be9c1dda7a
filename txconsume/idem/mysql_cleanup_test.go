package idem_test

import (
	"context"
	"crypto/rand"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

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
}

func TestMySQLStoreRejectsLongNames(t *testing.T) {
	_, db := setupMySQL(t)
	s := idem.NewMySQLStore(db)
	long := string(make([]byte, idem.MySQLMaxNameLen+1))
	_, err := s.Acquire(context.Background(), idem.Key{Group: long, Topic: "t", ID: "k"}, rand.Text(), time.Minute)
	require.ErrorIs(t, err, idem.ErrKeyTooLong)
}
