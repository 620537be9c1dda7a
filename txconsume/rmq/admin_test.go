package rmq_test

import (
	"context"
	"testing"
	"time"

	"github.com/apache/rocketmq-client-go/v2/admin"
	"github.com/apache/rocketmq-client-go/v2/primitive"
	"github.com/stretchr/testify/require"

	"github.com/txconsume/txconsume/internal/testenv"
	"github.com/txconsume/txconsume/txconsume/rmq"
)

// TestRMQAdminCreateTopic: CreateTopic finds the cluster's brokers through the name server and
// creates the topic and the group's retry topic there with the queues asked for; a consumer then
// starts on it.
func TestRMQAdminCreateTopic(t *testing.T) {
	ctx := context.Background()
	ns, _ := testenv.RocketMQServer(t)
	a, err := rmq.NewAdmin([]string{ns})
	require.NoError(t, err)
	// The client's own admin reads routes the way producers and consumers do.
	client, err := admin.NewAdmin(admin.WithResolver(primitive.NewPassthroughResolver([]string{ns})))
	require.NoError(t, err)
	t.Cleanup(func() { _ = client.Close() })
	queues := func(topic string) int {
		mqs, err := client.FetchPublishMessageQueues(ctx, topic)
		require.NoError(t, err)
		return len(mqs)
	}

	t.Run("topic and retry topic, idempotent", func(t *testing.T) {
		topic, group := testenv.UniqueName(t, "t"), testenv.UniqueName(t, "g")
		require.ErrorIs(t, a.CheckTopic(ctx, topic), rmq.ErrTopicNotFound)
		require.NoError(t, a.CreateTopic(ctx, rmq.TopicConfig{Topic: topic, Queues: 3, RetryGroup: group}))
		require.NoError(t, a.CheckTopic(ctx, topic))
		require.Equal(t, 3, queues(topic))
		require.Equal(t, 1, queues(rmq.RetryTopic(group)))

		require.NoError(t, a.CreateTopic(ctx, rmq.TopicConfig{Topic: topic, Queues: 3, RetryGroup: group}), "again")
		require.Equal(t, 3, queues(topic))
	})
	t.Run("default queue count", func(t *testing.T) {
		topic := testenv.UniqueName(t, "t")
		require.NoError(t, a.CreateTopic(ctx, rmq.TopicConfig{Topic: topic}))
		require.Equal(t, rmq.DefaultTopicQueues, queues(topic))
	})
	t.Run("an unknown cluster names the known ones", func(t *testing.T) {
		err := a.CreateTopic(ctx, rmq.TopicConfig{Topic: testenv.UniqueName(t, "t"), Cluster: "NoSuchCluster"})
		require.ErrorIs(t, err, rmq.ErrClusterNotFound)
		require.ErrorContains(t, err, rmq.DefaultCluster)
	})
	t.Run("bad input", func(t *testing.T) {
		require.Error(t, a.CreateTopic(ctx, rmq.TopicConfig{}))
		require.Error(t, a.CreateTopic(ctx, rmq.TopicConfig{Topic: "x", Queues: 2000}))
		_, err := rmq.NewAdmin([]string{"127.0.0.1"})
		require.Error(t, err)
	})
	t.Run("an unreachable name server", func(t *testing.T) {
		down, err := rmq.NewAdmin([]string{closedAddr(t)}, rmq.WithAdminTimeout(2*time.Second))
		require.NoError(t, err)
		require.ErrorIs(t, down.CreateTopic(ctx, rmq.TopicConfig{Topic: "x"}), rmq.ErrNameServerUnreachable)
	})
}
