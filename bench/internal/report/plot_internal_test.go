package report

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestLatencyScale(t *testing.T) {
	// The broker run where the batched at-least-once consumer collapsed: p99 of 48 s beside
	// milliseconds.
	require.InDelta(t, 9.3, latencyScale([]float64{2.5, 2.8, 6.6, 9.3, 2.9, 48111.6}), 1e-9,
		"the outlier is left off the scale")
	require.InDelta(t, 55.5, latencyScale([]float64{5, 6, 40, 55.5}), 1e-9, "nothing is off scale")
	require.InDelta(t, 1.0, latencyScale([]float64{0, 0}), 1e-9, "an axis of zeros still has a length")
}
