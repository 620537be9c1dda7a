package testenv

import (
	"context"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

var redisBase struct {
	once sync.Once
	addr string
	err  error
}

// RedisAddr returns the address of the Redis server the tests use.
func RedisAddr(t testing.TB) string {
	t.Helper()
	redisBase.once.Do(func() {
		if addr := os.Getenv(EnvRedisAddr); addr != "" {
			redisBase.addr = addr
			return
		}
		redisBase.addr, redisBase.err = startRedisContainer()
	})
	if redisBase.err != nil {
		unavailable(t, "Redis", redisBase.err)
	}
	return redisBase.addr
}

// Redis returns a client and a key prefix unique to this test. Keys under the prefix are
// deleted and the client closed when the test ends.
func Redis(t testing.TB) (client *redis.Client, prefix string) {
	t.Helper()
	client = redis.NewClient(&redis.Options{Addr: RedisAddr(t)})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := client.Ping(ctx).Err(); err != nil {
		_ = client.Close()
		unavailable(t, "Redis", err)
	}
	prefix = UniqueName(t, "txc") + ":"
	t.Cleanup(func() {
		defer client.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		iter := client.Scan(ctx, 0, prefix+"*", 500).Iterator()
		for iter.Next(ctx) {
			client.Del(ctx, iter.Val())
		}
	})
	return client, prefix
}
