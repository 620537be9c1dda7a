package integration

import (
	"context"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestRMQPoisonMessageReachesDLQ: a message whose handler always fails is delivered
// 1+MaxReconsumeTimes times and then moved by the broker to %DLQ%<group>, where a separate consumer
// finds it under its original id. It leaves no effect and no deduplication record; the other
// messages are all applied once.
func TestRMQPoisonMessageReachesDLQ(t *testing.T) {
	const good, maxReconsume = 50, 2
	e := newRMQEnv(t)
	ctx := context.Background()
	_, err := e.db.ExecContext(ctx, `CREATE TABLE attempts (id BIGINT AUTO_INCREMENT PRIMARY KEY, msg_id VARCHAR(128) NOT NULL)`)
	require.NoError(t, err)
	// Created up front for the same reason as the retry topic: the DLQ reader must find its route.
	dlq := e.mq.CreateTopic(t, dlqTopic(e.mq.Group), 1)

	// One message per delivery: with larger ones, the messages that share the poison message's
	// delivery travel with it through the retries (the client acknowledges all or nothing) and
	// reach the dead-letter topic too, as duplicates already applied.
	w := e.startWorker("consumer", workerSpec{Handler: "poison", MaxReconsume: maxReconsume, BatchMax: 1}, e.stats)
	// The DLQ reader is a consumer of its own group on the DLQ topic; it reports what it reads.
	reader := e.startReader(dlq)

	var poisonID string
	for i := 0; i < good; i++ {
		if i == good/2 {
			m := e.newMessage("poison")
			m.WithProperty("poison", "1")
			poisonID = e.send(m)[0]
		}
		e.send(e.newMessage(bodyOf(i)))
	}

	e.waitFor("the poison message in the DLQ", func() bool { return len(reader.deadLetters()) > 0 })
	require.Equal(t, []string{poisonID + " poison 1"}, reader.deadLetters(), "id, body, property of the dead letter")

	e.waitFor("the good messages", func() bool { return e.stats.applied.Load() >= good })
	w.shutdown()
	require.Equal(t, counts{Ledger: good, DistinctKeys: good, Counter: good, Dedup: good}, e.counts())
	var attempts int
	require.NoError(t, e.db.GetContext(ctx, &attempts, `SELECT COUNT(*) FROM attempts WHERE msg_id = ?`, poisonID))
	require.Equal(t, 1+maxReconsume, attempts, "first delivery plus MaxReconsumeTimes redeliveries")
	var recorded int
	require.NoError(t, e.db.GetContext(ctx, &recorded, `SELECT COUNT(*) FROM txconsume_dedup WHERE msg_id = ?`, poisonID))
	require.Zero(t, recorded)
	reader.shutdown()
	require.Len(t, reader.deadLetters(), 1, "the poison message reached the DLQ once")
	require.False(t, strings.Contains(poisonID, " "))
}
