package outbox_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/txconsume/txconsume/txconsume/outbox"
)

func TestStatus(t *testing.T) {
	ctx := context.Background()
	db, _ := newDB(t)

	st, err := outbox.Status(ctx, db)
	require.NoError(t, err)
	require.Empty(t, st)

	msg := func(topic string) outbox.Message { return outbox.Message{Topic: topic, Body: []byte("x")} }
	enqueue(t, db, msg("orders"), msg("orders"), msg("orders"), msg("payments"), msg("shipments"))
	// Ages on the database clock: the oldest pending order is 90s old; two orders and the
	// shipment were sent and are kept.
	_, err = db.Exec("UPDATE txconsume_outbox SET created_at = UTC_TIMESTAMP(6) - INTERVAL 90 SECOND WHERE topic = 'orders' ORDER BY id LIMIT 1")
	require.NoError(t, err)
	_, err = db.Exec("UPDATE txconsume_outbox SET created_at = UTC_TIMESTAMP(6) - INTERVAL 1 HOUR, sent_at = UTC_TIMESTAMP(6) " +
		"WHERE topic = 'shipments' OR id = (SELECT MAX(id) FROM (SELECT id FROM txconsume_outbox WHERE topic = 'orders') o)")
	require.NoError(t, err)

	st, err = outbox.Status(ctx, db)
	require.NoError(t, err)
	require.Len(t, st, 3)
	require.Equal(t, "orders", st[0].Topic)
	require.EqualValues(t, 2, st[0].Pending)
	require.EqualValues(t, 1, st[0].Kept)
	require.InDelta(t, 90*time.Second, st[0].OldestPending, float64(30*time.Second))
	require.Equal(t, "payments", st[1].Topic)
	require.EqualValues(t, 1, st[1].Pending)
	require.Less(t, st[1].OldestPending, time.Minute)
	require.Equal(t, outbox.TopicStatus{Topic: "shipments", Kept: 1}, st[2], "nothing pending: no age, although the kept row is old")
}
