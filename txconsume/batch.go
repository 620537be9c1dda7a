package txconsume

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/txconsume/txconsume/txconsume/internal/sqlerr"
)

// savepoint is set before each handler of a batch in the savepoint mode. Reusing one name
// replaces the previous savepoint (SQL standard, MySQL and MariaDB), so no RELEASE is needed.
const savepoint = "txconsume_msg"

// errNeedSavepoints ends a batch attempt in which a handler failed in a way that needs that
// message alone rolled back (in the optimistic mode), or ended the transaction (on a guarded
// pool, which rolled it back); the batch then runs again in the savepoint mode.
var errNeedSavepoints = errors.New("txconsume: a message of the batch needs its own rollback")

// ProcessBatch consumes msgs in one transaction, which costs one commit instead of len(msgs):
//
//   - the keys of the whole batch are claimed by one multi-row statement (one per 1000 keys),
//     and one SELECT tells which of them this transaction claimed; the others were consumed
//     before: Duplicate (a single key is claimed by a plain INSERT, as in Process);
//   - messages sharing a key inside the batch collapse: the first one is handled, the later
//     ones are Duplicate (or fail with it, if it fails);
//   - the handlers run one after the other in that transaction, without savepoints. If all of
//     them succeed (the common case), the transaction commits;
//   - if a handler fails (error, panic, Discard, ErrAlreadyApplied), the transaction is rolled
//     back and the batch runs again from the start, each handler behind a savepoint: a handler
//     that fails then is rolled back to its savepoint and its claim is removed, so a redelivery
//     applies it; Discard and ErrAlreadyApplied roll back to the savepoint too, with the
//     outcomes Process gives them; the messages that did not fail commit together. So a
//     failure runs the handlers up to the failing one a second time, which is one more reason
//     why handlers must keep their effects inside the transaction.
//
// A deadlock or lock wait timeout splits the transaction instead of rerunning it whole: its
// messages run again as two halves, each in a transaction of its own, and a half that loses a
// lock conflict again is halved again, down to single messages, which are retried with backoff
// up to WithMaxRetries times like Process. Batches whose messages update the same rows in
// different orders (hot rows) thus end up in transactions small enough not to collide, and every
// part commits (or fails) on its own, its keys with it. The Processor also learns from the
// conflict. If other batch transactions of the Processor ran beside the one that lost, it runs
// fewer at once: half as many as were in flight, down to one, which cannot deadlock with another
// whatever rows the handlers touch; the limit grows again by one while transactions commit, and a
// ProcessBatch call waits (or returns its context's error) for its turn; a transaction of one
// message takes no turn. Batches on hot rows thus stay whole, one claim statement and one commit
// for all their messages. If no other batch ran beside it (the conflict was within the batch, or
// with another process), it remembers how large a transaction last got through instead: the
// messages of later batches are cut into parts of that size, which grows again by one message per
// part that commits and halves on each conflict. Either way contention costs few failed
// transactions, and a batch under no contention stays one transaction that never waits. A split
// calls Hooks.OnRetry with the part that lost, and a zero delay; it does not count against
// WithMaxRetries, but WithMaxRetries(0) turns splitting off too.
//
// The returned slice has one Result per message, in order. If some messages failed, the error
// is a *BatchError listing them, their results are zero, and all other results are committed;
// this includes the messages of a part that failed as a whole (a lock conflict that outlived the
// retries, say) after another part had committed. Any other error (begin, claim, commit,
// context, or a lock conflict that outlived the retries, before any part committed) fails the
// whole batch and the results are nil: redeliver all of it. Nothing was committed then, except
// when the error wraps ErrCommitUnknown: the connection failed after COMMIT was sent, so the
// batch may have been committed, and its redelivery finds those messages Duplicate. The rerun in
// the savepoint mode after a failure is not a retry: it neither counts against WithMaxRetries nor
// calls Hooks.OnRetry. Hooks.OnResult is called once per message, with the outcome of the
// transaction that decided it, never for a discarded optimistic run. A handler panic is logged
// by each run that hits it.
func (p *Processor) ProcessBatch(ctx context.Context, msgs []*Message) ([]Result, error) {
	if p.isClosed() {
		return nil, ErrClosed
	}
	start := time.Now()
	b := p.prepareBatch(ctx, msgs)
	var results []Result
	var err error
	if b.pending() {
		err = p.runParts(ctx, b)
	}
	if err != nil {
		err = fmt.Errorf("txconsume: group %s batch of %d: %w", p.group, len(msgs), err)
	} else {
		results, err = b.finish()
	}
	for i := range b.items {
		if results != nil && b.items[i].result == Discarded {
			p.reportDiscard(b.ctxs[i], msgs[i], b.items[i].key, b.items[i].herr)
		}
	}
	if p.cfg.hooks.OnResult != nil {
		elapsed := time.Since(start)
		for i, m := range msgs {
			if m == nil {
				continue
			}
			switch {
			case results == nil:
				p.cfg.hooks.OnResult(b.ctxs[i], m, 0, err, elapsed)
			case b.items[i].failed != nil:
				p.cfg.hooks.OnResult(b.ctxs[i], m, 0, b.items[i].failed, elapsed)
			default:
				p.cfg.hooks.OnResult(b.ctxs[i], m, results[i], nil, elapsed)
			}
		}
	}
	return results, err
}

