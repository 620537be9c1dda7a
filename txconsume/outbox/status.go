package outbox

import (
	"context"
	"fmt"
	"time"

	"github.com/jmoiron/sqlx"
)

// TopicStatus is the state of one topic's messages in the outbox table.
type TopicStatus struct {
	Topic string
	// Pending is the number of committed messages not yet sent.
	Pending int64
	// OldestPending is the age of the oldest pending message (0 when none is pending), measured
	// on the database's clock from the moment it was enqueued: how far publishing lags behind.
	OldestPending time.Duration
	// Kept is the number of sent messages still in the table: kept for the audit window (see
	// WithRetention), or about to be deleted.
	Kept int64
}

// Status reports, per topic in name order, the pending messages and the age of the oldest, and
// the sent messages still kept. It reads every row of the table, so call it for dashboards and
// alerts (every few seconds at most), not per message.
func Status(ctx context.Context, db *sqlx.DB) ([]TopicStatus, error) {
	rows, err := db.QueryContext(ctx, `SELECT topic,
		SUM(sent_at IS NULL),
		COALESCE(TIMESTAMPDIFF(MICROSECOND, MIN(CASE WHEN sent_at IS NULL THEN created_at END), UTC_TIMESTAMP(6)), 0),
		SUM(sent_at IS NOT NULL)
		FROM `+Table+` GROUP BY topic ORDER BY topic`)
	if err != nil {
		return nil, fmt.Errorf("outbox: status: %w", err)
	}
	defer rows.Close()
	var out []TopicStatus
	for rows.Next() {
		var s TopicStatus
		var topic []byte
		var ageMicros int64
		if err := rows.Scan(&topic, &s.Pending, &ageMicros, &s.Kept); err != nil {
			return nil, fmt.Errorf("outbox: status: %w", err)
		}
		s.Topic = string(topic)
		s.OldestPending = max(0, time.Duration(ageMicros)*time.Microsecond)
		out = append(out, s)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("outbox: status: %w", err)
	}
	return out, nil
}
