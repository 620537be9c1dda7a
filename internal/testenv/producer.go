package testenv

import (
	"testing"

	rocketmq "github.com/apache/rocketmq-client-go/v2"
	"github.com/apache/rocketmq-client-go/v2/primitive"
	"github.com/apache/rocketmq-client-go/v2/producer"
	"github.com/stretchr/testify/require"
)

// StartProducer starts a producer on r's name server, in the producer group r.Group+"_p", shut
// down when the test ends; opts come after those and override them (a resolver of the caller's,
// a retry count).
//
// The producer gets a client instance of its own: rocketmq-client-go shares one client per
// process and instance name, and a producer that shares it with a running consumer races with it
// inside the library (docs/upstream.md).
func (r *RocketMQ) StartProducer(t testing.TB, opts ...producer.Option) rocketmq.Producer {
	t.Helper()
	opts = append([]producer.Option{
		producer.WithNsResolver(primitive.NewPassthroughResolver([]string{r.NameServer})),
		producer.WithGroupName(r.Group + "_p"),
		producer.WithInstanceName(UniqueName(t, "p")),
	}, opts...)
	prod, err := rocketmq.NewProducer(opts...)
	require.NoError(t, err)
	require.NoError(t, prod.Start())
	t.Cleanup(func() { _ = prod.Shutdown() })
	return prod
}
