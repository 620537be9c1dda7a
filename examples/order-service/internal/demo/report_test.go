package demo

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestReport(t *testing.T) {
	// good is the report of a clean run of 10 orders, 12 messages, one kill.
	good := func() *Report {
		t0 := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
		return &Report{
			Orders: 10, Messages: 12, SameIDResends: 1, NewIDResends: 1, Published: 12,
			KillsWanted: 1, Kills: []Kill{{AfterApplied: 5, Downtime: time.Second}},
			Lib: Outcome{
				Name: "order-service", Drained: true, DedupRows: 10,
				Counts:  counts{Applied: 10, Duplicate: 6, First: t0, Last: t0.Add(2 * time.Second)},
				Effects: effects{Orders: 10, PaidOnce: 10, LedgerRows: 10},
			},
			Naive: &Outcome{
				Name: "naive", Drained: true, DedupRows: -1,
				Counts:  counts{Applied: 11, Duplicate: 1, First: t0, Last: t0.Add(time.Second)},
				Effects: effects{Orders: 10, PaidOnce: 9, AppliedTwice: 1, LedgerRows: 11, StockOff: 1, StockExcess: 2},
			},
			Chain: &Chain{
				Enqueued: 10, Sent: 10, Relayed: 12,
				Shipping: Outcome{
					Name: "shipping-service", Drained: true, DedupRows: 10,
					Counts: counts{Applied: 10, Duplicate: 4, First: t0, Last: t0.Add(time.Second)},
				},
				ShipmentRows: 10, ShippedOnce: 10,
				KillsWanted: 1, Kills: []Kill{{AfterApplied: 5, Downtime: time.Second}},
			},
		}
	}
	t.Run("a clean run passes whatever the naive consumer did", func(t *testing.T) {
		r := good()
		require.Empty(t, r.Failures())
		var out bytes.Buffer
		r.WriteSummary(&out)
		require.Contains(t, out.String(), "PASS")
		require.Regexp(t, `applied twice \(must be 0\)\s+0\s+1`, out.String())
		require.Regexp(t, `throughput \(deliveries/s\)\s+8\s+12`, out.String())
		require.Regexp(t, `duplicates suppressed\s+4\n`, out.String())
		require.Contains(t, out.String(), "12 relayed: 2 copies sent again after a kill")
		require.Contains(t, out.String(), "shipped exactly once, through 10 duplicate deliveries and 2 SIGKILL(s)")
	})
	t.Run("every mismatch on the txconsume side fails the run", func(t *testing.T) {
		for name, spoil := range map[string]func(r *Report){
			"applied twice":          func(r *Report) { r.Lib.Effects.AppliedTwice, r.Lib.Effects.PaidOnce = 1, 9 },
			"lost":                   func(r *Report) { r.Lib.Effects.Lost, r.Lib.Effects.PaidOnce = 1, 9 },
			"ledger rows":            func(r *Report) { r.Lib.Effects.LedgerRows = 11 },
			"stock":                  func(r *Report) { r.Lib.Effects.StockOff = 1 },
			"dedup rows":             func(r *Report) { r.Lib.DedupRows = 9 },
			"not drained":            func(r *Report) { r.Lib.Drained = false },
			"missing kill":           func(r *Report) { r.Kills = nil },
			"unpublished":            func(r *Report) { r.Published = 11 },
			"over-reported":          func(r *Report) { r.Lib.Counts.Applied = 11 },
			"discarded":              func(r *Report) { r.Lib.Counts.Discarded = 1 },
			"unclean shutdown":       func(r *Report) { r.Lib.ShutdownErr = errors.New("exit status 1") },
			"event enqueued twice":   func(r *Report) { r.Chain.Enqueued, r.Chain.EnqueuedTwice = 11, 1 },
			"event not enqueued":     func(r *Report) { r.Chain.Enqueued, r.Chain.Sent = 9, 9 },
			"event not relayed":      func(r *Report) { r.Chain.Sent = 9 },
			"relay under-reported":   func(r *Report) { r.Chain.Relayed = 9 },
			"shipped twice":          func(r *Report) { r.Chain.ShippedTwice, r.Chain.ShippedOnce, r.Chain.ShipmentRows = 1, 9, 11 },
			"never shipped":          func(r *Report) { r.Chain.Lost, r.Chain.ShippedOnce, r.Chain.ShipmentRows = 1, 9, 9 },
			"foreign id":             func(r *Report) { r.Chain.ForeignIDs = 1 },
			"shipping dedup rows":    func(r *Report) { r.Chain.Shipping.DedupRows = 9 },
			"shipping not drained":   func(r *Report) { r.Chain.Shipping.Drained = false },
			"shipping discarded":     func(r *Report) { r.Chain.Shipping.Counts.Discarded = 1 },
			"shipping over-reported": func(r *Report) { r.Chain.Shipping.Counts.Applied = 11 },
			"shipping kill missing":  func(r *Report) { r.Chain.Kills = nil },
			"shipping shutdown":      func(r *Report) { r.Chain.Shipping.ShutdownErr = errors.New("exit status 1") },
		} {
			r := good()
			spoil(r)
			require.NotEmpty(t, r.Failures(), name)
			var out bytes.Buffer
			r.WriteSummary(&out)
			require.Contains(t, out.String(), "FAIL:", name)
		}
	})
}
