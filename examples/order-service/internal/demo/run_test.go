package demo_test

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/txconsume/txconsume/examples/order-service/internal/demo"
	"github.com/txconsume/txconsume/internal/testenv"
)

// TestShortDemo is `make demo` in small: 200 orders with duplicates of both kinds, one SIGKILL
// of the service, the naive consumer alongside. It fails unless the txconsume service's database
// shows every order paid exactly once, stock taken once per order and one ledger row per order.
func TestShortDemo(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the service: not a -short test")
	}
	mq := testenv.NewRocketMQ(t)
	cfg := demo.Config{
		MySQLDSN:   testenv.MySQLDSN(t),
		NaiveDSN:   testenv.MySQLDSN(t),
		NameServer: mq.NameServer,
		Topic:      mq.Topic,
		Group:      mq.Group,
		NaiveGroup: testenv.UniqueName(t, "naive"),
		Orders:     200,
		Kills:      1,
		Timeout:    60 * time.Second,
		LogDir:     t.TempDir(),
	}
	ctx, cancel := context.WithTimeout(context.Background(), 80*time.Second)
	defer cancel()
	var err error
	cfg.ServiceBin, err = demo.BuildService(ctx, t.TempDir())
	require.NoError(t, err)
	var progress bytes.Buffer
	cfg.Progress = &progress

	rep, err := demo.Run(ctx, cfg)
	t.Log("\n" + progress.String())
	require.NoError(t, err)
	var summary bytes.Buffer
	rep.WriteSummary(&summary)
	t.Log(summary.String())

	require.Empty(t, rep.Failures())
	require.Len(t, rep.Kills, 1)
	require.Equal(t, 200, rep.Lib.Effects.PaidOnce)
	require.Zero(t, rep.Lib.Effects.AppliedTwice)
	require.Zero(t, rep.Lib.Effects.Lost)
	require.Equal(t, 200, rep.Lib.DedupRows)
	require.Positive(t, rep.SameIDResends)
	require.Positive(t, rep.NewIDResends)
	// Every duplicate the driver injected reached the service and was suppressed; the kill
	// only adds redeliveries on top.
	require.GreaterOrEqual(t, rep.Lib.Counts.Duplicate, rep.SameIDResends+rep.NewIDResends)
	require.GreaterOrEqual(t, rep.Lib.Counts.Seen(), rep.Messages)
	require.NoError(t, rep.Lib.ShutdownErr)

	// The naive consumer is measured, not judged: how many orders it paid twice depends on
	// timing. It never loses a payment, though.
	require.NotNil(t, rep.Naive)
	require.True(t, rep.Naive.Drained)
	require.Zero(t, rep.Naive.Effects.Lost)
	t.Logf("naive consumer paid %d of %d orders twice", rep.Naive.Effects.AppliedTwice, rep.Orders)
}
