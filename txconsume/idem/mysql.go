package idem

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/txconsume/txconsume/migrations"
	"github.com/txconsume/txconsume/txconsume"
	"github.com/txconsume/txconsume/txconsume/internal/pkdelete"
)

// MySQLMaxNameLen is the longest group or topic name, in bytes, that the MySQL store accepts
// (the size of their VARBINARY columns). Longer ones fail with ErrKeyTooLong.
const MySQLMaxNameLen = 255

// Record states in txconsume_idem.status.
const (
	mysqlProcessing = 1
	mysqlConsumed   = 2
)

// MySQLStore keeps records in the table txconsume_idem, created by migrations.Up. It works on
// MySQL 8.0+ and MariaDB 10.6+.
//
// Every time is taken from the database server (UTC_TIMESTAMP(6)), never from the application,
// so clock skew between service instances does not move expiries. Keys are compared byte for byte
// (VARBINARY columns); keys longer than 255 bytes are stored hashed, as txconsume.StoredKey says.
//
// Rows past their expiry (a crashed attempt's PROCESSING row, a CONSUMED row past its retention)
// count as absent and are taken over by the next Acquire; call Cleanup periodically to delete
// them so the table does not grow without bound.
type MySQLStore struct {
	db *sql.DB
}

var _ Store = (*MySQLStore)(nil)

// NewMySQLStore returns a store on db (with sqlx, pass db.DB). db must be a pool, not a
// transaction's connection: each call commits on its own, which is what makes a PROCESSING record
// visible to other consumers while the handler runs.
func NewMySQLStore(db *sql.DB) *MySQLStore { return &MySQLStore{db: db} }

// acquireSQL inserts a PROCESSING row, or takes an existing row over if it has expired, in one
// atomic statement. Why INSERT ... ON DUPLICATE KEY UPDATE rather than a transaction with
// SELECT ... FOR UPDATE: on a missing row, FOR UPDATE takes a gap lock, and two consumers that
// both find the key absent then deadlock on their INSERTs (error 1213), which is the common case
// for a duplicate delivered twice at once. The upsert takes the row's exclusive lock directly:
// concurrent acquires of one key queue on it and each sees the row the previous one left.
//
// The assignments are evaluated left to right and later ones see earlier results, so expires_at,
// which the conditions test, is assigned last. The new owner and expiry are bound again rather
// than read with VALUES(), which MySQL 8.0.20+ deprecates and whose replacement (row aliases) is
// MySQL-only. Whether this statement won is read back afterwards by comparing owners: the rows
// affected count would also tell, but its meaning depends on the DSN's clientFoundRows setting.
const acquireSQL = `INSERT INTO txconsume_idem
    (consumer_group, topic, idem_key, status, owner, expires_at, updated_at)
VALUES (?, ?, ?, 1, ?, UTC_TIMESTAMP(6) + INTERVAL ? MICROSECOND, UTC_TIMESTAMP(6))
ON DUPLICATE KEY UPDATE
    owner      = IF(expires_at <= UTC_TIMESTAMP(6), ?, owner),
    status     = IF(expires_at <= UTC_TIMESTAMP(6), 1, status),
    updated_at = IF(expires_at <= UTC_TIMESTAMP(6), UTC_TIMESTAMP(6), updated_at),
    expires_at = IF(expires_at <= UTC_TIMESTAMP(6), UTC_TIMESTAMP(6) + INTERVAL ? MICROSECOND, expires_at)`

const readSQL = `SELECT status, owner, TIMESTAMPDIFF(MICROSECOND, UTC_TIMESTAMP(6), expires_at)
FROM txconsume_idem WHERE consumer_group = ? AND topic = ? AND idem_key = ?`

const markSQL = `UPDATE txconsume_idem
SET status = 2, expires_at = UTC_TIMESTAMP(6) + INTERVAL ? MICROSECOND, updated_at = UTC_TIMESTAMP(6)
WHERE consumer_group = ? AND topic = ? AND idem_key = ? AND owner = ? AND status = 1`

const releaseSQL = `DELETE FROM txconsume_idem
WHERE consumer_group = ? AND topic = ? AND idem_key = ? AND owner = ? AND status = 1`

