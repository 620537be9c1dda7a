package idem_test

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/txconsume/txconsume/internal/testenv"
	"github.com/txconsume/txconsume/txconsume/idem"
	"github.com/txconsume/txconsume/txconsume/idem/idemtest"
)

func TestRedisStore(t *testing.T) {
	idemtest.Run(t, func(t *testing.T) idemtest.Backend {
		client, prefix := testenv.Redis(t)
		addr := client.Options().Addr
		return idemtest.Backend{
			NewStore: func(t *testing.T) (idem.Store, func()) {
				c := redis.NewClient(&redis.Options{Addr: addr})
				var once sync.Once
				shutdown := func() { once.Do(func() { _ = c.Close() }) }
				t.Cleanup(shutdown)
				return idem.NewRedisStore(c, prefix), shutdown
			},
			Unreachable: func(t *testing.T) idem.Store {
				// No retries: the outage is reported at once instead of after the client's backoff.
				c := redis.NewClient(&redis.Options{Addr: closedAddr(t), MaxRetries: -1, DialerRetries: 1})
				t.Cleanup(func() { _ = c.Close() })
				return idem.NewRedisStore(c, prefix)
			},
			Effects: redisEffects{client: client, prefix: prefix + "effects:"},
		}
	})
}

// redisEffects counts effects with INCR next to the records, in the same Redis.
type redisEffects struct {
	client *redis.Client
	prefix string
}

func (e redisEffects) Record(ctx context.Context, key string) error {
	return e.client.Incr(ctx, e.prefix+key).Err()
}

func (e redisEffects) Count(ctx context.Context, key string) (int, error) {
	n, err := e.client.Get(ctx, e.prefix+key).Int()
	if errors.Is(err, redis.Nil) {
		return 0, nil
	}
	return n, err
}
