package outbox

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"strings"
	"time"

	"github.com/jmoiron/sqlx"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// Table is the table (created by package migrations) that holds enqueued messages.
const Table = "txconsume_outbox"

// shardTable holds one row per shard, which relays lock while they send that shard's rows.
const shardTable = "txconsume_outbox_shard"

// shardCount is the number of rows migration 00003 puts in txconsume_outbox_shard.
const shardCount = 64

// Enqueue stores msgs in the outbox table through tx, to be published by a Relay once tx
// commits. Call it inside the transaction whose writes the messages announce: a txconsume
// handler's tx, or any business transaction. If tx rolls back, the messages are gone with it;
// if it commits, they will be published at least once, each with the id Enqueue gave it as its
// RocketMQ UNIQ_KEY (so consumers that deduplicate by message id, as txconsume does by default,
// apply it once).
//
// Every message is checked first (see Message and the limits MaxBodySize, MaxPropertiesSize):
// an invalid message makes Enqueue return an error wrapping ErrInvalidMessage and store none of
// msgs. An error from the database (a tx already committed or rolled back among them) is
// returned too; after any error the caller should roll tx back, as a txconsume handler does by
// returning it.
//
// When ctx carries an OpenTelemetry span, its context is added to every message's properties
// as W3C traceparent and tracestate, so consumers continue the trace.
//
// Relays running in this process are woken at once. The wake-up comes before tx commits (a
// transaction has no commit hook to wait for), so a relay that finds nothing yet looks again
// after 1, 2, 4 ... 128 ms and then every 128 ms for a second; rows committed by other processes
// are found by polling.
func Enqueue(ctx context.Context, tx *sqlx.Tx, msgs ...Message) error {
	rows := make([]row, len(msgs))
	for i := range msgs {
		r, err := newRow(ctx, &msgs[i])
		if err != nil {
			return fmt.Errorf("%w %d: %w", ErrInvalidMessage, i, err)
		}
		rows[i] = r
	}
	if tx == nil {
		return errors.New("outbox: Enqueue: nil tx")
	}
	if len(msgs) == 0 {
		return nil
	}
	if err := insertRows(ctx, tx, rows); err != nil {
		return err
	}
	wakeRelays()
	return nil
}

// row is a message as stored in the outbox table.
type row struct {
	ID          uint64 `db:"id"`
	MsgID       string `db:"msg_id"`
	Topic       string `db:"topic"`
	Tags        string `db:"tags"`
	Keys        string `db:"msg_keys"` // space-separated, as RocketMQ's KEYS property
	ShardingKey string `db:"sharding_key"`
	Shard       int    `db:"shard"`
	Properties  []byte `db:"properties"` // JSON object, or empty
	Body        []byte `db:"body"`
	Size        int    `db:"size"`
}

// newRow validates m and turns it into a row with a fresh id, the enqueuing context's trace
// context added to its properties.
func newRow(ctx context.Context, m *Message) (row, error) {
	if err := m.validate(); err != nil {
		return row{}, err
	}
	props := m.Properties
	if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
		props = make(map[string]string, len(m.Properties)+2)
		for k, v := range m.Properties {
			props[k] = v
		}
		propagation.TraceContext{}.Inject(ctx, propagation.MapCarrier(props))
	}
	r := row{
		MsgID:       newID(),
		Topic:       m.Topic,
		Tags:        m.Tags,
		Keys:        strings.Join(m.Keys, " "),
		ShardingKey: m.ShardingKey,
		Body:        m.Body,
	}
	r.Shard = shardOf(r.ShardingKey, r.MsgID)
	if len(props) > 0 {
		b, err := json.Marshal(props)
		if err != nil {
			return row{}, fmt.Errorf("encode properties: %w", err)
		}
		r.Properties = b
	}
	propSize := propertiesSize(props, r.Tags, r.Keys, r.ShardingKey, r.MsgID)
	if propSize > MaxPropertiesSize {
		return row{}, fmt.Errorf("properties take %d bytes encoded (with tags, keys, sharding key and id), more than MaxPropertiesSize (%d)",
			propSize, MaxPropertiesSize)
	}
	r.Size = encodedSize(len(r.Body), propSize)
	return r, nil
}

// encodedSize is the size of a message inside a batch send: a 20-byte header, the body, a
// 2-byte properties length and the properties (rocketmq-client-go's Message.Marshal).
func encodedSize(body, props int) int { return 20 + body + 2 + props }

// newID returns a message id of 32 upper-case hex digits, the form of the UNIQ_KEY the
// RocketMQ clients generate: 6 bytes of Unix milliseconds (ids sort roughly by time) and 10
// random bytes. The client's own ids are made of the host's IP, the process id truncated to 16
// bits and a 16-bit counter per second, which can repeat across hosts and restarts; a repeated
// id would make a consumer drop a new message as a duplicate, so these are random instead.
func newID() string {
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], uint64(time.Now().UnixMilli())<<16)
	_, _ = rand.Read(b[6:]) // crypto/rand.Read never fails (Go 1.24+)
	return strings.ToUpper(hex.EncodeToString(b[:]))
}

// keyHash is the hash producer.NewHashQueueSelector takes of a sharding key (FNV-1a, 32 bits),
// so that the outbox and hash-selecting producers put a key on the same queue.
func keyHash(key string) uint32 {
	h := fnv.New32a()
	_, _ = h.Write([]byte(key))
	return h.Sum32()
}

// shardOf is the lock slot of a row: by its sharding key, so that all rows of a key share one,
// or by its id when it has none.
func shardOf(shardingKey, msgID string) int {
	if shardingKey != "" {
		return int(keyHash(shardingKey) % shardCount)
	}
	return int(keyHash(msgID) % shardCount)
}

// insertChunkBytes and insertChunkRows bound one INSERT statement, which must fit the server's
// max_allowed_packet (16 MiB by default on MariaDB, 64 MiB on MySQL).
const (
	insertChunkBytes = 4 << 20
	insertChunkRows  = 500
)

const insertColumns = " (msg_id, topic, tags, msg_keys, sharding_key, shard, properties, body, size) VALUES "

func insertRows(ctx context.Context, tx *sqlx.Tx, rows []row) error {
	for start := 0; start < len(rows); {
		end, bytes := start, 0
		for end < len(rows) && end-start < insertChunkRows && (end == start || bytes+rows[end].Size <= insertChunkBytes) {
			bytes += rows[end].Size
			end++
		}
		var q strings.Builder
		q.WriteString("INSERT INTO " + Table + insertColumns)
		args := make([]any, 0, 9*(end-start))
		for i, r := range rows[start:end] {
			if i > 0 {
				q.WriteString(", ")
			}
			q.WriteString("(?, ?, ?, ?, ?, ?, ?, ?, ?)")
			props := r.Properties
			if props == nil {
				props = []byte{}
			}
			body := r.Body
			if body == nil {
				body = []byte{}
			}
			args = append(args, r.MsgID, r.Topic, r.Tags, r.Keys, r.ShardingKey, r.Shard, props, body, r.Size)
		}
		if _, err := tx.ExecContext(ctx, q.String(), args...); err != nil {
			if errors.Is(err, sql.ErrTxDone) {
				return fmt.Errorf("outbox: Enqueue: the transaction is already committed or rolled back: %w", err)
			}
			return fmt.Errorf("outbox: Enqueue: insert into %s (is the schema migrated?): %w", Table, err)
		}
		start = end
	}
	return nil
}
