package idem_test

import (
	"context"
	"crypto/rand"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/txconsume/txconsume/internal/testenv"
	"github.com/txconsume/txconsume/txconsume"
	"github.com/txconsume/txconsume/txconsume/idem"
)

// adminStore is what both stores offer operators.
type adminStore interface {
	idem.Store
	Inspect(ctx context.Context, group, topic, id string) ([]idem.Record, error)
	ForceRelease(ctx context.Context, key idem.Key) (idem.Record, error)
	Delete(ctx context.Context, key idem.Key) (idem.Record, error)
}

func TestAdmin(t *testing.T) {
	stores := map[string]func(t *testing.T) adminStore{
		"mysql": func(t *testing.T) adminStore {
			_, db := setupMySQL(t)
			return idem.NewMySQLStore(db)
		},
		"redis": func(t *testing.T) adminStore {
			client, prefix := testenv.Redis(t)
			return idem.NewRedisStore(client, prefix)
		},
	}
	for name, newStore := range stores {
		t.Run(name, func(t *testing.T) { testAdmin(t, name, newStore) })
	}
}

func testAdmin(t *testing.T, storeName string, newStore func(t *testing.T) adminStore) {
	ctx := context.Background()
	// Ids with a ':' and glob characters: Redis keys and SCAN patterns must not misread them.
	const id = "order:1*[x]?"

	acquire := func(t *testing.T, s adminStore, k idem.Key) string {
		owner := rand.Text()
		a, err := s.Acquire(ctx, k, owner, time.Hour)
		require.NoError(t, err)
		require.Equal(t, idem.Acquired, a.State)
		return owner
	}

	t.Run("inspect finds records on every topic or one", func(t *testing.T) {
		s := newStore(t)
		recs, err := s.Inspect(ctx, "g", "", id)
		require.NoError(t, err)
		require.Empty(t, recs)

		o1 := acquire(t, s, idem.Key{Group: "g", Topic: "t:1", ID: id})
		o2 := acquire(t, s, idem.Key{Group: "g", Topic: "t2", ID: id})
		require.NoError(t, s.MarkConsumed(ctx, idem.Key{Group: "g", Topic: "t2", ID: id}, o2, time.Hour))
		// Neighbours that must not show up: another group, and an id that ends like ours.
		acquire(t, s, idem.Key{Group: "g2", Topic: "t2", ID: id})
		acquire(t, s, idem.Key{Group: "g", Topic: "t2", ID: "x:" + id})

		recs, err = s.Inspect(ctx, "g", "", id)
		require.NoError(t, err)
		require.Len(t, recs, 2)
		byTopic := map[string]idem.Record{}
		for _, r := range recs {
			byTopic[r.Key.Topic] = r
		}
		require.Equal(t, idem.InProgress, byTopic["t:1"].State)
		require.Equal(t, "PROCESSING", byTopic["t:1"].StateName())
		require.Equal(t, o1, byTopic["t:1"].Owner)
		require.Equal(t, idem.Consumed, byTopic["t2"].State)
		require.Equal(t, o2, byTopic["t2"].Owner)
		for _, r := range recs {
			require.False(t, r.Expired())
			require.Equal(t, id, r.Key.ID)
			require.Equal(t, "g", r.Key.Group)
		}

		recs, err = s.Inspect(ctx, "g", "t2", id)
		require.NoError(t, err)
		require.Len(t, recs, 1)
		require.Equal(t, idem.Consumed, recs[0].State)
	})

	t.Run("force release removes a PROCESSING record and the key can be taken", func(t *testing.T) {
		s := newStore(t)
		k := idem.Key{Group: "g", Topic: "t", ID: id}
		stuck := acquire(t, s, k)

		r, err := s.ForceRelease(ctx, k)
		require.NoError(t, err)
		require.Equal(t, stuck, r.Owner)
		require.Equal(t, idem.InProgress, r.State)
		recs, err := s.Inspect(ctx, "g", "t", id)
		require.NoError(t, err)
		require.Empty(t, recs)

		fresh := acquire(t, s, k)
		// The stuck attempt, should it come back to life, can no longer touch the new record.
		require.ErrorIs(t, s.MarkConsumed(ctx, k, stuck, time.Hour), idem.ErrNotOwner)
		require.NoError(t, s.MarkConsumed(ctx, k, fresh, time.Hour))
	})

	t.Run("force release leaves a CONSUMED record; delete removes it", func(t *testing.T) {
		s := newStore(t)
		k := idem.Key{Group: "g", Topic: "t", ID: id}
		o := acquire(t, s, k)
		require.NoError(t, s.MarkConsumed(ctx, k, o, time.Hour))

		r, err := s.ForceRelease(ctx, k)
		require.ErrorIs(t, err, idem.ErrNotProcessing)
		require.Equal(t, idem.Consumed, r.State)
		a, err := s.Acquire(ctx, k, rand.Text(), time.Hour)
		require.NoError(t, err)
		require.Equal(t, idem.Consumed, a.State, "still consumed")

		r, err = s.Delete(ctx, k)
		require.NoError(t, err)
		require.Equal(t, o, r.Owner)
		acquire(t, s, k)
	})

	t.Run("no record", func(t *testing.T) {
		s := newStore(t)
		k := idem.Key{Group: "g", Topic: "t", ID: "absent"}
		_, err := s.ForceRelease(ctx, k)
		require.ErrorIs(t, err, idem.ErrNoRecord)
		_, err = s.Delete(ctx, k)
		require.ErrorIs(t, err, idem.ErrNoRecord)
	})

	t.Run("long ids", func(t *testing.T) {
		s := newStore(t)
		long := strings.Repeat("L", 400)
		k := idem.Key{Group: "g", Topic: "t", ID: long}
		acquire(t, s, k)
		recs, err := s.Inspect(ctx, "g", "", long)
		require.NoError(t, err)
		require.Len(t, recs, 1)
		want := long
		if storeName == "mysql" {
			want = txconsume.StoredKey(long)
		}
		require.Equal(t, want, recs[0].StoredID)
		_, err = s.ForceRelease(ctx, k)
		require.NoError(t, err)
	})
}

func TestAdminMySQLCountExpired(t *testing.T) {
	ctx := context.Background()
	_, db := setupMySQL(t)
	s := idem.NewMySQLStore(db)
	for i, ttl := range []time.Duration{time.Millisecond, time.Millisecond, time.Hour} {
		_, err := s.Acquire(ctx, idem.Key{Group: "g", Topic: "t", ID: string(rune('a' + i))}, rand.Text(), ttl)
		require.NoError(t, err)
	}
	// Expire the short ones on the database clock rather than sleeping.
	_, err := db.ExecContext(ctx, "UPDATE txconsume_idem SET expires_at = UTC_TIMESTAMP(6) - INTERVAL 1 SECOND WHERE idem_key IN ('a', 'b')")
	require.NoError(t, err)
	n, err := s.CountExpired(ctx)
	require.NoError(t, err)
	require.Equal(t, int64(2), n)
	deleted, err := s.Cleanup(ctx, 0)
	require.NoError(t, err)
	require.Equal(t, n, deleted, "the dry run counts what Cleanup deletes")
}
