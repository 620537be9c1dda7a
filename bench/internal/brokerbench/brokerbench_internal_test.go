package brokerbench

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/txconsume/txconsume/txconsume/rmq"
)

func TestPct(t *testing.T) {
	var ds []time.Duration
	for i := 100; i >= 1; i-- {
		ds = append(ds, time.Duration(i)*time.Millisecond)
	}
	require.Equal(t, 50*time.Millisecond, pct(ds, 50))
	require.Equal(t, 99*time.Millisecond, pct(ds, 99))
	require.Equal(t, 100*time.Millisecond, pct(ds, 100))
	require.Equal(t, 100*time.Millisecond, ds[0], "the input is not sorted in place")
	require.Zero(t, pct(nil, 99))
}

func TestVariantName(t *testing.T) {
	require.Equal(t, "at-least-once, client defaults (batch 1)", Baseline.Name())
	require.Equal(t, "exactly-once, defaults (batch 32)", Variant{Kind: ExactlyOnce}.Name())
	require.Equal(t, 32, rmq.DefaultBatchMaxSize, "the name above says 32")
	require.Equal(t, "naive check-then-insert, batch 8", Variant{Kind: Naive, Batch: 8}.Name())
}

func TestTracker(t *testing.T) {
	tr := newTracker(3, 2, "paced")
	born := time.Now().Add(-time.Second)
	tr.committed("a", "backlog", born)
	tr.committed("a", "backlog", born) // a duplicate commit counts once
	tr.committed("b", "backlog", born)
	select {
	case <-tr.backlogDone:
		t.Fatal("backlog done after 2 of 3")
	default:
	}
	tr.committed("c", "backlog", born)
	<-tr.backlogDone
	rate, n := tr.backlogRate()
	require.Equal(t, 3, n)
	require.Positive(t, rate)

	tr.committed("p1", "paced", born)
	tr.committed("p2", "paced", born)
	<-tr.pacedDone
	require.Len(t, tr.paced, 2)
	require.GreaterOrEqual(t, tr.paced[0], time.Second, "latency from the born timestamp")

	tr.retried(4)
	tr.retried(1)
	require.Equal(t, 1, tr.splits)
	require.Equal(t, 1, tr.retries)
}

func TestSummarize(t *testing.T) {
	require.Equal(t, "a; b", summarize([]string{"b", "a", "b"}))
	require.Empty(t, summarize(nil))
	require.Equal(t, "x, y", joinNote("x", "y"))
	require.Equal(t, "y", joinNote("", "y"))
}