// cleanupSelectSQL reads the keys of the oldest expired rows: a consistent read, which takes no
// locks. The rows are then deleted by primary key (see cleanupStatement).
const cleanupSelectSQL = `SELECT consumer_group, topic, idem_key FROM txconsume_idem
WHERE expires_at <= UTC_TIMESTAMP(6) ORDER BY expires_at LIMIT ?`

// maxAcquireTries bounds the retries of Acquire after a deadlock or after the row changed between
// the upsert and the read-back (it expired or was deleted in between).
const maxAcquireTries = 5

type mysqlKey struct{ group, topic, id string }

func toMySQLKey(k Key) (mysqlKey, error) {
	if len(k.Group) > MySQLMaxNameLen || len(k.Topic) > MySQLMaxNameLen {
		return mysqlKey{}, fmt.Errorf("%w: group or topic longer than %d bytes", ErrKeyTooLong, MySQLMaxNameLen)
	}
	return mysqlKey{group: k.Group, topic: k.Topic, id: txconsume.StoredKey(k.ID)}, nil
}

func micros(d time.Duration) int64 { return max(d.Microseconds(), 1) }

// Acquire implements Store.
func (s *MySQLStore) Acquire(ctx context.Context, key Key, owner string, ttl time.Duration) (Acquisition, error) {
	k, err := toMySQLKey(key)
	if err != nil {
		return Acquisition{}, err
	}
	var lastErr error
	for range maxAcquireTries {
		_, err := s.db.ExecContext(ctx, acquireSQL, k.group, k.topic, k.id, owner, micros(ttl), owner, micros(ttl))
		if isDeadlock(err) {
			lastErr = err
			continue
		}
		if err != nil {
			return Acquisition{}, withSchemaHint(err)
		}
		var (
			status    int
			holder    string
			remaining int64
		)
		err = s.db.QueryRowContext(ctx, readSQL, k.group, k.topic, k.id).Scan(&status, &holder, &remaining)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			// Released or cleaned up between the two statements: try again.
			lastErr = errors.New("idem: record vanished during acquire")
			continue
		case err != nil:
			return Acquisition{}, err
		case holder == owner && status == mysqlProcessing:
			return Acquisition{State: Acquired}, nil
		case remaining <= 0:
			// Another owner's row expired after our upsert saw it alive: it is free now.
			lastErr = errors.New("idem: record expired during acquire")
			continue
		case status == mysqlConsumed:
			return Acquisition{State: Consumed, Remaining: time.Duration(remaining) * time.Microsecond}, nil
		case status == mysqlProcessing:
			return Acquisition{State: InProgress, Remaining: time.Duration(remaining) * time.Microsecond}, nil
		default:
			return Acquisition{}, fmt.Errorf("idem: unexpected status %d for %s", status, key)
		}
	}
	return Acquisition{}, fmt.Errorf("idem: acquire %s: gave up after %d tries: %w", key, maxAcquireTries, lastErr)
}

// MarkConsumed implements Store. A row past its TTL that no other attempt has taken over is still
// its owner's to mark: the effect happened and nobody else ran it.
func (s *MySQLStore) MarkConsumed(ctx context.Context, key Key, owner string, retention time.Duration) error {
	k, err := toMySQLKey(key)
	if err != nil {
		return err
	}
	return s.cas(ctx, markSQL, micros(retention), k.group, k.topic, k.id, owner)
}

// Release implements Store.
func (s *MySQLStore) Release(ctx context.Context, key Key, owner string) error {
	k, err := toMySQLKey(key)
	if err != nil {
		return err
	}
	return s.cas(ctx, releaseSQL, k.group, k.topic, k.id, owner)
}

func (s *MySQLStore) cas(ctx context.Context, query string, args ...any) error {
	res, err := s.db.ExecContext(ctx, query, args...)
	if err != nil {
		return err
	}
	// Both statements change the row they match (status or existence), so the count is 1 under
	// either clientFoundRows setting when the owner matched, and 0 otherwise.
	n, err := res.RowsAffected()
	if err != nil {
		return err
	}
	if n != 1 {
		return ErrNotOwner
	}
	return nil
}

// Cleanup batch sizes.
const (
	// DefaultCleanupBatch is the batch size Cleanup uses when given 0 or less.
	DefaultCleanupBatch = 1000
	// MaxCleanupBatch is the largest batch Cleanup accepts: each batch's DELETE carries every key
	// of the batch, and larger batches hold their row locks longer.
	MaxCleanupBatch = 10000
)

