package outbox

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/apache/rocketmq-client-go/v2/primitive"
	"github.com/jmoiron/sqlx"
)

// Producer is what a Relay needs from a RocketMQ producer. rocketmq.Producer
// (github.com/apache/rocketmq-client-go/v2) satisfies it; create it with
// producer.WithQueueSelector(QueueSelector()) and Start it before Run (see QueueSelector).
type Producer interface {
	SendSync(ctx context.Context, msgs ...*primitive.Message) (*primitive.SendResult, error)
}

// ErrProducerSelector is returned by Run when the producer chose a queue without QueueSelector,
// which breaks the order of sharding keys. The messages of that one send reached the broker.
var ErrProducerSelector = errors.New("outbox: the relay's producer does not select queues with outbox.QueueSelector; " +
	"create it with producer.WithQueueSelector(outbox.QueueSelector())")

// Relay publishes the messages of the outbox table to RocketMQ. Run as many relays as you like,
// in one process or many, on one database: they share the work without sending a row twice in
// normal operation, and keep each sharding key's messages in order. See the package
// documentation for how a round works and what is guaranteed.
type Relay struct {
	db      *sqlx.DB
	prod    Producer
	cfg     relayConfig
	wake    chan struct{}
	running atomic.Bool

	// Used by Run's goroutine only.
	win        *window
	queues     map[string]int // topic -> queue count, as the selector last saw it
	backoff    map[string]*topicBackoff
	roundErrs  int
	lastStatus time.Time
}

type topicBackoff struct {
	failures int
	delay    time.Duration
	until    time.Time
}

// NewRelay returns a relay that publishes the outbox table of db through p. The schema of
// package migrations must be applied.
func NewRelay(db *sqlx.DB, p Producer, opts ...RelayOption) (*Relay, error) {
	if db == nil {
		return nil, errors.New("outbox: NewRelay: nil db")
	}
	if p == nil {
		return nil, errors.New("outbox: NewRelay: nil producer")
	}
	cfg := defaultRelayConfig()
	for _, o := range opts {
		o(&cfg)
	}
	if len(cfg.errs) > 0 {
		return nil, errors.Join(cfg.errs...)
	}
	return &Relay{db: db, prod: p, cfg: cfg, wake: make(chan struct{}, 1),
		queues: map[string]int{}, backoff: map[string]*topicBackoff{}}, nil
}