// batch is the state of one ProcessBatch call. Key errors are decided once; everything an
// attempt decides is reset before each attempt.
type batch struct {
	msgs  []*Message
	ctxs  []context.Context // per message: what Hooks.OnStart returned, for its handler and hooks
	items []batchItem

	// savepoints makes every attempt run each handler behind a savepoint; set for the rest of
	// the part once an optimistic attempt had a failing message.
	savepoints bool

	// leaveLane, set while an attempt holds a lane, gives the lane back before its COMMIT.
	leaveLane func()
}

type batchItem struct {
	key    string // stored key; "" in row-lock mode or on keyErr
	keyErr error  // decided once, never retried
	first  int    // index of the first message with the same key (itself if first)
	ended  error  // its handler ended the transaction: it fails and is not run again in this call

	// per attempt
	result Result
	herr   error // handler's Discard / ErrAlreadyApplied error
	failed error
}

func (p *Processor) prepareBatch(ctx context.Context, msgs []*Message) *batch {
	b := &batch{msgs: msgs, ctxs: make([]context.Context, len(msgs)), items: make([]batchItem, len(msgs))}
	firstOf := map[string]int{}
	for i, m := range msgs {
		it := &b.items[i]
		it.first = i
		b.ctxs[i] = ctx
		if m == nil {
			it.keyErr = errors.New("txconsume: nil message")
			continue
		}
		b.ctxs[i] = p.cfg.hooks.start(ctx, p.group, m)
		if p.cfg.rowLock {
			continue
		}
		k, err := p.key(m)
		if err != nil {
			it.keyErr = err
			continue
		}
		it.key = StoredKey(k)
		if j, ok := firstOf[it.key]; ok {
			it.first = j
			continue
		}
		firstOf[it.key] = i
	}
	return b
}

// pending reports whether any message needs a transaction.
func (b *batch) pending() bool {
	for i := range b.items {
		if b.items[i].keyErr == nil {
			return true
		}
	}
	return false
}

func (b *batch) finish() ([]Result, error) {
	// Later copies of a key share the first copy's fate.
	for i := range b.items {
		it := &b.items[i]
		if it.keyErr != nil || it.first == i {
			continue
		}
		if f := b.items[it.first].failed; f != nil {
			it.failed = fmt.Errorf("txconsume: same key as message %d of the batch, which failed: %w", it.first, f)
		} else if b.items[it.first].ended == nil {
			it.result = Duplicate
		}
	}
	results := make([]Result, len(b.items))
	var be BatchError
	for i := range b.items {
		it := &b.items[i]
		if it.keyErr != nil {
			it.failed = it.keyErr
		}
		if b.items[it.first].ended != nil && it.failed == nil {
			it.failed = b.items[it.first].ended
		}
		if it.failed != nil {
			id := ""
			if b.msgs[i] != nil {
				id = b.msgs[i].ID
			}
			be.Failures = append(be.Failures, BatchFailure{Index: i, MessageID: id, Err: it.failed})
			continue
		}
		results[i] = it.result
	}
	if len(be.Failures) > 0 {
		return results, &be
	}
	return results, nil
}

