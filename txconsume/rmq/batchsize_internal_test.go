package rmq

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/txconsume/txconsume/txconsume"
)

// batchingProcessor is a countingProcessor that also takes whole deliveries.
type batchingProcessor struct{ countingProcessor }

func (p *batchingProcessor) ProcessBatch(_ context.Context, msgs []*txconsume.Message) ([]txconsume.Result, error) {
	rs := make([]txconsume.Result, len(msgs))
	for i := range rs {
		rs[i] = txconsume.Applied
	}
	return rs, nil
}

func TestDefaultBatchMaxSize(t *testing.T) {
	base := []Option{WithNameServers("127.0.0.1:9876"), WithGroup("g"), WithSubscription("t", "*")}
	size := func(t *testing.T, p Processor, opts ...Option) int {
		t.Helper()
		c, err := NewConsumer(p, append(base, opts...)...)
		require.NoError(t, err)
		return c.cfg.batchMaxSize
	}
	t.Run("a BatchProcessor gets deliveries of DefaultBatchMaxSize", func(t *testing.T) {
		require.Equal(t, DefaultBatchMaxSize, size(t, &batchingProcessor{}))
	})
	t.Run("any other Processor gets one message per delivery", func(t *testing.T) {
		require.Equal(t, 1, size(t, &countingProcessor{}))
	})
	t.Run("orderly consumption gets one message per delivery", func(t *testing.T) {
		require.Equal(t, 1, size(t, &batchingProcessor{}, WithOrderly()))
	})
	t.Run("WithBatchMaxSize wins", func(t *testing.T) {
		require.Equal(t, 1, size(t, &batchingProcessor{}, WithBatchMaxSize(1)))
		require.Equal(t, 64, size(t, &countingProcessor{}, WithBatchMaxSize(64)))
	})
	t.Run("WithBatchMaxSize out of range is still an error", func(t *testing.T) {
		for _, n := range []int{0, -1, 1025} {
			_, err := NewConsumer(&batchingProcessor{}, append(base, WithBatchMaxSize(n))...)
			require.ErrorContains(t, err, "batch max size")
		}
	})
}
