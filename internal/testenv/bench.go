package testenv

import (
	"runtime"
	"testing"
)

// RunParallel runs fn b.N times from conc goroutines and reports the throughput as the custom
// metric "msgs/s", counting perOp messages per call (make bench reads that metric). The first
// error fails the benchmark and stops its goroutine.
func RunParallel(b *testing.B, conc, perOp int, fn func() error) {
	b.Helper()
	// RunParallel starts GOMAXPROCS*parallelism goroutines: round up to conc.
	procs := runtime.GOMAXPROCS(0)
	b.SetParallelism((conc + procs - 1) / procs)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := fn(); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N*perOp)/b.Elapsed().Seconds(), "msgs/s")
}