// batchAttempt runs the whole batch in one transaction. Without b.savepoints it is optimistic: the
// handlers run without savepoints, and the first failure that needs a per-message rollback ends
// the attempt with errNeedSavepoints after rolling everything back (the deferred Rollback runs
// before the caller begins the next transaction, so that one does not wait on this one's locks).
func (p *Processor) batchAttempt(ctx context.Context, b *batch, part []int) error {
	for _, i := range part {
		it := &b.items[i]
		it.result, it.herr, it.failed = 0, nil, nil
	}
	t, err := p.begin(ctx)
	if err != nil {
		return err
	}
	defer t.close()
	done := false
	defer func() {
		if !done {
			t.rollback()
		}
	}()

	claimed := map[string]bool{}
	if !p.cfg.rowLock {
		if claimed, err = p.claimBatch(ctx, t.Tx, b, part, t.token); err != nil {
			return err
		}
	}

	var unclaim, discarded []string
	for _, i := range part {
		m, it := b.msgs[i], &b.items[i]
		if !p.cfg.rowLock && !claimed[it.key] {
			it.result = Duplicate
			continue
		}
		if it.ended != nil {
			unclaim = append(unclaim, it.key)
			continue
		}
		if b.savepoints {
			if _, err := t.ExecContext(ctx, "SAVEPOINT "+savepoint); err != nil {
				if t.endedByHandler(err) {
					done = true
					return p.batchEnded(ctx, t, b, part, nil)
				}
				return fmt.Errorf("savepoint: %w", err)
			}
		}
		herr := p.call(b.ctxs[i], t.Tx, m)
		if t.owner != nil && t.endedByHandler(nil) {
			// On a guarded pool the driver refused this handler's Commit (and rolled back) or
			// saw its Rollback: nothing was committed. Run the batch again without it.
			it.ended = p.handlerEnded(ctx, t, []*Message{m}, nil, herr)
			return errNeedSavepoints
		}
		if herr == nil {
			it.result = Applied
			continue
		}
		if t.endedByHandler(herr) {
			// On a plain pool a handler up to this one ended the transaction: which one, and
			// whether its Commit made the claims permanent, the Processor cannot know.
			done = true
			return p.batchEnded(ctx, t, b, part, herr)
		}
		if sqlerr.IsRetryable(herr) {
			// A deadlock has already rolled back the whole transaction; rerun all of it.
			return herr
		}
		if !b.savepoints {
			if cerr := ctx.Err(); cerr != nil {
				// The savepoint mode could not run either; fail the batch as it would.
				if errors.Is(herr, cerr) {
					return herr
				}
				return fmt.Errorf("%w (and then: %w)", herr, cerr)
			}
			return errNeedSavepoints
		}
		if _, err := t.ExecContext(ctx, "ROLLBACK TO SAVEPOINT "+savepoint); err != nil {
			if t.endedByHandler(err) {
				done = true
				return p.batchEnded(ctx, t, b, part, herr)
			}
			if sqlerr.Number(err) == sqlerr.NoSuchSavepoint {
				// The server rolled the transaction back and the handler returned another error.
				err = fmt.Errorf("%w: %w", ErrTxAborted, err)
			}
			return fmt.Errorf("rollback to savepoint after %w: %w", herr, err)
		}
		switch {
		case IsDiscard(herr):
			it.result, it.herr = Discarded, herr
			discarded = append(discarded, it.key)
		case errors.Is(herr, ErrAlreadyApplied):
			it.result, it.herr = Duplicate, herr
			unclaim = append(unclaim, it.key)
		default:
			it.failed = herr
			unclaim = append(unclaim, it.key)
		}
	}
	witness := ""
	if !p.cfg.rowLock {
		if err := p.updateClaims(ctx, t.Tx, "DELETE FROM "+DedupTable, unclaim, 0); err != nil {
			if t.endedByHandler(err) {
				done = true
				return p.batchEnded(ctx, t, b, part, nil)
			}
			return fmt.Errorf("remove failed claims: %w", err)
		}
		if err := p.updateClaims(ctx, t.Tx, "UPDATE "+DedupTable+" SET outcome = '"+OutcomeDiscarded+"'", discarded, 0); err != nil {
			if t.endedByHandler(err) {
				done = true
				return p.batchEnded(ctx, t, b, part, nil)
			}
			return fmt.Errorf("record discards: %w", err)
		}
		witness = b.witness(part)
	}
	done = true
	if b.leaveLane != nil {
		b.leaveLane() // every lock is taken: the next batch transaction may start (see laneAttempt)
	}
	if err := t.commit(witness); err != nil {
		if errors.Is(err, errHandlerEnded) || t.endedByHandler(err) {
			return p.batchEnded(ctx, t, b, part, nil)
		}
		if errors.Is(err, ErrTxAborted) {
			p.cfg.logger.WarnContext(ctx, "txconsume: the server rolled the batch transaction back but a handler went "+
				"on and returned nil; a handler must return every error from tx", slog.String("group", p.group),
				slog.Any("error", err))
		}
		return err
	}
	return nil
}

