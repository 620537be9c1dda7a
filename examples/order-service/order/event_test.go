package order

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestPaidEvent(t *testing.T) {
	e := PaidEvent{OrderNo: "ORD-7", PaymentID: "PAY-7", AmountCents: 999, PaidAt: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)}
	t.Run("message carries the order number as its key and round-trips the body", func(t *testing.T) {
		msg, err := NewPaidMessage("orders", e)
		require.NoError(t, err)
		require.Equal(t, "ORD-7", msg.GetKeys())
		require.Equal(t, TagPaid, msg.GetTags())
		require.Equal(t, "ORD-7", msg.GetShardingKey())
		got, err := DecodePaid(msg.Body)
		require.NoError(t, err)
		require.Equal(t, e, got)
	})
	t.Run("invalid events are rejected on both sides", func(t *testing.T) {
		bad := e
		bad.PaymentID = ""
		_, err := NewPaidMessage("orders", bad)
		require.ErrorContains(t, err, "payment_id")
		_, err = DecodePaid([]byte(`{"order_no":"ORD-7","payment_id":"P","amount_cents":0}`))
		require.ErrorContains(t, err, "amount_cents")
		_, err = DecodePaid([]byte(`not json`))
		require.Error(t, err)
	})
}
