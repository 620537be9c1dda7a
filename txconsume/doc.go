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
// Open the pool with Open (or wrap a connector with Connector): its driver keeps a handler's
// mistakes from committing, at no cost (see "What a handler must not do" below). Any other
// *sqlx.DB works too, for three more statements per transaction.
//
//	db, err := txconsume.Open("app:secret@tcp(db:3306)/shop?interpolateParams=true")
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
//     again with jittered backoff, up to WithMaxRetries times. So does a transaction that the
//     server rolled back while the handler went on (ErrTxAborted, see below). Handlers must therefore keep their
//     effects inside the transaction: whatever they do elsewhere (HTTP calls, e-mail) may happen
//     more than once. For such effects see package idem.
//   - the connection fails after COMMIT was sent: the error wraps ErrCommitUnknown. The server
//     may have committed or not; the redelivery tells (Duplicate if it did). Never acknowledge a
//     message on an error, this one included.
//
// # What a handler must not do
//
// The transaction is the Processor's: it commits it when the handler returns nil and rolls it
// back when the handler returns an error, and the claim of the message's key is in it. The
// Processor's guarantee, that no message is ever acknowledged without its effects, rests on the
// handler keeping to three rules; when it does not, the Processor still reports no message
// Applied that is not, and says what went wrong:
//
//   - Return every error from tx (wrapped or not). On a deadlock (1213) InnoDB rolls back the
//     whole transaction, claim included, and so may a lock wait timeout (1205); the statements a
//     handler runs after swallowing such an error run outside any transaction, each committing on
//     its own on MySQL and MariaDB alike. The Processor finds the transaction gone at commit and
//     fails the attempt with ErrTxAborted: nothing of it is committed (neither the writes before
//     the error nor those after it), no key is recorded, and the whole transaction runs again
//     like any lock conflict (WithMaxRetries). A handler that means to retry a statement after
//     a deadlock cannot: the transaction it was in is gone.
//   - Do not call tx.Commit or tx.Rollback, nor run COMMIT, ROLLBACK, BEGIN or START TRANSACTION
//     through tx. The message fails with ErrHandlerEndedTx, is never reported Applied, and is not
//     run again by the same call (on a pool opened with Open, ProcessBatch goes on with the rest
//     of the batch). Do not run
//     statements that commit implicitly either (CREATE, ALTER, DROP, TRUNCATE, RENAME, LOCK
//     TABLES...): MySQL commits the transaction before them, which no client can prevent.
//   - Keep the effects in tx, and do not use tx after returning or from other goroutines. Work
//     done elsewhere (another connection, an HTTP call) is neither rolled back with the
//     transaction nor deduplicated with it, and runs again on every retry; see package idem.
//
// How the Processor holds to this depends on how the pool was opened. On a pool opened with Open
// or Connector, the driver does it, without a round trip: after an error on which the server
// rolls the whole transaction back, every later statement of it fails with ErrTxAborted (and the
// server's error), and so does its commit, which rolls back instead; a handler's Commit rolls
// back and fails with ErrHandlerEndedTx, so nothing of such a message is committed. On any other
// pool the Processor pins the transaction's connection, turns autocommit off for the span of the
// transaction (so that statements after a server-side rollback open a new transaction instead of
// committing on their own), and before COMMIT checks that its claim is still there, rolling
// back if not: three statements more per transaction, four in row-lock mode. There a handler's
// own Commit does commit: its writes and the claim stand when the handler returned nil (the
// redelivery is a Duplicate); when it returned an error, or, in a batch, for every message whose
// handler had not returned nil by then, the claims that Commit made permanent are removed again,
// so those messages are handled when they come back (writes that handler made before its
// Commit then happen twice), and the whole batch fails with ErrHandlerEndedTx.
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
// A batch transaction that loses a deadlock or lock wait timeout (batches whose messages update
// the same hot rows in different orders) is not rerun whole: it is split into halves, each in a
// transaction of its own, down to single messages. After a conflict between concurrent batch
// transactions the Processor runs fewer of them at once (down to one, which cannot deadlock with
// another), so that batches on hot rows stay whole; after a conflict that concurrency cannot
// explain it cuts later batches into parts of the size that last got through. Both limits grow
// back while transactions commit. Every part claims and commits its own keys, so exactly-once
// holds through every split.
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
