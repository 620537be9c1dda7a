package rmq

import (
	"bytes"
	"log/slog"
	"testing"

	"github.com/apache/rocketmq-client-go/v2/rlog"
	"github.com/stretchr/testify/require"
)

// TestClientLogRouting: the client's records go to the logger of the Consumer whose group they
// name; the others to SetClientLogger's logger, else to the longest-running Consumer's.
func TestClientLogRouting(t *testing.T) {
	newConsumer := func(group string, buf *bytes.Buffer) *Consumer {
		c, err := NewConsumer(&countingProcessor{}, WithNameServers("127.0.0.1:9876"), WithGroup(group),
			WithSubscription("t", "*"), WithLogger(slog.New(slog.NewTextHandler(buf, nil))))
		require.NoError(t, err)
		return c
	}
	var a, b, global bytes.Buffer
	ca, cb := newConsumer("group-a", &a), newConsumer("group-b", &b)
	registerClientLogger(ca)
	registerClientLogger(cb)
	t.Cleanup(func() { unregisterClientLogger(ca); unregisterClientLogger(cb); SetClientLogger(nil) })

	rlog.Error("pull failed", map[string]interface{}{rlog.LogKeyConsumerGroup: "group-b"})
	rlog.Error("rebalance failed", map[string]interface{}{rlog.LogKeyConsumerGroup: "ns%group-a"})
	rlog.Error("connect to namesrv failed.", map[string]interface{}{"namesrv": "127.0.0.1:9877"})
	require.Contains(t, b.String(), `msg="pull failed"`)
	require.NotContains(t, a.String(), "pull failed")
	require.Contains(t, a.String(), `msg="rebalance failed"`, "a namespaced group is its group")
	require.Contains(t, a.String(), "connect to namesrv failed", "no group: the longest-running consumer")
	require.NotContains(t, b.String(), "connect to namesrv")

	SetClientLogger(slog.New(slog.NewTextHandler(&global, nil)))
	rlog.Error("broker unreachable", map[string]interface{}{"broker": "b1"})
	rlog.Error("pull failed again", map[string]interface{}{rlog.LogKeyConsumerGroup: "group-b"})
	require.Contains(t, global.String(), "broker unreachable")
	require.NotContains(t, a.String(), "broker unreachable")
	require.Contains(t, b.String(), "pull failed again", "a group's record still goes to its consumer")

	unregisterClientLogger(ca)
	SetClientLogger(nil)
	rlog.Error("namesrv timeout", nil)
	require.Contains(t, b.String(), "namesrv timeout", "the first consumer stopped: the next one takes the shared records")
}
