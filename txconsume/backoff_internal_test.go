package txconsume

import (
	"math"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestBackoffStaysInRange checks every attempt's delay against its documented range, including
// a maximum so large that doubling the minimum would overflow time.Duration.
func TestBackoffStaysInRange(t *testing.T) {
	for _, bounds := range [][2]time.Duration{
		{DefaultBackoffMin, DefaultBackoffMax},
		{time.Second, math.MaxInt64},
		{1, 1},
	} {
		p := &Processor{cfg: config{backoffMin: bounds[0], backoffMax: bounds[1]}}
		for attempt := 1; attempt <= 100; attempt++ {
			d := bounds[0]
			for i := 1; i < attempt && d < bounds[1]; i++ {
				if d > bounds[1]/2 {
					d = bounds[1] // d*2 would pass the maximum (or overflow)
					break
				}
				d *= 2
			}
			got := p.backoff(attempt)
			require.GreaterOrEqual(t, got, d/2, "bounds %v attempt %d", bounds, attempt)
			require.Less(t, got, d, "bounds %v attempt %d", bounds, attempt)
		}
	}
}
