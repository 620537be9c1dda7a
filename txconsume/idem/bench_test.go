package idem_test

import (
	"context"
	"strconv"
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
