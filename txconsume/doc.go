// Package txconsume turns a broker's at-least-once delivery into exactly-once effects on a
// MySQL (or MariaDB) database.
//
// # The model
//
// A broker such as RocketMQ delivers every message at least once: after a consumer crash, a
// timeout or a rebalance, the same message comes again. Making the handler "idempotent by
// checking first" is racy, because two deliveries can check at the same time. txconsume instead
// records that a message was consumed in the same SQL transaction as the business writes the
// message causes:
//
//	BEGIN
//	INSERT INTO txconsume_dedup (consumer_group, dedup_key, ...) VALUES (?, ?, ...)  -- the claim
//	... the handler's writes, through the same tx ...
//	COMMIT
//
// Commit means both the record and the effects exist; rollback means neither does. A redelivery
// finds the record, its INSERT fails with a duplicate-key error, and it is acknowledged as
// Duplicate without running the handler. Two deliveries racing each other are serialised by the
// database itself: the second INSERT waits on the first one's uncommitted row, then either sees
// it committed (Duplicate) or, if the first rolled back, claims the key and applies the message.
// So the broker can deliver as often as it likes; the database state changes once.
//
// # Using it
//
// Apply the schema once per service start (safe from many instances at once):
//
//	err := migrations.Up(ctx, db.DB)
//
// Build a Processor for the consumer group and give it a Handler that does all its work through
// the transaction it receives:
//
//	p, err := txconsume.New(db, "order-service", func(ctx context.Context, tx *sqlx.Tx, m *txconsume.Message) error {
//		var ev OrderPaid
//		if err := json.Unmarshal(m.Body, &ev); err != nil {
//			return txconsume.Discard(err) // poison: never succeeds, stop redelivery
//		}
//		_, err := tx.ExecContext(ctx, "UPDATE orders SET status = 'PAID' WHERE order_no = ?", ev.OrderNo)
//		return err // any error: rollback, redelivery later
//	})
//
// and feed it messages (the rmq package adapts RocketMQ consumers):
//
//	r, err := p.Process(ctx, msg)           // Applied, Duplicate or Discarded
//	rs, err := p.ProcessBatch(ctx, msgs)    // one transaction, one commit, for a whole batch
//
// Only acknowledge a message to the broker when the error is nil.
//
// # What counts as "the same message"
//
// Deduplication is per consumer group and per key. The key is Message.ID by default (RocketMQ's
// UNIQ_KEY, stable across redeliveries); WithKeyFunc can use a business key (KeyByFirstKey) or a
// property (KeyByProperty) when producers may send one business event under several message IDs.
// Keys compare byte for byte. Keys longer than 255 bytes are stored hashed (see StoredKey). An
// empty key is an error (ErrEmptyKey): such a message is never handled.
//
// # Errors and outcomes
//
//   - nil: the effects are committed: Applied.
//   - Discard(err): the message can never succeed; its writes are rolled back and the key is
//     recorded as discarded: Discarded, nil error, the broker stops redelivering it.
//   - ErrAlreadyApplied: the handler found the effect already there: rollback, Duplicate.
//   - RetryAfter(d, err): rollback, the error is returned; transports read the delay with RetryDelay.
//   - any other error, a panic (*PanicError) or a cancelled context: rollback, the error is
//     returned and the message should be redelivered.
//   - a deadlock (1213) or lock wait timeout (1205): the whole transaction, handler included, runs
//     again with jittered backoff, up to WithMaxRetries times. Handlers must therefore keep their
//     effects inside the transaction: whatever they do elsewhere (HTTP calls, e-mail) may happen
//     more than once. For such effects see package idem.
//   - the connection fails after COMMIT was sent: the error wraps ErrCommitUnknown. The server
//     may have committed or not; the redelivery tells (Duplicate if it did). Never acknowledge a
//     message on an error, this one included.
//
// # Batches
//
// ProcessBatch consumes many messages in one transaction: one claim statement, one commit. The
// handlers run without savepoints; if one of them fails (error, panic, Discard,
// ErrAlreadyApplied), the transaction is rolled back and the batch runs once more with a
// savepoint around each handler, so that only the failed messages are rolled back and the others
// commit. A failure inside a batch therefore runs the handlers before it a second time: one more
// reason to keep effects inside the transaction. Failed messages come back in a *BatchError.
//
// # Row-lock mode
//
// When the business state already says whether a message was applied (an order that is PAID),
// WithRowLock drops the dedup table: the handler locks its row with SELECT ... FOR UPDATE, and
// returns ErrAlreadyApplied if the row is already in the target state. The row lock serialises
// concurrent duplicates in the same way the dedup row does.
//
// # Isolation and connection settings
//
// Both REPEATABLE READ (the default of MySQL and MariaDB) and READ COMMITTED work: the claim is a
// unique-key insert, which locks the same way under both. For throughput, set
// interpolateParams=true in the go-sql-driver/mysql DSN when the server is not behind a proxy
// that needs server-side prepared statements: every query with arguments then costs one round
// trip instead of two. The Processor prepares its own claim statement once per pool, so it
// benefits either way.
package txconsume
