package rmq

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/apache/rocketmq-client-go/v2/primitive"
	"github.com/stretchr/testify/require"

	"github.com/txconsume/txconsume/txconsume"
)

// blocking is a Processor whose deliveries of message "stuck" wait until release is closed.
type blocking struct{ release chan struct{} }

func (b *blocking) Process(ctx context.Context, m *txconsume.Message) (txconsume.Result, error) {
	if m.ID == "stuck" {
		<-b.release
	}
	return txconsume.Applied, nil
}

// TestStallWarning: a delivery whose handler does not return is logged as stalled, with its
// message id, once per stall period; deliveries that return in time are not.
func TestStallWarning(t *testing.T) {
	var logs bytes.Buffer
	p := &blocking{release: make(chan struct{})}
	c, err := NewConsumer(p, WithNameServers("127.0.0.1:9876"), WithGroup("g"), WithSubscription("orders", "*"),
		WithStallWarning(200*time.Millisecond), WithLogger(slog.New(slog.NewTextHandler(&syncWriter{w: &logs}, nil))))
	require.NoError(t, err)
	c.state = stateRunning // what Start sets, without a broker
	stop := make(chan struct{})
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		c.watchStalls(stop)
	}()
	t.Cleanup(func() {
		close(stop)
		<-watched
	})
	stalls := func() int {
		return strings.Count((&syncWriter{w: &logs}).String(), "rmq: delivery stalled")
	}

	ctx := primitive.WithConcurrentlyCtx(context.Background(), primitive.NewConsumeConcurrentlyContext())
	_, err = c.consume(ctx, message("quick"))
	require.NoError(t, err)

	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = c.consume(ctx, message("stuck"))
	}()
	require.Eventually(t, func() bool { return stalls() >= 2 }, 10*time.Second, 20*time.Millisecond,
		"logged when it stalls, and again a period later")
	out := (&syncWriter{w: &logs}).String()
	require.Contains(t, out, `level=WARN msg="rmq: delivery stalled: its handler has not returned`)
	require.Contains(t, out, "group=g msg_id=stuck messages=1")
	require.NotContains(t, out, "msg_id=quick")

	close(p.release)
	<-done
	n := stalls()
	time.Sleep(600 * time.Millisecond)
	require.Equal(t, n, stalls(), "a delivery that returned is not logged again")
}

func message(id string) *primitive.MessageExt {
	m := &primitive.MessageExt{MsgId: id}
	m.Topic = "orders"
	m.WithProperty(primitive.PropertyUniqueClientMessageIdKeyIndex, id)
	return m
}
