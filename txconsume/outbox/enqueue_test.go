package outbox_test

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/json"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/trace"

	"github.com/txconsume/txconsume/txconsume/outbox"
)

func TestEnqueue(t *testing.T) {
	ctx := context.Background()
	type stored struct {
		MsgID       string `db:"msg_id"`
		Topic       string `db:"topic"`
		Tags        string `db:"tags"`
		Keys        string `db:"msg_keys"`
		ShardingKey string `db:"sharding_key"`
		Shard       int    `db:"shard"`
		Properties  []byte `db:"properties"`
		Body        []byte `db:"body"`
		Pending     bool   `db:"pending"`
	}
	read := func(t *testing.T, db interface {
		Select(any, string, ...any) error
	}) []stored {
		var rows []stored
		require.NoError(t, db.Select(&rows, "SELECT msg_id, topic, tags, msg_keys, sharding_key, shard, properties, body, "+
			"sent_at IS NULL AS pending FROM txconsume_outbox ORDER BY id"))
		return rows
	}

	t.Run("stores every field byte for byte with a fresh id, pending, in the caller's transaction", func(t *testing.T) {
		db, _ := newDB(t)
		tx, err := db.Beginx()
		require.NoError(t, err)
		body := []byte{0, 1, 2, 0xff, 'x'}
		require.NoError(t, outbox.Enqueue(ctx, tx,
			outbox.Message{Topic: "orders", Tags: "paid", Keys: []string{"order-1", "Ünïcode"}, ShardingKey: "order-1",
				Body: body, Properties: map[string]string{"a": "1", "b": "<&>"}},
			outbox.Message{Topic: "orders", Body: []byte("second")},
		))
		require.Zero(t, countRows(t, db, "1"), "invisible before commit")
		require.NoError(t, tx.Commit())

		rows := read(t, db)
		require.Len(t, rows, 2)
		first := rows[0]
		require.Equal(t, "orders", first.Topic)
		require.Equal(t, "paid", first.Tags)
		require.Equal(t, "order-1 Ünïcode", first.Keys)
		require.Equal(t, "order-1", first.ShardingKey)
		require.Equal(t, body, first.Body)
		require.True(t, first.Pending)
		var props map[string]string
		require.NoError(t, json.Unmarshal(first.Properties, &props))
		require.Equal(t, map[string]string{"a": "1", "b": "<&>"}, props)
		require.Empty(t, rows[1].Properties)
		require.Equal(t, []byte("second"), rows[1].Body)
		for _, r := range rows {
			require.Regexp(t, "^[0-9A-F]{32}$", r.MsgID)
			require.True(t, r.Shard >= 0 && r.Shard < 64)
		}
		require.NotEqual(t, rows[0].MsgID, rows[1].MsgID)
	})

	t.Run("a key's messages share one shard", func(t *testing.T) {
		db, _ := newDB(t)
		var msgs []outbox.Message
		for range 20 {
			msgs = append(msgs, outbox.Message{Topic: "orders", ShardingKey: "order-7", Body: []byte("x")})
		}
		enqueue(t, db, msgs...)
		var shards int
		require.NoError(t, db.Get(&shards, "SELECT COUNT(DISTINCT shard) FROM txconsume_outbox"))
		require.Equal(t, 1, shards)
	})

	t.Run("ids are unique", func(t *testing.T) {
		db, _ := newDB(t)
		msgs := make([]outbox.Message, 2000)
		for i := range msgs {
			msgs[i] = outbox.Message{Topic: "orders", Body: []byte("x")}
		}
		enqueue(t, db, msgs...)
		var distinct int
		require.NoError(t, db.Get(&distinct, "SELECT COUNT(DISTINCT msg_id) FROM txconsume_outbox"))
		require.Equal(t, 2000, distinct)
	})

	t.Run("the enqueuing span's context goes into traceparent and tracestate", func(t *testing.T) {
		db, _ := newDB(t)
		traceID, _ := trace.TraceIDFromHex("4bf92f3577b34da6a3ce929d0e0e4736")
		spanID, _ := trace.SpanIDFromHex("00f067aa0ba902b7")
		state, err := trace.ParseTraceState("vendor=value")
		require.NoError(t, err)
		sc := trace.NewSpanContext(trace.SpanContextConfig{TraceID: traceID, SpanID: spanID,
			TraceFlags: trace.FlagsSampled, TraceState: state})
		traced := trace.ContextWithSpanContext(ctx, sc)

		user := map[string]string{"a": "1"}
		tx, err := db.Beginx()
		require.NoError(t, err)
		require.NoError(t, outbox.Enqueue(traced, tx, outbox.Message{Topic: "orders", Body: []byte("x"), Properties: user}))
		require.NoError(t, outbox.Enqueue(ctx, tx, outbox.Message{Topic: "orders", Body: []byte("untraced")}))
		require.NoError(t, tx.Commit())
		require.Equal(t, map[string]string{"a": "1"}, user, "the caller's map is not changed")

		rows := read(t, db)
		var props map[string]string
		require.NoError(t, json.Unmarshal(rows[0].Properties, &props))
		require.Equal(t, map[string]string{
			"a":           "1",
			"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
			"tracestate":  "vendor=value",
		}, props)
		require.Empty(t, rows[1].Properties)
	})

	t.Run("invalid messages are refused and none of the call's messages is stored", func(t *testing.T) {
		db, _ := newDB(t)
		good := outbox.Message{Topic: "orders", Body: []byte("ok")}
		cases := map[string]struct {
			msg  outbox.Message
			want string
		}{
			"empty topic":           {outbox.Message{Body: []byte("x")}, "topic is empty"},
			"topic with a space":    {outbox.Message{Topic: "or ders"}, "characters RocketMQ does not allow"},
			"topic too long":        {outbox.Message{Topic: strings.Repeat("t", 128)}, "more than 127"},
			"system topic":          {outbox.Message{Topic: "SCHEDULE_TOPIC_XXXX"}, "system topic"},
			"oversize body":         {outbox.Message{Topic: "orders", Body: make([]byte, outbox.MaxBodySize+1)}, "more than MaxBodySize"},
			"empty key":             {outbox.Message{Topic: "orders", Keys: []string{"a", ""}}, "key 1 is empty"},
			"key with a space":      {outbox.Message{Topic: "orders", Keys: []string{"a b"}}, "contains a space"},
			"tags with ||":          {outbox.Message{Topic: "orders", Tags: "a||b"}, `contain "||"`},
			"control char in tags":  {outbox.Message{Topic: "orders", Tags: "a\x01"}, "control characters"},
			"sharding key too long": {outbox.Message{Topic: "orders", ShardingKey: strings.Repeat("k", 256)}, "more than 255"},
			"reserved property":     {outbox.Message{Topic: "orders", Properties: map[string]string{"UNIQ_KEY": "x"}}, "reserved by RocketMQ"},
			"delay property":        {outbox.Message{Topic: "orders", Properties: map[string]string{"DELAY": "3"}}, "reserved by RocketMQ"},
			"empty property value":  {outbox.Message{Topic: "orders", Properties: map[string]string{"a": ""}}, "must not be empty"},
			"empty property name":   {outbox.Message{Topic: "orders", Properties: map[string]string{"": "v"}}, "must not be empty"},
			"separator in a name":   {outbox.Message{Topic: "orders", Properties: map[string]string{"a\x02b": "v"}}, "control characters"},
			"separator in a value":  {outbox.Message{Topic: "orders", Properties: map[string]string{"a": "v\x01w"}}, "control characters"},
			"invalid UTF-8":         {outbox.Message{Topic: "orders", Properties: map[string]string{"a": "\xff"}}, "not valid UTF-8"},
			"properties too large": {outbox.Message{Topic: "orders", Properties: map[string]string{"a": strings.Repeat("v", outbox.MaxPropertiesSize)}},
				"more than MaxPropertiesSize"},
		}
		for name, c := range cases {
			t.Run(name, func(t *testing.T) {
				tx, err := db.Beginx()
				require.NoError(t, err)
				defer tx.Rollback()
				err = outbox.Enqueue(ctx, tx, good, c.msg)
				require.ErrorIs(t, err, outbox.ErrInvalidMessage)
				require.ErrorContains(t, err, "invalid message 1: ")
				require.ErrorContains(t, err, c.want)
				require.NoError(t, tx.Commit(), "the transaction itself is still usable")
				require.Zero(t, countRows(t, db, "1"))
			})
		}
	})

	t.Run("the limits are exact", func(t *testing.T) {
		db, _ := newDB(t)
		largest := largestMessage("orders")
		enqueue(t, db, largest)
		require.Equal(t, 1, countRows(t, db, "1"))

		over := largest
		over.Properties = map[string]string{"p": largest.Properties["p"] + "v"}
		tx, err := db.Beginx()
		require.NoError(t, err)
		defer tx.Rollback()
		require.ErrorContains(t, outbox.Enqueue(ctx, tx, over), "more than MaxPropertiesSize")
	})

	t.Run("a transaction already done is an error and stores nothing", func(t *testing.T) {
		db, _ := newDB(t)
		for _, end := range []string{"commit", "rollback"} {
			tx, err := db.Beginx()
			require.NoError(t, err)
			if end == "commit" {
				require.NoError(t, tx.Commit())
			} else {
				require.NoError(t, tx.Rollback())
			}
			err = outbox.Enqueue(ctx, tx, outbox.Message{Topic: "orders", Body: []byte("late")})
			require.ErrorIs(t, err, sql.ErrTxDone, end)
			require.ErrorContains(t, err, "already committed or rolled back")
		}
		require.Zero(t, countRows(t, db, "1"))
	})

	t.Run("a rolled-back transaction leaves nothing", func(t *testing.T) {
		db, _ := newDB(t)
		tx, err := db.Beginx()
		require.NoError(t, err)
		require.NoError(t, outbox.Enqueue(ctx, tx, outbox.Message{Topic: "orders", Body: []byte("x")}))
		require.NoError(t, tx.Rollback())
		require.Zero(t, countRows(t, db, "1"))
	})

	t.Run("no messages is a no-op; a nil tx is an error", func(t *testing.T) {
		db, _ := newDB(t)
		tx, err := db.Beginx()
		require.NoError(t, err)
		require.NoError(t, outbox.Enqueue(ctx, tx))
		require.NoError(t, tx.Commit())
		require.ErrorContains(t, outbox.Enqueue(ctx, nil, outbox.Message{Topic: "orders"}), "nil tx")
	})

	t.Run("without the schema the error says so", func(t *testing.T) {
		db, _ := newDB(t)
		_, err := db.Exec("DROP TABLE txconsume_outbox")
		require.NoError(t, err)
		tx, err := db.Beginx()
		require.NoError(t, err)
		defer tx.Rollback()
		require.ErrorContains(t, outbox.Enqueue(ctx, tx, outbox.Message{Topic: "orders"}), "is the schema migrated?")
	})
}

// largestMessage is the largest message Enqueue accepts: a body of MaxBodySize random bytes
// (which do not compress) and properties of exactly MaxPropertiesSize bytes, counting the tags,
// keys, sharding key and id the relay adds.
func largestMessage(topic string) outbox.Message {
	body := make([]byte, outbox.MaxBodySize)
	_, _ = rand.Read(body)
	shardingKey := strings.Repeat("s", 155)
	fixed := len("TAGS") + 1 + 2 + len("KEYS") + 1 + 2 + len("SHARDING_KEY") + len(shardingKey) + 2 + len("UNIQ_KEY") + 32 + 2
	return outbox.Message{Topic: topic, Tags: "t", Keys: []string{"k"}, ShardingKey: shardingKey, Body: body,
		Properties: map[string]string{"p": strings.Repeat("v", outbox.MaxPropertiesSize-fixed-len("p")-2)}}
}
