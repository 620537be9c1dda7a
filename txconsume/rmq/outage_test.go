package rmq_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/apache/rocketmq-client-go/v2/consumer"
	"github.com/go-sql-driver/mysql"
	"github.com/stretchr/testify/require"

	"github.com/txconsume/txconsume/internal/testenv"
	"github.com/txconsume/txconsume/txconsume"
	"github.com/txconsume/txconsume/txconsume/rmq"
)

// flaky fails every Process with err until it has failed times times.
type flaky struct {
	mu     sync.Mutex
	err    error
	times  int
	calls  int
	failed int
}

func (f *flaky) Process(context.Context, *txconsume.Message) (txconsume.Result, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if f.failed < f.times {
		f.failed++
		return 0, f.err
	}
	return txconsume.Applied, nil
}

func (f *flaky) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls
}

// TestRMQOutageRetry: a delivery that fails because the database cannot be reached is run again
// in place until it answers (for up to WithOutageRetry), logged once when the outage begins and
// once when it ends; any other failure goes back to the broker at once.
func TestRMQOutageRetry(t *testing.T) {
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}
	setup := func(p rmq.Processor, opts ...rmq.ListenerOption) (rmq.ListenerFunc, *testenv.LockedBuffer) {
		logs := &testenv.LockedBuffer{}
		opts = append([]rmq.ListenerOption{rmq.WithLogger(slog.New(slog.NewTextHandler(logs, nil)))}, opts...)
		return rmq.Listener(p, opts...), logs
	}

	t.Run("an outage is waited out in place", func(t *testing.T) {
		p := &flaky{err: refused, times: 4}
		l, logs := setup(p)
		ctx, cc := concurrentCtx()
		res, err := l(ctx, ext("A"))
		require.NoError(t, err)
		require.Equal(t, consumer.ConsumeSuccess, res)
		require.Equal(t, 5, p.count())
		require.Zero(t, cc.DelayLevelWhenNextConsume)
		out := logs.String()
		require.Equal(t, 1, strings.Count(out, `level=WARN msg="rmq: database unreachable; deliveries wait and are retried in place"`), out)
		require.Equal(t, 1, strings.Count(out, `level=INFO msg="rmq: database answers again; waiting deliveries resume"`), out)
		require.NotContains(t, out, "delivery failed")
	})

	t.Run("a connection that broke alone is replaced without a word", func(t *testing.T) {
		p := &flaky{err: fmt.Errorf("txconsume: exec: %w", mysql.ErrInvalidConn), times: 1}
		l, logs := setup(p)
		ctx, _ := concurrentCtx()
		res, err := l(ctx, ext("A"))
		require.NoError(t, err)
		require.Equal(t, consumer.ConsumeSuccess, res)
		require.Equal(t, 2, p.count())
		require.Empty(t, logs.String())
	})

	t.Run("a commit whose outcome is unknown is settled in place", func(t *testing.T) {
		p := &flaky{err: fmt.Errorf("commit: %w: %w", txconsume.ErrCommitUnknown, errors.New("bad connection")), times: 1}
		l, logs := setup(p)
		ctx, _ := concurrentCtx()
		res, err := l(ctx, ext("A"))
		require.NoError(t, err)
		require.Equal(t, consumer.ConsumeSuccess, res)
		require.Equal(t, 2, p.count())
		require.Empty(t, logs.String())
	})

	t.Run("a failure that is no outage goes back at once", func(t *testing.T) {
		p := &flaky{err: errors.New("insufficient funds"), times: 1}
		l, logs := setup(p, rmq.WithRetryDelayLevel(2))
		ctx, cc := concurrentCtx()
		res, err := l(ctx, ext("A"))
		require.Error(t, err)
		require.Equal(t, consumer.ConsumeRetryLater, res)
		require.Equal(t, 1, p.count())
		require.Equal(t, 2, cc.DelayLevelWhenNextConsume)
		require.Contains(t, logs.String(), "rmq: delivery failed, redelivering")
		require.NotContains(t, logs.String(), "unreachable")
	})

	t.Run("an outage longer than the limit goes back", func(t *testing.T) {
		p := &flaky{err: refused, times: 1 << 30}
		l, logs := setup(p, rmq.WithOutageRetry(500*time.Millisecond))
		ctx, _ := concurrentCtx()
		start := time.Now()
		res, err := l(ctx, ext("A"))
		require.ErrorIs(t, err, syscall.ECONNREFUSED)
		require.Equal(t, consumer.ConsumeRetryLater, res)
		require.GreaterOrEqual(t, time.Since(start), 500*time.Millisecond)
		require.Greater(t, p.count(), 2)
		require.Contains(t, logs.String(), "rmq: delivery failed, redelivering")
		require.NotContains(t, logs.String(), "answers again")
	})

	t.Run("orderly deliveries wait too", func(t *testing.T) {
		p := &flaky{err: refused, times: 2}
		logs := &testenv.LockedBuffer{}
		l := rmq.OrderlyListener(p, rmq.WithLogger(slog.New(slog.NewTextHandler(logs, nil))))
		ctx, _ := orderlyCtx()
		res, err := l(ctx, ext("A"))
		require.NoError(t, err)
		require.Equal(t, consumer.ConsumeSuccess, res)
		require.Equal(t, 3, p.count())
	})

	t.Run("zero hands back at once", func(t *testing.T) {
		p := &flaky{err: refused, times: 1}
		l, _ := setup(p, rmq.WithOutageRetry(0))
		ctx, _ := concurrentCtx()
		res, _ := l(ctx, ext("A"))
		require.Equal(t, consumer.ConsumeRetryLater, res)
		require.Equal(t, 1, p.count())
	})

	t.Run("an ended context ends the wait", func(t *testing.T) {
		p := &flaky{err: refused, times: 1 << 30}
		l, _ := setup(p)
		ctx, _ := concurrentCtx()
		ctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
		defer cancel()
		start := time.Now()
		res, _ := l(ctx, ext("A"))
		require.Equal(t, consumer.ConsumeRetryLater, res)
		require.Less(t, time.Since(start), 10*time.Second)
	})

	t.Run("negative is refused", func(t *testing.T) {
		_, err := rmq.NewConsumer(&flaky{}, rmq.WithNameServers("127.0.0.1:9876"), rmq.WithGroup("g"),
			rmq.WithSubscription("t", "*"), rmq.WithOutageRetry(-time.Second))
		require.ErrorContains(t, err, "outage retry")
	})
}
