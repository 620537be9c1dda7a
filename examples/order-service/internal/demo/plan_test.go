package demo

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestPlan(t *testing.T) {
	cfg := Config{Orders: 1000, SameIDResends: 0.2, NewIDResends: 0.1, Seed: 7}
	p := newPlan(&cfg)
	t.Run("every order is paid by one original and its re-sends, back to back", func(t *testing.T) {
		require.Len(t, p.sends, 1000)
		total := 0
		for i, sends := range p.sends {
			require.Equal(t, "original", sends[0].kind)
			for _, s := range sends {
				require.Equal(t, p.orders[i].OrderNo, s.event.OrderNo)
				require.Equal(t, p.orders[i].AmountCents, s.event.AmountCents)
				switch s.kind {
				case "same-id":
					require.Equal(t, sends[0].uniqKey, s.uniqKey)
				case "new-id":
					require.NotEqual(t, sends[0].uniqKey, s.uniqKey)
				}
			}
			total += len(sends)
		}
		require.Equal(t, p.messages, total)
		require.Equal(t, 1000+p.sameIDDups+p.newIDDups, p.messages)
		copies := 0
		for _, c := range p.copies {
			copies += c
		}
		require.Equal(t, p.messages, copies)
	})
	t.Run("duplicate shares follow the configuration and the seed", func(t *testing.T) {
		require.InDelta(t, 200, p.sameIDDups, 50)
		require.InDelta(t, 100, p.newIDDups, 40)
		again := newPlan(&cfg)
		require.Equal(t, p.sameIDDups, again.sameIDDups)
		require.Equal(t, p.newIDDups, again.newIDDups)
		require.Equal(t, p.orders, again.orders)
	})
	t.Run("stock covers every order twice", func(t *testing.T) {
		need := map[string]int{}
		for _, o := range p.orders {
			need[o.SKU] += o.Quantity
		}
		for sku, n := range need {
			require.Equal(t, 2*n, p.stock[sku], sku)
		}
	})
}
