package idem

import (
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/txconsume/txconsume/txconsume"
)

func TestInProgressRetryDelay(t *testing.T) {
	key := Key{Group: "g", Topic: "t", ID: "k"}
	cases := []struct {
		name      string
		reconsume int32
		remaining time.Duration
		want      time.Duration
	}{
		{"first redelivery after 1s", 0, time.Minute, time.Second},
		{"doubles with each redelivery", 3, time.Minute, 8 * time.Second},
		{"capped by the record's remaining TTL", 10, 30 * time.Second, 30 * time.Second},
		{"never below 1s", 0, 300 * time.Millisecond, time.Second},
		{"unknown remaining TTL: backoff only", 2, 0, 4 * time.Second},
		{"shift is bounded", 1000, 0, time.Second << 12},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := inProgressError(key, &txconsume.Message{ReconsumeTimes: c.reconsume}, c.remaining)
			require.True(t, errors.Is(err, ErrInProgress))
			d, ok := txconsume.RetryDelay(err)
			require.True(t, ok)
			require.Equal(t, c.want, d)
		})
	}
}

func TestSafetyMargin(t *testing.T) {
	require.Equal(t, 60*time.Millisecond, safetyMargin(300*time.Millisecond))
	require.Equal(t, 5*time.Second, safetyMargin(time.Minute), "capped")
}
