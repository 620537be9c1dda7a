package idem

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Operator access to records: looking at a key and removing a stuck record. A Processor never
// needs these; they bypass the owner tokens on purpose.

// ErrNoRecord is returned by ForceRelease and Delete when the key has no record.
var ErrNoRecord = errors.New("idem: no record for key")

// ErrNotProcessing is returned by ForceRelease when the key's record is CONSUMED.
var ErrNotProcessing = errors.New("idem: record is not PROCESSING")

// errRecordChanged means the record changed between reading and deleting it.
var errRecordChanged = errors.New("idem: record changed while it was being removed; look again")

// Record is a stored record as an operator sees it.
type Record struct {
	// Key is the record's group, topic and id; ID is as the caller gave it.
	Key Key
	// StoredID is the id as the store holds it: txconsume.StoredKey(ID) in MySQL (hashed when
	// long), ID itself in Redis.
	StoredID string
	// State is InProgress for a PROCESSING record and Consumed for a CONSUMED one.
	State State
	// Owner is the token of the attempt that holds or consumed the record.
	Owner string
	// Remaining is the time until the record's TTL or retention passes, measured on the store's
	// clock. Zero or less: it has expired and counts as absent (MySQL keeps such rows until
	// Cleanup; Redis has already dropped them).
	Remaining time.Duration
}

// Expired reports whether the record's TTL or retention has passed.
func (r Record) Expired() bool { return r.Remaining <= 0 }

// StateName is "PROCESSING" or "CONSUMED".
func (r Record) StateName() string {
	if r.State == InProgress {
		return "PROCESSING"
	}
	return "CONSUMED"
}

const inspectSQL = `SELECT topic, idem_key, status, owner, TIMESTAMPDIFF(MICROSECOND, UTC_TIMESTAMP(6), expires_at)
FROM txconsume_idem WHERE consumer_group = ? AND idem_key = ?`

const deleteOwnedSQL = `DELETE FROM txconsume_idem
WHERE consumer_group = ? AND topic = ? AND idem_key = ? AND owner = ? AND status = ?`

