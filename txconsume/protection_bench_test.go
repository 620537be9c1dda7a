package txconsume_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/txconsume/txconsume/txconsume"
)

// BenchmarkProtectionCost measures what keeping a handler's mistakes from committing (a
// swallowed deadlock, a Commit of its own) costs, on the same database in one run:
//
//	bare         the handler in a transaction of its own, no deduplication
//	unprotected  the Processor as it was before it protected itself: the baseline
//	guarded      the Processor on a pool opened with txconsume.Open (its driver does it)
//	plainpool    the Processor on a plain pool (three more statements per transaction)
//
// The machine these run on is shared, so the variants take turns: slices of sliceLen each, in
// rotation, for rounds rounds, and each variant's throughput sums its own slices. Load from
// elsewhere then falls on all of them alike and the ratios hold even when the absolute numbers
// move. Each line reports every variant's msgs/s and the ratios guarded/unprotected,
// plainpool/unprotected and guarded/bare.
//
// Per Process with the one-insert handler the server receives 3 statements bare, 4 unprotected,
// 4 guarded and 7 on a plain pool (counted with SHOW SESSION STATUS LIKE 'Questions' on a pool
// of one connection).
//
// The benchmark ignores b.N: one measurement takes about rounds*4*sliceLen.
func BenchmarkProtectionCost(b *testing.B) {
	if testing.Short() {
		b.Skip("-short: needs MySQL")
	}
	ctx := context.Background()
	for _, d := range benchDSNs {
		for _, h := range benchHandlers {
			for _, conc := range []int{1, 16} {
				if h.name != "handler=insert" && conc == 1 {
					continue // one round trip more weighs most on the smallest handler, alone
				}
				b.Run(fmt.Sprintf("%s/%s/conc=%d", h.name, d.name, conc), func(b *testing.B) {
					variants := protectionVariants(b, d.params, h.h, func(ctx context.Context, p *txconsume.Processor) (int, error) {
						r, err := p.Process(ctx, nextMsg())
						if err == nil && r != txconsume.Applied {
							err = fmt.Errorf("result %v", r)
						}
						return 1, err
					}, 1)
					interleave(ctx, b, conc, variants)
				})
			}
		}
		b.Run(fmt.Sprintf("batch32/%s", d.name), func(b *testing.B) {
			const size = 32
			variants := protectionVariants(b, d.params, benchHandler, func(ctx context.Context, p *txconsume.Processor) (int, error) {
				ms := make([]*txconsume.Message, size)
				for i := range ms {
					ms[i] = nextMsg()
				}
				_, err := p.ProcessBatch(ctx, ms)
				return size, err
			}, size)
			interleave(ctx, b, 1, variants)
		})
	}
}

// Rotation of BenchmarkProtectionCost.
const (
	sliceLen = 100 * time.Millisecond
	rounds   = 40
)

// protectionVariant is one way of consuming messages, run by interleave: step consumes some
// and says how many.
type protectionVariant struct {
	name string
	step func(ctx context.Context) (int, error)
}

// protectionVariants sets up a fresh database and returns the four variants of
// BenchmarkProtectionCost. process consumes through a Processor; the bare variant runs h over
// batch new messages in one transaction.
func protectionVariants(b *testing.B, params string, h txconsume.Handler,
	process func(context.Context, *txconsume.Processor) (int, error), batch int) []protectionVariant {
	b.Helper()
	pools := benchDB(b, params)
	newProcessor := func(p *txconsume.Processor, err error) *txconsume.Processor {
		require.NoError(b, err)
		return p
	}
	unprotected := txconsume.Unprotected(newProcessor(txconsume.New(pools.plain, "bench", h)))
	guarded := newProcessor(txconsume.New(pools.guarded, "bench", h))
	plain := newProcessor(txconsume.New(pools.plain, "bench", h))
	withProcessor := func(p *txconsume.Processor) func(context.Context) (int, error) {
		return func(ctx context.Context) (int, error) { return process(ctx, p) }
	}
	return []protectionVariant{
		{"bare", func(ctx context.Context) (int, error) {
			ms := make([]*txconsume.Message, batch)
			for i := range ms {
				ms[i] = nextMsg()
			}
			return batch, bareTx(ctx, pools.plain, h, ms)
		}},
		{"unprotected", withProcessor(unprotected)},
		{"guarded", withProcessor(guarded)},
		{"plainpool", withProcessor(plain)},
	}
}

// interleave runs the variants in rotation, conc goroutines at a time, and reports their
// throughputs and ratios.
func interleave(ctx context.Context, b *testing.B, conc int, variants []protectionVariant) {
	msgs := make([]int64, len(variants))
	spent := make([]time.Duration, len(variants))
	for range rounds {
		for i, v := range variants {
			n, d, err := runSlice(ctx, conc, v.step)
			require.NoError(b, err, v.name)
			msgs[i] += n
			spent[i] += d
		}
	}
	rate := map[string]float64{}
	for i, v := range variants {
		rate[v.name] = float64(msgs[i]) / spent[i].Seconds()
		b.ReportMetric(rate[v.name], v.name+"-msgs/s")
	}
	b.ReportMetric(rate["guarded"]/rate["unprotected"], "guarded/unprotected")
	b.ReportMetric(rate["plainpool"]/rate["unprotected"], "plainpool/unprotected")
	b.ReportMetric(rate["guarded"]/rate["bare"], "guarded/bare")
	b.ReportMetric(0, "ns/op") // b.N means nothing here
}

// runSlice runs step on conc goroutines for sliceLen and returns the messages consumed and the
// time it took (until the last goroutine finished its step).
func runSlice(ctx context.Context, conc int, step func(context.Context) (int, error)) (int64, time.Duration, error) {
	var total atomic.Int64
	var firstErr error
	var once sync.Once
	var wg sync.WaitGroup
	start := time.Now()
	deadline := start.Add(sliceLen)
	for range conc {
		wg.Go(func() {
			for time.Now().Before(deadline) {
				n, err := step(ctx)
				if err != nil {
					once.Do(func() { firstErr = err })
					return
				}
				total.Add(int64(n))
			}
		})
	}
	wg.Wait()
	return total.Load(), time.Since(start), firstErr
}
