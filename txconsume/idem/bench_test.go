package idem_test

import (
	"context"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/txconsume/txconsume/internal/testenv"
	"github.com/txconsume/txconsume/txconsume"
	"github.com/txconsume/txconsume/txconsume/idem"
)

// BenchmarkProcess measures one delivery through the processor with a no-op handler: "new" is a
// first delivery (acquire + mark consumed), "duplicate" a redelivery of a consumed key (acquire
// only).
func BenchmarkProcess(b *testing.B) {
	stores := map[string]func(b *testing.B) idem.Store{
		"MySQL": func(b *testing.B) idem.Store {
			_, db := setupMySQL(b)
			return idem.NewMySQLStore(db)
		},
		"Redis": func(b *testing.B) idem.Store {
			client, prefix := testenv.Redis(b)
			return idem.NewRedisStore(client, prefix)
		},
	}
	for name, newStore := range stores {
		b.Run(name, func(b *testing.B) {
			p, err := idem.New(newStore(b), "bench", func(context.Context, *txconsume.Message) error { return nil })
			if err != nil {
				b.Fatal(err)
			}
			ctx := context.Background()
			b.Run("new", func(b *testing.B) {
				i := 0
				for b.Loop() {
					i++
					if _, err := p.Process(ctx, &txconsume.Message{ID: "n-" + strconv.Itoa(i), Topic: "t"}); err != nil {
						b.Fatal(err)
					}
				}
			})
			b.Run("duplicate", func(b *testing.B) {
				msg := &txconsume.Message{ID: "dup", Topic: "t"}
				if _, err := p.Process(ctx, msg); err != nil {
					b.Fatal(err)
				}
				for b.Loop() {
					if r, err := p.Process(ctx, msg); err != nil || r != txconsume.Duplicate {
						b.Fatal(r, err)
					}
				}
			})
		})
	}
}

// BenchmarkStatusMode compares, at 16 goroutines, the status mode on each store with its bare
// baseline: the same handler called directly. The handler's effect is one autocommitted INSERT,
// standing in for an effect outside any transaction (an HTTP call, say) of similar cost.
func BenchmarkStatusMode(b *testing.B) {
	if testing.Short() {
		b.Skip("-short: needs MySQL and Redis")
	}
	_, db := setupMySQL(b)
	client, prefix := testenv.Redis(b)
	var seq atomic.Int64
	effect := func(ctx context.Context, m *txconsume.Message) error {
		_, err := db.ExecContext(ctx, "INSERT INTO idem_effects (effect_key) VALUES (?)", m.ID)
		return err
	}
	next := func() *txconsume.Message {
		return &txconsume.Message{ID: "s-" + strconv.FormatInt(seq.Add(1), 10), Topic: "t"}
	}
	ctx := context.Background()
	const conc = 16
	run := func(b *testing.B, fn func() error) { testenv.RunParallel(b, conc, 1, fn) }
	for _, s := range []struct {
		name  string
		store idem.Store
	}{{"MySQL", idem.NewMySQLStore(db)}, {"Redis", idem.NewRedisStore(client, prefix)}} {
		p, err := idem.New(s.store, "bench", effect)
		if err != nil {
			b.Fatal(err)
		}
		b.Run("store="+s.name+"/conc=16/bare", func(b *testing.B) {
			run(b, func() error { return effect(ctx, next()) })
		})
		b.Run("store="+s.name+"/conc=16/status-mode", func(b *testing.B) {
			run(b, func() error {
				_, err := p.Process(ctx, next())
				return err
			})
		})
	}
}