// Inspect returns the records of id in group: on topic, or on every topic when topic is "".
// Expired rows that Cleanup has not deleted yet are included (see Record.Expired).
func (s *MySQLStore) Inspect(ctx context.Context, group, topic, id string) ([]Record, error) {
	k, err := toMySQLKey(Key{Group: group, Topic: topic, ID: id})
	if err != nil {
		return nil, err
	}
	q, args := inspectSQL, []any{k.group, k.id}
	if topic != "" {
		q += " AND topic = ?"
		args = append(args, k.topic)
	}
	rows, err := s.db.QueryContext(ctx, q+" ORDER BY topic", args...)
	if err != nil {
		return nil, fmt.Errorf("idem: inspect: %w", err)
	}
	defer rows.Close()
	var out []Record
	for rows.Next() {
		var (
			r         Record
			status    int
			remaining int64
		)
		if err := rows.Scan(&r.Key.Topic, &r.StoredID, &status, &r.Owner, &remaining); err != nil {
			return nil, fmt.Errorf("idem: inspect: %w", err)
		}
		r.Key.Group, r.Key.ID = group, id
		r.Remaining = time.Duration(remaining) * time.Microsecond
		r.State = Consumed
		if status == mysqlProcessing {
			r.State = InProgress
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("idem: inspect: %w", err)
	}
	return out, nil
}

// ForceRelease deletes key's PROCESSING record whoever holds it, so that the next delivery
// processes the message, and returns the record it deleted. Use it for a record whose attempt is
// known to be dead and whose TTL is long. If that attempt is in fact still running, its effect
// may happen twice. A CONSUMED record is left alone (ErrNotProcessing); ErrNoRecord means there
// is none.
func (s *MySQLStore) ForceRelease(ctx context.Context, key Key) (Record, error) {
	return s.remove(ctx, key, true)
}

// Delete deletes key's record in any state and returns it. Deleting a CONSUMED record lets a
// redelivery of the message run its effect again.
func (s *MySQLStore) Delete(ctx context.Context, key Key) (Record, error) {
	return s.remove(ctx, key, false)
}

func (s *MySQLStore) remove(ctx context.Context, key Key, onlyProcessing bool) (Record, error) {
	if key.Topic == "" {
		return Record{}, errors.New("idem: a topic is required to remove a record")
	}
	recs, err := s.Inspect(ctx, key.Group, key.Topic, key.ID)
	if err != nil {
		return Record{}, err
	}
	if len(recs) == 0 {
		return Record{}, ErrNoRecord
	}
	r := recs[0]
	if onlyProcessing && r.State != InProgress {
		return r, ErrNotProcessing
	}
	status := mysqlConsumed
	if r.State == InProgress {
		status = mysqlProcessing
	}
	// Delete exactly the record that was read: a new attempt may have taken it over since.
	res, err := s.db.ExecContext(ctx, deleteOwnedSQL, key.Group, key.Topic, r.StoredID, r.Owner, status)
	if err != nil {
		return Record{}, fmt.Errorf("idem: remove: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return Record{}, fmt.Errorf("idem: remove: %w", err)
	}
	if n != 1 {
		return r, errRecordChanged
	}
	return r, nil
}

// redisInspectScript returns a key's value and remaining TTL in one step.
var redisInspectScript = redis.NewScript(`
return {redis.call('GET', KEYS[1]) or '', redis.call('PTTL', KEYS[1])}
`)

// Inspect returns the records of id in group: on topic, or on every topic when topic is "" (which
// scans the keys under the store's prefix: use it sparingly on a large keyspace). With a
// Redis Cluster client, give the topic: SCAN sees one node only.
func (s *RedisStore) Inspect(ctx context.Context, group, topic, id string) ([]Record, error) {
	if topic != "" {
		r, ok, err := s.inspectKey(ctx, Key{Group: group, Topic: topic, ID: id})
		if err != nil || !ok {
			return nil, err
		}
		return []Record{r}, nil
	}
	scanner, ok := s.client.(interface {
		Scan(ctx context.Context, cursor uint64, match string, count int64) *redis.ScanCmd
	})
	if !ok {
		return nil, errors.New("idem: inspect without a topic needs a client that can SCAN")
	}
	groupPrefix := s.prefix + "idem:" + redisEscaper.Replace(group) + ":"
	// The escaped topic holds no ':', so the first ':' after the group part ends it.
	iter := scanner.Scan(ctx, 0, globEscape(groupPrefix)+"*:"+globEscape(id), 1000).Iterator()
	var out []Record
	for iter.Next(ctx) {
		rest := strings.TrimPrefix(iter.Val(), groupPrefix)
		escTopic, gotID, found := strings.Cut(rest, ":")
		if !found || gotID != id {
			continue
		}
		t, err := unescapeRedis(escTopic)
		if err != nil {
			continue
		}
		r, ok, err := s.inspectKey(ctx, Key{Group: group, Topic: t, ID: id})
		if err != nil {
			return nil, err
		}
		if ok {
			out = append(out, r)
		}
	}
	if err := iter.Err(); err != nil {
		return nil, fmt.Errorf("idem: inspect: %w", err)
	}
	return out, nil
}

func (s *RedisStore) inspectKey(ctx context.Context, key Key) (Record, bool, error) {
	res, err := redisInspectScript.Run(ctx, s.client, []string{s.redisKey(key)}).Slice()
	if err != nil {
		return Record{}, false, fmt.Errorf("idem: inspect: %w", err)
	}
	if len(res) != 2 {
		return Record{}, false, fmt.Errorf("idem: unexpected inspect reply %v", res)
	}
	value, _ := res[0].(string)
	if value == "" {
		return Record{}, false, nil
	}
	pttl, _ := res[1].(int64)
	r := Record{Key: key, StoredID: key.ID, Remaining: fromMillis(pttl)}
	switch {
	case strings.HasPrefix(value, redisProcessing):
		r.State, r.Owner = InProgress, strings.TrimPrefix(value, redisProcessing)
	case strings.HasPrefix(value, redisConsumed):
		r.State, r.Owner = Consumed, strings.TrimPrefix(value, redisConsumed)
	default:
		return Record{}, false, fmt.Errorf("idem: unexpected value %q at %s", value, s.redisKey(key))
	}
	if pttl < 0 {
		// -1: no expiry, which this store never sets; report it as not expiring soon.
		r.Remaining = time.Duration(1<<63 - 1)
	}
	return r, true, nil
}

// ForceRelease deletes key's PROCESSING record whoever holds it, so that the next delivery
// processes the message, and returns the record it deleted. See MySQLStore.ForceRelease.
func (s *RedisStore) ForceRelease(ctx context.Context, key Key) (Record, error) {
	return s.remove(ctx, key, true)
}

// Delete deletes key's record in any state and returns it. Deleting a CONSUMED record lets a
// redelivery of the message run its effect again.
func (s *RedisStore) Delete(ctx context.Context, key Key) (Record, error) {
	return s.remove(ctx, key, false)
}

func (s *RedisStore) remove(ctx context.Context, key Key, onlyProcessing bool) (Record, error) {
	r, ok, err := s.inspectKey(ctx, key)
	if err != nil {
		return Record{}, err
	}
	if !ok {
		return Record{}, ErrNoRecord
	}
	if onlyProcessing && r.State != InProgress {
		return r, ErrNotProcessing
	}
	value := redisConsumed + r.Owner
	if r.State == InProgress {
		value = redisProcessing + r.Owner
	}
	// releaseScript deletes the key only if it still holds the value that was read.
	err = s.cas(ctx, releaseScript, key, value)
	if errors.Is(err, ErrNotOwner) {
		return r, errRecordChanged
	}
	if err != nil {
		return Record{}, fmt.Errorf("idem: remove: %w", err)
	}
	return r, nil
}

var globEscaper = strings.NewReplacer(`\`, `\\`, "*", `\*`, "?", `\?`, "[", `\[`, "]", `\]`)

func globEscape(s string) string { return globEscaper.Replace(s) }

func unescapeRedis(s string) (string, error) {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '%' {
			b.WriteByte(s[i])
			continue
		}
		switch {
		case strings.HasPrefix(s[i:], "%25"):
			b.WriteByte('%')
		case strings.HasPrefix(s[i:], "%3A"):
			b.WriteByte(':')
		default:
			return "", fmt.Errorf("idem: bad escape in %q", s)
		}
		i += 2
	}
	return b.String(), nil
}

// CountExpired returns how many rows Cleanup would delete now (a dry run).
func (s *MySQLStore) CountExpired(ctx context.Context) (int64, error) {
	var n int64
	err := s.db.QueryRowContext(ctx, "SELECT COUNT(*) FROM txconsume_idem WHERE expires_at <= UTC_TIMESTAMP(6)").Scan(&n)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("idem: count expired: %w", err)
	}
	return n, nil
}