// Run publishes until ctx ends, then finishes the round in progress (the messages already sent
// are recorded as sent, the rest released for the next relay) and returns nil. It returns an
// error at once when the server lacks SKIP LOCKED (ErrServerTooOld) or the schema is missing,
// and later only for ErrProducerSelector. A broker or database that fails is not an error: the
// relay logs it, backs off and tries again, keeping every row until the broker has it.
//
// A Relay runs once at a time; Run may be called again after it returned.
func (r *Relay) Run(ctx context.Context) error {
	if !r.running.CompareAndSwap(false, true) {
		return errors.New("outbox: Relay.Run: already running")
	}
	defer r.running.Store(false)
	version, err := checkServer(ctx, r.db)
	if err != nil {
		return err
	}
	var shards int
	if err := r.db.GetContext(ctx, &shards, "SELECT COUNT(*) FROM "+shardTable); err != nil {
		return fmt.Errorf("outbox: reading %s (apply the migrations first): %w", shardTable, err)
	}
	if shards != shardCount {
		return fmt.Errorf("outbox: %s has %d rows, want %d: the outbox schema is damaged", shardTable, shards, shardCount)
	}
	r.cfg.logger.InfoContext(ctx, "outbox: relay started", slog.String("server", version),
		slog.Int("batch_size", r.cfg.batchSize), slog.Duration("poll_interval", r.cfg.pollInterval),
		slog.Duration("retention", r.cfg.retention))

	registerRelay(r)
	defer unregisterRelay(r)
	cleanupCtx, stopCleanup := context.WithCancel(ctx)
	cleanupDone := make(chan struct{})
	go func() {
		defer close(cleanupDone)
		r.cleanupLoop(cleanupCtx)
	}()
	defer func() {
		stopCleanup()
		<-cleanupDone
	}()

	hot, woken := hotFirst, time.Now() // rows may be waiting already
	for {
		if ctx.Err() != nil {
			r.cfg.logger.InfoContext(ctx, "outbox: relay stopped")
			return nil
		}
		res, err := r.round(ctx)
		if ctx.Err() != nil && !errors.Is(err, ErrProducerSelector) {
			continue // the round recorded what it sent; stop at the top
		}
		switch {
		case errors.Is(err, ErrProducerSelector):
			r.cfg.logger.ErrorContext(ctx, "outbox: relay stops", slog.Any("error", err))
			return err
		case err != nil:
			r.roundErrs++
			d := backoffDelay(r.cfg.backoffMin, r.cfg.backoffMax, r.roundErrs)
			r.cfg.logger.WarnContext(ctx, "outbox: relay round failed; the rows stay pending", slog.Any("error", err),
				slog.Int("failures", r.roundErrs), slog.Duration("retry_in", d))
			sleepCtx(ctx, d)
			continue
		case err == nil && r.roundErrs > 0:
			r.cfg.logger.InfoContext(ctx, "outbox: relay rounds work again", slog.Int("after_failures", r.roundErrs))
			r.roundErrs = 0
		}
		r.maintain(ctx)
		if res.again {
			continue
		}
		wait := r.cfg.pollInterval
		if hot > 0 {
			wait = min(wait, hot)
			hot = nextHot(hot, time.Since(woken))
		}
		if d, ok := r.nextBackoffEnd(); ok {
			wait = min(wait, d)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
		case <-r.wake:
			hot, woken = hotFirst, time.Now()
		case <-t.C:
		}
		t.Stop()
	}
}

// After a wake-up, an idle relay looks again after 1, 2, 4, ... 128 ms, and then every 128 ms
// until a second has passed: the Enqueue that woke it ran before its transaction committed, which
// takes longer on a busy database.
const (
	hotFirst = time.Millisecond
	hotLast  = 128 * time.Millisecond
	hotFor   = time.Second
)

// nextHot returns the wait after d since the last wake-up, 0 when it is time to poll again.
func nextHot(d, sinceWake time.Duration) time.Duration {
	switch {
	case sinceWake >= hotFor:
		return 0
	case d >= hotLast:
		return hotLast
	default:
		return 2 * d
	}
}

// roundResult says what a round did.
type roundResult struct {
	sent  int  // messages the broker stored
	again bool // start the next round at once: rows are waiting, or must be regrouped
}

// maxRoundBytes bounds the messages one round holds in memory.
const maxRoundBytes = 16 << 20

// windowRounds is how many rounds' worth of pending rows one read of the table lists (see
// window).
const windowRounds = 8

type candidate struct {
	ID    uint64 `db:"id"`
	Shard int    `db:"shard"`
	Size  int    `db:"size"`
}

// window is a list of the oldest pending rows, read with one query and used by several rounds.
//
// Why: that query starts at the head of the pending rows, where InnoDB keeps the index entries
// of the rows sent last until its purge removes them; while a long transaction anywhere on the
// server holds purge back, every read walks over all of them. Reading the ids of several rounds
// at once divides that cost.
//
// Why it keeps each sharding key in order: the list is in id order and rounds take it in that
// order; every row is locked and checked still pending before it is sent; and once a round
// could not lock a shard (another relay holds it) or failed to send, the rest of the window
// leaves that shard alone, so none of the shard's later rows overtakes one that was not sent.
type window struct {
	cands   []candidate
	next    int          // first candidate not taken yet
	full    bool         // the read hit its limit: more rows may be pending
	blocked map[int]bool // shards this window must not send any more
}