// Cleanup deletes expired rows (CONSUMED past their retention and PROCESSING past their TTL,
// which Acquire already treats as absent) in batches of batch rows (DefaultCleanupBatch when
// batch <= 0, at most MaxCleanupBatch), one short statement per batch. It returns how many rows
// it deleted, and stops early when ctx ends. Run it from a periodic job (any number of instances
// may run it at once).
//
// Each batch reads the keys of the oldest expired rows without locking and deletes those rows by
// primary key, checking their expiry again (a row taken over in between is kept). So a batch
// locks only the rows it deletes, and Acquire of other keys never waits for it: a
// DELETE ... ORDER BY expires_at LIMIT would instead lock the expires_at index up to the first
// live row, under REPEATABLE READ, including the gap into which new records are inserted.
func (s *MySQLStore) Cleanup(ctx context.Context, batch int) (int64, error) {
	if batch <= 0 {
		batch = DefaultCleanupBatch
	}
	if batch > MaxCleanupBatch {
		return 0, fmt.Errorf("idem: cleanup: batch must be at most %d, got %d", MaxCleanupBatch, batch)
	}
	var total int64
	for {
		q, args, selected, err := s.cleanupBatch(ctx, batch)
		if err != nil || selected == 0 {
			return total, err
		}
		res, err := s.db.ExecContext(ctx, q, args...)
		if err != nil {
			return total, fmt.Errorf("idem: cleanup: %w", err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return total, fmt.Errorf("idem: cleanup: %w", err)
		}
		total += n
		if selected < batch {
			return total, nil
		}
	}
}

// Check implements Checker: the database answers and the txconsume schema, txconsume_idem
// included, is migrated to the version this build embeds (migrations.Check).
func (s *MySQLStore) Check(ctx context.Context) error {
	if err := s.db.PingContext(ctx); err != nil {
		return fmt.Errorf("idem: MySQL store: database unreachable: %w", err)
	}
	if err := migrations.Check(ctx, s.db); err != nil {
		return fmt.Errorf("idem: MySQL store: %w", err)
	}
	return nil
}

// withSchemaHint says what to do when the table is missing (1146): every delivery would fail
// with that error until the schema is migrated.
func withSchemaHint(err error) error {
	var me *mysql.MySQLError
	if errors.As(err, &me) && me.Number == 1146 {
		return fmt.Errorf("%w (the txconsume schema is not migrated: run migrations.Up(ctx, db) at start-up or `txconsume migrate up`)", err)
	}
	return err
}

// cleanupBatch reads the keys of the next batch of expired rows and returns the DELETE of those
// rows, with how many rows it names (0: nothing left to delete).
func (s *MySQLStore) cleanupBatch(ctx context.Context, batch int) (string, []any, int, error) {
	rows, err := s.db.QueryContext(ctx, cleanupSelectSQL, batch)
	if err != nil {
		return "", nil, 0, fmt.Errorf("idem: cleanup: %w", err)
	}
	defer rows.Close()
	var keys [][][]byte
	for rows.Next() {
		var group, topic, id []byte
		if err := rows.Scan(&group, &topic, &id); err != nil {
			return "", nil, 0, fmt.Errorf("idem: cleanup: %w", err)
		}
		keys = append(keys, [][]byte{group, topic, id})
	}
	if err := rows.Err(); err != nil {
		return "", nil, 0, fmt.Errorf("idem: cleanup: %w", err)
	}
	if len(keys) == 0 {
		return "", nil, 0, nil
	}
	q, args, err := pkdelete.Statement("txconsume_idem", []string{"consumer_group", "topic", "idem_key"}, keys,
		"expires_at <= UTC_TIMESTAMP(6)")
	if err != nil {
		return "", nil, 0, fmt.Errorf("idem: cleanup: %w", err)
	}
	return q, args, len(keys), nil
}

// isDeadlock reports MySQL's deadlock error (1213): InnoDB rolled the statement back to break a
// lock cycle, and running it again is safe. (A lock wait timeout, 1205, is not retried: something
// held the row for the whole innodb_lock_wait_timeout, and the caller's redelivery is the better
// retry.)
func isDeadlock(err error) bool {
	var me *mysql.MySQLError
	return errors.As(err, &me) && me.Number == 1213
}