// witness returns a key that this part's transaction claimed and still holds (its message was
// applied or discarded), or "" if there is none. Keys of other parts were claimed by other
// transactions, under other tokens.
func (b *batch) witness(part []int) string {
	for _, i := range part {
		if it := &b.items[i]; it.result == Applied || it.result == Discarded {
			return it.key
		}
	}
	return ""
}

// batchEnded fails the part after a handler ended its transaction on a plain pool. If that was a
// Commit, it made the claims of the whole part permanent: those of the messages whose handlers
// had returned nil stay (their effects were committed with them), all others are removed so that
// the redelivery applies their messages. herr is the handler error that showed it, if any.
func (p *Processor) batchEnded(ctx context.Context, t *txn, b *batch, part []int, herr error) error {
	var unclaim []string
	msgs := make([]*Message, 0, len(part))
	for _, i := range part {
		it := &b.items[i]
		msgs = append(msgs, b.msgs[i])
		if it.key != "" && it.result != Applied {
			unclaim = append(unclaim, it.key)
		}
	}
	return p.handlerEnded(ctx, t, msgs, unclaim, herr)
}

// claimBatch claims the keys of part with one statement per maxKeysPerStatement keys and returns the set
// this transaction claimed.
//
// Why this shape: a plain multi-row INSERT fails as a whole on the first duplicate, and INSERT
// IGNORE would also swallow errors that are not duplicates (truncation, bad values). MySQL has no
// RETURNING (MariaDB does), and affected-rows counts say how many rows were inserted, not which.
// So the INSERT writes a random per-transaction token (odd, never 0) into the rows it inserts,
// and ON DUPLICATE KEY UPDATE sets the token of existing rows to 0 or 2. After the statement,
// the rows of these keys carrying the token are exactly the ones this transaction inserted, which
// one SELECT reads back (a transaction always sees its own writes, at any isolation level); when
// the affected-rows count says that every key was inserted, which is the common case, the
// SELECT is skipped.
//
// Locking is the same as for single claims: a key inserted but not yet committed by another
// transaction makes this statement wait; it then sees the row (Duplicate) or, if the other
// transaction rolled back, inserts it.
func (p *Processor) claimBatch(ctx context.Context, tx *sqlx.Tx, b *batch, part []int, token uint64) (map[string]bool, error) {
	firstMsg := make(map[string]*Message, len(part))
	keys := make([]string, 0, len(part))
	for _, i := range part {
		firstMsg[b.items[i].key] = b.msgs[i]
		keys = append(keys, b.items[i].key)
	}
	// Claiming in one global order makes two batches with overlapping keys lock them in the same
	// order, which avoids most deadlocks between them.
	slices.Sort(keys)
	claimed := make(map[string]bool, len(keys))
	if len(keys) == 1 {
		// One key needs no read-back: a plain INSERT either claims it or fails with a
		// duplicate-key error, which rolls back that statement only.
		m := firstMsg[keys[0]]
		_, err := tx.ExecContext(ctx, claimSQL, p.group, keys[0], clip(m.Topic), clip(m.ID), OutcomeApplied, token)
		switch {
		case sqlerr.IsDuplicate(err):
		case err != nil:
			return nil, fmt.Errorf("claim key: %w", err)
		default:
			claimed[keys[0]] = true
		}
		return claimed, nil
	}
	// Chunks keep every statement under the server's limit of 65535 placeholders; taken in
	// sorted order, they still lock keys in one global order.
	for keys := range slices.Chunk(keys, maxKeysPerStatement) {
		if err := p.claimChunk(ctx, tx, keys, firstMsg, token, claimed); err != nil {
			return nil, err
		}
	}
	return claimed, nil
}