// round publishes up to one batch of pending rows:
//
//  1. it takes the next rows of its window of pending rows (reading a new window, a plain
//     read without locks, when the last one is used up), leaving out topics in backoff;
//  2. in a READ COMMITTED transaction, it locks the shards of those rows that no other relay
//     holds (FOR UPDATE SKIP LOCKED), then reads those shards' rows among them that are still
//     pending;
//  3. it sends them, grouped by topic and queue, in id order;
//  4. it marks the rows the broker stored as sent, checking that exactly those rows changed,
//     and commits, which releases the shards. The cleanup deletes marked rows later (see
//     cleanupLoop).
//
// A crash anywhere before the commit rolls the transaction back: the rows stay pending and are
// sent again, under the same ids.
//
// No statement of a round waits for another transaction's rows, whatever plan the server picks
// for it (on a small table, a full scan): the shard lock alone keeps other relays off the rows,
// so they are read without locks, and the mark is an UPDATE, which under READ COMMITTED skips
// rows that other transactions hold and that do not match (InnoDB's semi-consistent read), the
// rows of other relays' rounds and of uncommitted Enqueues included. A DELETE has no such read:
// on a full scan it waits for every locked row it passes, and two relays deleting at once
// deadlock; that is why deleting is left to the cleanup.
func (r *Relay) round(ctx context.Context) (res roundResult, err error) {
	if r.win == nil || r.win.next >= len(r.win.cands) {
		cands, cerr := r.candidates(ctx, windowRounds*r.cfg.batchSize)
		if cerr != nil {
			r.win = nil
			return res, cerr
		}
		r.win = &window{cands: cands, full: len(cands) == windowRounds*r.cfg.batchSize, blocked: map[int]bool{}}
	}
	w := r.win
	take := w.take(r.cfg.batchSize)
	// Go on at once while the window has rows, and read the next one at once when this one
	// was full and the round made progress; a round that found every shard held by other
	// relays waits instead of reading the same rows again.
	defer func() {
		if r.win == w {
			res.again = res.again || w.next < len(w.cands) || (w.full && res.sent > 0)
		}
	}()
	if len(take) == 0 {
		return res, nil
	}
	// From here on the round ends by itself even when ctx ends: its transaction must not be
	// rolled back by the context after messages were sent (database/sql rolls back a
	// transaction whose context ends), and what was sent must be recorded.
	work := context.WithoutCancel(ctx)
	tx, err := r.db.BeginTxx(work, &sql.TxOptions{Isolation: sql.LevelReadCommitted})
	if err != nil {
		r.win = nil
		return res, fmt.Errorf("begin: %w", err)
	}
	defer func() { _ = tx.Rollback() }() // no-op after Commit

	locked, err := lockShards(work, tx, take)
	if err != nil {
		r.win = nil
		return res, err
	}
	var ids []uint64
	for _, c := range take {
		if !locked[c.Shard] {
			w.blocked[c.Shard] = true // another relay has it: its later rows are not ours
			continue
		}
		ids = append(ids, c.ID)
	}
	if len(ids) == 0 {
		return res, nil
	}
	rows, err := readRows(work, tx, ids)
	if err != nil {
		r.win = nil
		return res, err
	}
	var sent []uint64
	var sendErr error
	for _, g := range r.groups(rows) {
		if ctx.Err() != nil {
			r.win = nil
			break // shutting down: what is not sent yet is released by the commit
		}
		ok, regroup, err := r.sendGroup(ctx, g, &sent)
		if err != nil {
			sendErr = err // ErrProducerSelector: record what was sent, then stop
			break
		}
		if regroup || !ok {
			// The rows left over must not be overtaken by the window's later rows: read
			// anew. After a failure, stop: with the broker down every send would wait out
			// its timeout while the shards stay locked. The other topics go next round.
			r.win = nil
			res.again = true
			break
		}
	}
	if len(sent) > 0 {
		if err := r.markSent(work, tx, sent); err != nil {
			r.win = nil
			return res, err
		}
	}
	if err := tx.Commit(); err != nil {
		r.win = nil
		return res, fmt.Errorf("commit after sending %d messages (unless it went through, they will be sent again; consumers downstream see copies as duplicates): %w", len(sent), err)
	}
	res.sent = len(sent)
	return res, sendErr
}

