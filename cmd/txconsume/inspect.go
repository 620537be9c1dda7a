package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/txconsume/txconsume/txconsume"
	"github.com/txconsume/txconsume/txconsume/idem"
)

const inspectHelp = `
Shows what is stored for one key of one consumer group:

  dedup       the txconsume_dedup record: outcome, topic, message id, created_at (database time);
  idem mysql  the txconsume_idem records of the key, per topic (if the table exists);
  idem redis  with -redis or $TXCONSUME_REDIS_ADDR set: the idem Redis store's records of the key.

-key is the key as the key function returns it (by default the message ID, RocketMQ UNIQ_KEY).
Keys longer than 255 bytes are stored as "#sha256:" + hex SHA-256; give the original key and
the stored form is computed (txconsume.StoredKey).`

func runInspect(ctx context.Context, args []string, out, errOut io.Writer) error {
	fs := newFlags("inspect", "-group G -key K [-topic T] [-redis ADDR]", inspectHelp, errOut)
	dsn := dsnFlag(fs)
	group := fs.String("group", "", "consumer group (required)")
	key := fs.String("key", "", "deduplication key (required)")
	topic := fs.String("topic", "", "idem records of this topic only (default: every topic)")
	redisAddr, redisPrefix := redisFlags(fs)
	if err := parse(fs, args, 0); err != nil {
		return err
	}
	if err := required(fs, "group", "key"); err != nil {
		return err
	}
	db, err := openMySQL(ctx, *dsn)
	if err != nil {
		return err
	}
	defer db.Close()

	stored := txconsume.StoredKey(*key)
	fmt.Fprintf(out, "group %q key %q\n", *group, *key)
	if stored != *key {
		fmt.Fprintf(out, "stored key %s\n", stored)
	}
	if err := printDedup(ctx, db, *group, stored, out); err != nil {
		return err
	}

	recs, err := idem.NewMySQLStore(db.DB).Inspect(ctx, *group, *topic, *key)
	switch {
	case isNoSuchTable(err):
		fmt.Fprintln(out, "idem mysql: table txconsume_idem does not exist")
	case err != nil:
		return err
	default:
		printIdem(out, "idem mysql", recs)
	}

	if *redisAddr == "" {
		*redisAddr = os.Getenv(envRedis)
	}
	if *redisAddr != "" {
		c, err := openRedis(ctx, *redisAddr)
		if err != nil {
			return err
		}
		defer c.Close()
		recs, err := idem.NewRedisStore(c, *redisPrefix).Inspect(ctx, *group, *topic, *key)
		if err != nil {
			return err
		}
		printIdem(out, "idem redis", recs)
	}
	return nil
}

// dedupRecord is a txconsume_dedup row; created_at is formatted by the server so that it reads
// the same whatever the DSN's parseTime and loc settings.
type dedupRecord struct {
	Outcome   string `db:"outcome"`
	Topic     string `db:"topic"`
	MsgID     string `db:"msg_id"`
	CreatedAt string `db:"created_at"`
	AgeSecs   int64  `db:"age_secs"`
}

func loadDedup(ctx context.Context, q sqlx.QueryerContext, group, stored string, forUpdate bool) (*dedupRecord, error) {
	query := `SELECT outcome, topic, msg_id, DATE_FORMAT(created_at, '%Y-%m-%d %H:%i:%s.%f') AS created_at,
		TIMESTAMPDIFF(SECOND, created_at, UTC_TIMESTAMP(6)) AS age_secs
		FROM ` + txconsume.DedupTable + ` WHERE consumer_group = ? AND dedup_key = ?`
	if forUpdate {
		query += " FOR UPDATE"
	}
	var r dedupRecord
	err := sqlx.GetContext(ctx, q, &r, query, group, stored)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read dedup record: %w", err)
	}
	return &r, nil
}

func printDedup(ctx context.Context, db *sqlx.DB, group, stored string, out io.Writer) error {
	r, err := loadDedup(ctx, db, group, stored, false)
	if err != nil {
		return err
	}
	if r == nil {
		fmt.Fprintln(out, "dedup: no record (the key has not been consumed by this group, or it was deleted by retention)")
		return nil
	}
	writeDedup(out, "dedup:", r)
	return nil
}

func writeDedup(out io.Writer, title string, r *dedupRecord) {
	fmt.Fprintln(out, title)
	fmt.Fprintf(out, "  outcome     %s\n", r.Outcome)
	fmt.Fprintf(out, "  topic       %s\n", r.Topic)
	fmt.Fprintf(out, "  msg_id      %s\n", r.MsgID)
	fmt.Fprintf(out, "  created_at  %s (database time, %s ago)\n", r.CreatedAt, time.Duration(r.AgeSecs)*time.Second)
}

func printIdem(out io.Writer, title string, recs []idem.Record) {
	if len(recs) == 0 {
		fmt.Fprintf(out, "%s: no record\n", title)
		return
	}
	for _, r := range recs {
		fmt.Fprintf(out, "%s: topic %q\n", title, r.Key.Topic)
		fmt.Fprintf(out, "  state       %s\n", r.StateName())
		fmt.Fprintf(out, "  owner       %s\n", r.Owner)
		if r.StoredID != r.Key.ID {
			fmt.Fprintf(out, "  stored_key  %s\n", r.StoredID)
		}
		fmt.Fprintf(out, "  expires     %s\n", describeRemaining(r))
	}
}

func describeRemaining(r idem.Record) string {
	switch {
	case r.Expired():
		return fmt.Sprintf("expired %s ago (counts as absent; gc deletes it)", (-r.Remaining).Round(time.Millisecond))
	case r.Remaining > 100*365*24*time.Hour:
		return "never"
	default:
		return "in " + r.Remaining.Round(time.Millisecond).String()
	}
}
