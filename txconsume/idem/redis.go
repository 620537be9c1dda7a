package idem

import (
	"context"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// DefaultRedisPrefix is the key prefix NewRedisStore uses when given "".
const DefaultRedisPrefix = "txconsume:"

// Record values are a state letter and the owner token: "P:<owner>" or "C:<owner>". One GET tells
// both the state and who holds it, so each transition compares the whole value in one step.
const (
	redisProcessing = "P:"
	redisConsumed   = "C:"
)

// acquireScript is SET NX PX plus, when the key exists, the value and remaining TTL in the same
// atomic step: a separate GET after a failed SET NX could find the key gone (expired or released
// in between) and report a state that never blocked us.
var acquireScript = redis.NewScript(`
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return {1, '', 0}
end
return {0, redis.call('GET', KEYS[1]) or '', redis.call('PTTL', KEYS[1])}
`)

// markScript replaces owner's PROCESSING value with CONSUMED and the retention as its TTL, only if
// the key still holds exactly that PROCESSING value.
var markScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  return 1
end
return 0
`)

// releaseScript deletes the key only if it still holds owner's PROCESSING value.
var releaseScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
`)

// RedisStore keeps records as Redis strings with a PX expiry: the processing TTL for PROCESSING
// records and the retention for CONSUMED ones, so Redis itself forgets crashed attempts and old
// records and no cleanup job is needed. Expiry follows the Redis server's clock.
//
// Records live at "<prefix>idem:<group>:<topic>:<id>", with ':' and '%' in the group and topic
// percent-escaped so that no two keys share a Redis key. Each operation touches one Redis key, so
// the store works with Redis Cluster.
//
// Redis persistence and replication decide how durable the records are: a failover to a replica
// that missed the latest writes, or a restart without AOF, can forget a CONSUMED record and let a
// later duplicate run again. Use the MySQL store when that matters.
type RedisStore struct {
	client redis.Scripter
	prefix string
}

var _ Store = (*RedisStore)(nil)

// NewRedisStore returns a store on client (a *redis.Client, *redis.ClusterClient or any
// redis.UniversalClient). prefix starts every key; "" means DefaultRedisPrefix.
func NewRedisStore(client redis.Scripter, prefix string) *RedisStore {
	if prefix == "" {
		prefix = DefaultRedisPrefix
	}
	return &RedisStore{client: client, prefix: prefix}
}

// Check implements Checker: Redis answers (PING, or a trivial script when the client given to
// NewRedisStore has no Ping).
func (s *RedisStore) Check(ctx context.Context) error {
	var err error
	if p, ok := s.client.(interface {
		Ping(context.Context) *redis.StatusCmd
	}); ok {
		err = p.Ping(ctx).Err()
	} else {
		err = s.client.Eval(ctx, "return 1", nil).Err()
	}
	if err != nil {
		return fmt.Errorf("idem: Redis store unreachable: %w", err)
	}
	return nil
}

var redisEscaper = strings.NewReplacer("%", "%25", ":", "%3A")

func (s *RedisStore) redisKey(k Key) string {
	return s.prefix + "idem:" + redisEscaper.Replace(k.Group) + ":" + redisEscaper.Replace(k.Topic) + ":" + k.ID
}

// millis rounds d up to whole milliseconds, the unit of PX: rounding down could turn a short TTL
// into 0, which Redis rejects. It divides before rounding up, because adding first overflows for
// durations near the longest one and would turn "keep it for good" into 1ms.
func millis(d time.Duration) int64 {
	ms := int64(d / time.Millisecond)
	if d%time.Millisecond > 0 {
		ms++
	}
	return max(ms, 1)
}

// fromMillis converts a PTTL back to a Duration, saturating: a record kept for the longest
// Duration has its PX rounded up past what a Duration can hold.
func fromMillis(ms int64) time.Duration {
	if ms > int64(math.MaxInt64/time.Millisecond) {
		return math.MaxInt64
	}
	return time.Duration(ms) * time.Millisecond
}

// Acquire implements Store.
func (s *RedisStore) Acquire(ctx context.Context, key Key, owner string, ttl time.Duration) (Acquisition, error) {
	res, err := acquireScript.Run(ctx, s.client, []string{s.redisKey(key)}, redisProcessing+owner, millis(ttl)).Slice()
	if err != nil {
		return Acquisition{}, err
	}
	if len(res) != 3 {
		return Acquisition{}, fmt.Errorf("idem: unexpected acquire reply %v", res)
	}
	if n, _ := res[0].(int64); n == 1 {
		return Acquisition{State: Acquired}, nil
	}
	value, _ := res[1].(string)
	var remaining time.Duration
	if pttl, _ := res[2].(int64); pttl > 0 {
		remaining = fromMillis(pttl)
	}
	switch {
	case strings.HasPrefix(value, redisConsumed):
		return Acquisition{State: Consumed, Remaining: remaining}, nil
	case strings.HasPrefix(value, redisProcessing):
		return Acquisition{State: InProgress, Remaining: remaining}, nil
	default:
		return Acquisition{}, fmt.Errorf("idem: unexpected value %q at %s", value, s.redisKey(key))
	}
}

// MarkConsumed implements Store.
func (s *RedisStore) MarkConsumed(ctx context.Context, key Key, owner string, retention time.Duration) error {
	return s.cas(ctx, markScript, key, redisProcessing+owner, redisConsumed+owner, millis(retention))
}

// Release implements Store.
func (s *RedisStore) Release(ctx context.Context, key Key, owner string) error {
	return s.cas(ctx, releaseScript, key, redisProcessing+owner)
}

func (s *RedisStore) cas(ctx context.Context, script *redis.Script, key Key, args ...any) error {
	n, err := script.Run(ctx, s.client, []string{s.redisKey(key)}, args...).Int()
	switch {
	case err != nil:
		return err
	case n != 1:
		return ErrNotOwner
	default:
		return nil
	}
}