// take returns the window's next candidates for one round: at most n rows and maxRoundBytes,
// none of a blocked shard.
func (w *window) take(n int) []candidate {
	var out []candidate
	bytes := 0
	for ; w.next < len(w.cands) && len(out) < n; w.next++ {
		c := w.cands[w.next]
		if w.blocked[c.Shard] {
			continue
		}
		if len(out) > 0 && bytes+c.Size > maxRoundBytes {
			break
		}
		out = append(out, c)
		bytes += c.Size
	}
	return out
}

// candidates returns the ids, shards and sizes of the limit oldest pending rows, in id order,
// leaving out topics whose sends are backing off.
func (r *Relay) candidates(ctx context.Context, limit int) ([]candidate, error) {
	q, args := r.candidatesQuery(limit)
	var cands []candidate
	if err := r.db.SelectContext(ctx, &cands, q, args...); err != nil {
		return nil, fmt.Errorf("read pending rows: %w", err)
	}
	return cands, nil
}

func (r *Relay) candidatesQuery(limit int) (string, []any) {
	q := "SELECT id, shard, size FROM " + Table + " WHERE sent_at IS NULL"
	var args []any
	now := time.Now()
	for topic, b := range r.backoff {
		if b.until.After(now) {
			args = append(args, topic)
		}
	}
	if len(args) > 0 {
		q += " AND topic NOT IN (" + placeholders(len(args)) + ")"
	}
	q += " ORDER BY id LIMIT ?"
	return q, append(args, limit)
}

// lockShards locks the shards of cands that no other transaction holds and returns them.
func lockShards(ctx context.Context, tx *sqlx.Tx, cands []candidate) (map[int]bool, error) {
	var shards []any
	seen := map[int]bool{}
	for _, c := range cands {
		if !seen[c.Shard] {
			seen[c.Shard] = true
			shards = append(shards, c.Shard)
		}
	}
	var got []int
	err := tx.SelectContext(ctx, &got, "SELECT shard FROM "+shardTable+" WHERE shard IN ("+placeholders(len(shards))+
		") FOR UPDATE SKIP LOCKED", shards...)
	if err != nil {
		return nil, fmt.Errorf("lock shards: %w", err)
	}
	locked := make(map[int]bool, len(got))
	for _, s := range got {
		locked[s] = true
	}
	return locked, nil
}

// readRows reads the rows of ids that are still pending: another relay may have sent some since
// the candidates were read. It takes no row locks (the shard locks keep other relays off these
// rows), so it waits for nobody, whatever plan the server picks for it.
func readRows(ctx context.Context, tx *sqlx.Tx, ids []uint64) ([]row, error) {
	args := make([]any, len(ids))
	for i, id := range ids {
		args[i] = id
	}
	var read []struct {
		row
		Pending bool `db:"pending"`
	}
	err := tx.SelectContext(ctx, &read, "SELECT id, msg_id, topic, tags, msg_keys, sharding_key, shard, properties, body, size, "+
		"sent_at IS NULL AS pending FROM "+Table+" WHERE id IN ("+placeholders(len(ids))+") ORDER BY id", args...)
	if err != nil {
		return nil, fmt.Errorf("read pending rows: %w", err)
	}
	rows := make([]row, 0, len(read))
	for _, l := range read {
		if l.Pending {
			rows = append(rows, l.row)
		}
	}
	return rows, nil
}