// maxKeysPerStatement bounds the keys one claim, SELECT or update statement names: the claim
// binds six placeholders per key, and a prepared statement may have at most 65535.
const maxKeysPerStatement = 1000

// claimChunk claims keys (at most maxKeysPerStatement) and adds those this transaction inserted
// to claimed.
func (p *Processor) claimChunk(ctx context.Context, tx *sqlx.Tx, keys []string, firstMsg map[string]*Message,
	token uint64, claimed map[string]bool) error {
	var q strings.Builder
	q.WriteString("INSERT INTO " + DedupTable + " (consumer_group, dedup_key, topic, msg_id, outcome, claim_token) VALUES ")
	args := make([]any, 0, 6*len(keys))
	for i, k := range keys {
		if i > 0 {
			q.WriteString(", ")
		}
		q.WriteString("(?, ?, ?, ?, ?, ?)")
		m := firstMsg[k]
		args = append(args, p.group, k, clip(m.Topic), clip(m.ID), OutcomeApplied, token)
	}
	// An existing row's token flips between 0 and 2, even values that no token takes: the row
	// always changes, so it counts 2 affected rows whatever clientFoundRows says, and an inserted
	// row counts 1. len(keys) affected rows therefore means that every key was inserted, and the
	// read-back below is needed only when some already existed (a redelivery). An existing row
	// never keeps a token, so it cannot match this transaction's either.
	q.WriteString(" ON DUPLICATE KEY UPDATE claim_token = IF(claim_token = 0, 2, 0)")
	res, err := tx.ExecContext(ctx, q.String(), args...)
	if err != nil {
		return fmt.Errorf("claim keys: %w", err)
	}
	if n, err := res.RowsAffected(); err == nil && n == int64(len(keys)) {
		for _, k := range keys {
			claimed[k] = true
		}
		return nil
	}

	q.Reset()
	q.WriteString("SELECT dedup_key FROM " + DedupTable + " WHERE consumer_group = ? AND claim_token = ? AND dedup_key IN (")
	args = append(args[:0], p.group, token)
	for i, k := range keys {
		if i > 0 {
			q.WriteString(", ")
		}
		q.WriteString("?")
		args = append(args, k)
	}
	q.WriteString(")")
	rows, err := tx.QueryContext(ctx, q.String(), args...)
	if err != nil {
		return fmt.Errorf("read claims: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var k []byte
		if err := rows.Scan(&k); err != nil {
			return fmt.Errorf("read claims: %w", err)
		}
		claimed[string(k)] = true
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read claims: %w", err)
	}
	return nil
}

// updateClaims runs stmt (a DELETE or UPDATE of the dedup table) on this group's keys, in one
// statement per maxKeysPerStatement keys; nothing when keys is empty. A token other than 0 limits
// it to the rows that carry that claim token.
func (p *Processor) updateClaims(ctx context.Context, tx *sqlx.Tx, stmt string, keys []string, token uint64) error {
	for chunk := range slices.Chunk(keys, maxKeysPerStatement) {
		q := stmt + " WHERE consumer_group = ? AND dedup_key IN (?" + strings.Repeat(", ?", len(chunk)-1) + ")"
		args := make([]any, 0, len(chunk)+2)
		args = append(args, p.group)
		for _, k := range chunk {
			args = append(args, k)
		}
		if token != 0 {
			q += " AND claim_token = ?"
			args = append(args, token)
		}
		if _, err := tx.ExecContext(ctx, q, args...); err != nil {
			return err
		}
	}
	return nil
}