// markSent marks the sent rows sent and fails unless every one of them changed: only the holder
// of their shards changes pending rows, so a difference means something outside the relays
// changed them, and the commit must not pretend otherwise. The rows are named by primary key
// alone.
func (r *Relay) markSent(ctx context.Context, tx *sqlx.Tx, ids []uint64) error {
	args := make([]any, len(ids))
	for i, id := range ids {
		args[i] = id
	}
	res, err := tx.ExecContext(ctx, "UPDATE "+Table+" SET sent_at = UTC_TIMESTAMP(6) WHERE id IN ("+placeholders(len(ids))+")", args...)
	if err != nil {
		return fmt.Errorf("record %d sent messages (they will be sent again): %w", len(ids), err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("record %d sent messages: %w", len(ids), err)
	}
	if n != int64(len(ids)) {
		return fmt.Errorf("recording %d sent messages changed %d rows: rows of shards this relay holds were changed by someone else; rolled back", len(ids), n)
	}
	return nil
}

// group is rows of one topic that go to one queue, in id order.
type group struct {
	topic string
	plan  queuePlan
	rows  []row
}

type groupKey struct {
	topic string
	keyed bool
	slot  uint32
}

// groups splits rows (in id order) into sends: rows with a sharding key by the queue the key
// goes to, when the topic's queue count is known, or by the key's hash until it is (the first
// send to a topic learns it); rows without one all together.
func (r *Relay) groups(rows []row) []*group {
	var out []*group
	byKey := map[groupKey]*group{}
	for _, rw := range rows {
		k := groupKey{topic: rw.Topic}
		p := queuePlan{}
		if rw.ShardingKey != "" {
			h := keyHash(rw.ShardingKey)
			k.keyed, p.keyed = true, true
			if n := r.queues[rw.Topic]; n > 0 {
				k.slot, p.queues, p.index = h%uint32(n), n, int(h%uint32(n))
			} else {
				k.slot, p.hash = h, h
			}
		}
		g := byKey[k]
		if g == nil {
			g = &group{topic: rw.Topic, plan: p}
			byKey[k] = g
			out = append(out, g)
		}
		g.rows = append(g.rows, rw)
	}
	return out
}

// sendGroup sends g in chunks of at most maxBatchBytes and appends the ids of the stored rows to
// sent. ok is false when a send failed; regroup is true when the topic's queue count changed
// under the grouping. It stops at the first send that did not store, so that a key's later
// messages never overtake its earlier ones. err is ErrProducerSelector.
func (r *Relay) sendGroup(ctx context.Context, g *group, sent *[]uint64) (ok, regroup bool, err error) {
	for start := 0; start < len(g.rows); {
		end, bytes := start, 0
		for end < len(g.rows) && (end == start || bytes+g.rows[end].Size <= r.cfg.maxBatchBytes) {
			bytes += g.rows[end].Size
			end++
		}
		chunk := g.rows[start:end]
		start = end
		msgs := make([]*primitive.Message, len(chunk))
		ids := make([]string, len(chunk))
		for i := range chunk {
			m, err := chunk[i].message()
			if err != nil {
				// Enqueue wrote the properties, so this is a damaged row: say which.
				return false, false, fmt.Errorf("outbox: row %d (message %s): %w", chunk[i].ID, chunk[i].MsgID, err)
			}
			msgs[i], ids[i] = m, chunk[i].MsgID
		}
		p := &pick{queuePlan: g.plan}
		placeholder := p.register(g.topic)
		msgs[0].Queue = placeholder
		began := time.Now()
		res, sendErr := r.prod.SendSync(context.WithoutCancel(ctx), msgs...)
		took := time.Since(began)
		unregister(placeholder)
		seen, chosen, refused := p.result()
		if seen > 0 {
			r.queues[g.topic] = seen
		}
		if sendErr == nil && res == nil {
			sendErr = errors.New("producer returned no result")
		}
		if r.cfg.hooks.OnSend != nil && !refused { // a refused send never left the process
			s := Send{Topic: g.topic, IDs: ids, Err: sendErr, Duration: took}
			if sendErr == nil {
				s.Result = res
			}
			r.cfg.hooks.OnSend(ctx, s)
		}
		switch {
		case refused:
			r.cfg.logger.InfoContext(ctx, "outbox: topic's queue count changed; regrouping", slog.String("topic", g.topic),
				slog.Int("queues", seen), slog.Int("grouped_for", g.plan.queues))
			return true, true, nil
		case sendErr != nil:
			r.sendFailed(ctx, g.topic, len(chunk), seen, sendErr)
			return false, false, nil
		case seen == 0 || chosen == nil:
			*sent = append(*sent, rowIDs(chunk)...)
			return false, false, ErrProducerSelector
		}
		if res.Status != primitive.SendOK {
			// Stored, but not flushed or replicated in time: the broker has the messages.
			r.cfg.logger.WarnContext(ctx, "outbox: broker stored messages with a warning", slog.String("topic", g.topic),
				slog.Int("messages", len(chunk)), slog.Int("status", int(res.Status)))
		}
		*sent = append(*sent, rowIDs(chunk)...)
		r.sendWorked(ctx, g.topic)
	}
	return true, false, nil
}

func (r *Relay) sendFailed(ctx context.Context, topic string, n, seen int, err error) {
	b := r.backoff[topic]
	if b == nil {
		b = &topicBackoff{}
		r.backoff[topic] = b
	}
	b.failures++
	b.delay = backoffDelay(r.cfg.backoffMin, r.cfg.backoffMax, b.failures)
	b.until = time.Now().Add(b.delay)
	attrs := []any{slog.String("topic", topic), slog.Int("messages", n), slog.Any("error", err),
		slog.Int("failures", b.failures), slog.Duration("retry_in", b.delay)}
	if seen == 0 && strings.Contains(err.Error(), "route info not found") {
		attrs = append(attrs, slog.String("hint", "the topic may not exist, or the producer is not created with producer.WithQueueSelector(outbox.QueueSelector())"))
	}
	r.cfg.logger.WarnContext(ctx, "outbox: send failed; the messages stay pending", attrs...)
}

func (r *Relay) sendWorked(ctx context.Context, topic string) {
	if b := r.backoff[topic]; b != nil {
		r.cfg.logger.InfoContext(ctx, "outbox: sends work again", slog.String("topic", topic), slog.Int("after_failures", b.failures))
		delete(r.backoff, topic)
	}
}

// nextBackoffEnd returns how long until the first topic still in backoff may be tried again.
// A topic whose backoff is over keeps its failure count until a send to it works.
func (r *Relay) nextBackoffEnd() (time.Duration, bool) {
	var first time.Time
	now := time.Now()
	for _, b := range r.backoff {
		if b.until.After(now) && (first.IsZero() || b.until.Before(first)) {
			first = b.until
		}
	}
	if first.IsZero() {
		return 0, false
	}
	return max(0, time.Until(first)), true
}

// maintain reports the status when it is due.
func (r *Relay) maintain(ctx context.Context) {
	now := time.Now()
	if r.cfg.hooks.OnStatus != nil && now.Sub(r.lastStatus) >= r.cfg.statusInterval {
		r.lastStatus = now
		if st, err := Status(ctx, r.db); err != nil {
			r.cfg.logger.WarnContext(ctx, "outbox: status query failed", slog.Any("error", err))
		} else {
			r.cfg.hooks.OnStatus(ctx, st)
		}
	}
}

// cleanupLoop deletes the rows marked sent more than the retention ago (any marked row, without
// a retention), in batches, every cleanupInterval and at once while batches come back full,
// until ctx ends. It runs beside the rounds rather than in them, so that a slow or failing
// cleanup never holds up sending, and deleting once a second rather than after every round
// saves a commit per round. It finds the rows it deletes by primary key (see deleteRows), so it
// waits for no other transaction's rows; relays never wait for it either: their UPDATE skips
// the rows it deletes.
func (r *Relay) cleanupLoop(ctx context.Context) {
	failures := 0
	for ctx.Err() == nil {
		more, err := r.cleanup(ctx)
		var wait time.Duration
		switch {
		case err != nil && ctx.Err() == nil:
			failures++
			wait = backoffDelay(r.cfg.backoffMin, r.cfg.backoffMax, failures)
			r.cfg.logger.WarnContext(ctx, "outbox: cleanup of sent rows failed", slog.Any("error", err),
				slog.Int("failures", failures), slog.Duration("retry_in", wait))
		case more:
			failures = 0
			continue
		default:
			failures = 0
			wait = cleanupInterval(r.cfg.retention)
		}
		sleepCtx(ctx, wait)
	}
}

// cleanup deletes one batch of rows due for deletion and reports whether more may be due.
func (r *Relay) cleanup(ctx context.Context) (more bool, err error) {
	n, more, err := deleteSentBatch(ctx, r.db, r.cfg.retention, r.cfg.cleanupBatch)
	if n > 0 {
		r.cfg.logger.DebugContext(ctx, "outbox: deleted sent rows", slog.Int64("rows", n))
	}
	return more, err
}

// cleanupInterval is how often a relay looks for sent rows to delete: every second without a
// retention, every tenth of it (from a second to a minute) with one.
func cleanupInterval(retention time.Duration) time.Duration {
	return min(max(retention/10, time.Second), time.Minute)
}

// message builds the RocketMQ message of a stored row.
func (rw *row) message() (*primitive.Message, error) {
	props := map[string]string{}
	if len(rw.Properties) > 0 {
		if err := json.Unmarshal(rw.Properties, &props); err != nil {
			return nil, fmt.Errorf("decode properties: %w", err)
		}
	}
	set := func(k, v string) {
		if v != "" {
			props[k] = v
		}
	}
	set(primitive.PropertyTags, rw.Tags)
	set(primitive.PropertyKeys, rw.Keys)
	set(primitive.PropertyShardingKey, rw.ShardingKey)
	// The client keeps a UNIQ_KEY that is set, on retries and in batches alike.
	set(primitive.PropertyUniqueClientMessageIdKeyIndex, rw.MsgID)
	m := primitive.NewMessage(rw.Topic, rw.Body)
	m.WithProperties(props)
	return m, nil
}

func rowIDs(rows []row) []uint64 {
	ids := make([]uint64, len(rows))
	for i := range rows {
		ids[i] = rows[i].ID
	}
	return ids
}

func placeholders(n int) string {
	return strings.TrimSuffix(strings.Repeat("?, ", n), ", ")
}

// backoffDelay is a random duration in [d/2, d) for d = min(maxDelay, minDelay*2^(failures-1)):
// relays that failed together do not retry together.
func backoffDelay(minDelay, maxDelay time.Duration, failures int) time.Duration {
	d := minDelay
	for i := 1; i < failures && d < maxDelay; i++ {
		d *= 2
	}
	d = min(d, maxDelay)
	return d/2 + rand.N(d/2+1)
}

func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// The relays running in this process, woken by Enqueue.
var relays struct {
	mu  sync.Mutex
	set map[*Relay]struct{}
}

func registerRelay(r *Relay) {
	relays.mu.Lock()
	defer relays.mu.Unlock()
	if relays.set == nil {
		relays.set = map[*Relay]struct{}{}
	}
	relays.set[r] = struct{}{}
}

func unregisterRelay(r *Relay) {
	relays.mu.Lock()
	defer relays.mu.Unlock()
	delete(relays.set, r)
}

func wakeRelays() {
	relays.mu.Lock()
	defer relays.mu.Unlock()
	for r := range relays.set {
		select {
		case r.wake <- struct{}{}:
		default: // already woken
		}
	}
}
