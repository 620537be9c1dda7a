package txconsume

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"

	"github.com/txconsume/txconsume/txconsume/internal/sqlerr"
)

// runParts processes the pending messages of b (the first message of every key that has no key
// error) in parts, each in transactions of its own:
//
//   - the messages are cut into parts of at most the size the Processor last saw get through
//     (partSizer); under no contention that is the whole batch, one transaction;
//   - each transaction of more than one message waits for a lane (laneLimiter): after
//     conflicts between concurrent batches, only a few of them run at once;
//   - a part of more than one message that loses a lock conflict is split into two halves that
//     run next, in order; a single message is retried with backoff as Process retries it
//     (WithMaxRetries(0) turns both off);
//   - a part that fails otherwise (begin, claim, commit, context, retries used up) fails its
//     messages and those of the parts not run yet. If no part had committed, that is the error
//     of the whole batch, as before splitting existed; otherwise finish reports them in a
//     *BatchError beside the committed results.
func (p *Processor) runParts(ctx context.Context, b *batch) error {
	var todo []int
	for i := range b.items {
		if it := &b.items[i]; it.keyErr == nil && it.first == i {
			todo = append(todo, i)
		}
	}
	var queue []batchPart
	for _, c := range chunk(todo, p.parts.size()) {
		queue = append(queue, batchPart{items: c})
	}
	committed := false
	for len(queue) > 0 {
		part := queue[0].items
		b.savepoints = queue[0].savepoints
		queue = queue[1:]
		err := p.runPart(ctx, b, part)
		if err == nil {
			committed = true
			if len(part) > 1 {
				p.lanes.committed()
			}
			p.parts.committed(len(part))
			continue
		}
		if len(part) > 1 && p.splits(ctx, err) {
			half := (len(part) + 1) / 2
			p.cfg.logger.DebugContext(ctx, "txconsume: lock conflict, splitting the batch transaction",
				slog.String("group", p.group), slog.Int("messages", len(part)), slog.Any("error", err))
			if p.cfg.hooks.OnRetry != nil {
				p.cfg.hooks.OnRetry(ctx, b.messages(part), 1, err, 0)
			}
			cerr := ctx.Err()
			if cerr == nil {
				// The halves of a part that fell back to savepoints start in that mode.
				queue = append([]batchPart{{part[:half], b.savepoints}, {part[half:], b.savepoints}}, queue...)
				continue
			}
			err = retryAbandoned(err, cerr)
		}
		if !committed {
			return err
		}
		for _, i := range part {
			b.items[i].failed = err
		}
		for _, rest := range queue {
			for _, i := range rest.items {
				b.items[i].failed = fmt.Errorf("txconsume: not processed: an earlier transaction of the batch failed: %w", err)
			}
		}
		return nil
	}
	return nil
}

// splits reports whether a batch transaction that failed with err is split and run again: after a
// lock conflict, unless WithMaxRetries(0) asked for no rerun or ctx ended.
func (p *Processor) splits(ctx context.Context, err error) bool {
	return sqlerr.IsRetryable(err) && p.cfg.maxRetries > 0 && ctx.Err() == nil
}

// conflicted records that a batch transaction of n messages, still holding its lane, lost a lock
// conflict: fewer batch transactions at once if others ran beside it, smaller ones otherwise.
func (p *Processor) conflicted(ctx context.Context, n int) {
	concurrent, limit := p.lanes.conflicted()
	if !concurrent {
		p.parts.conflicted(n)
		return
	}
	p.cfg.logger.DebugContext(ctx, "txconsume: lock conflict between batch transactions, running fewer at once",
		slog.String("group", p.group), slog.Int("limit", limit))
}

// batchPart is a part of a batch that runs in transactions of its own: the indexes of its
// messages, and whether it starts in the savepoint mode.
type batchPart struct {
	items      []int
	savepoints bool
}

// runPart runs the messages part of b in one transaction: optimistically (unless b.savepoints),
// then with savepoints if a handler failed. A part of one message is retried after a lock
// conflict; a larger part returns the conflict, for runParts to split it.
func (p *Processor) runPart(ctx context.Context, b *batch, part []int) error {
	attempt := func() error {
		for {
			err := p.laneAttempt(ctx, b, part)
			if !errors.Is(err, errNeedSavepoints) {
				return err
			}
			// Sticky for the rest of this part: a deadlock retry after the fallback goes
			// straight to the savepoint mode rather than failing optimistically once more.
			// Same attempt number: the fallback is not a lock conflict and uses no retry. It
			// ends: every rerun in the savepoint mode leaves out one more message (one whose
			// handler ended the transaction), or is the first in that mode.
			b.savepoints = true
		}
	}
	if len(part) > 1 {
		return attempt()
	}
	return p.withRetries(ctx, b.messages(part), attempt)
}

// laneAttempt runs one attempt of a part of more than one message in a lane (see laneLimiter),
// and records a lock conflict it loses while it still counts as in flight. The attempt leaves its
// lane once it has taken all its locks, just before COMMIT: the next batch transaction may then
// wait for the rows this one still holds, but this one waits for nothing, so the two cannot
// deadlock, and the next one's statements run while this one's commit is written. A part of one
// message takes no lane: it is a transaction like Process's, which the lanes are not there to
// limit, so parts cut down to single messages run at the concurrency they had before lanes
// existed.
func (p *Processor) laneAttempt(ctx context.Context, b *batch, part []int) error {
	if len(part) == 1 {
		return p.batchAttempt(ctx, b, part)
	}
	if err := p.lanes.acquire(ctx); err != nil {
		return err
	}
	inLane := true
	b.leaveLane = func() {
		if inLane {
			inLane = false
			p.lanes.release()
		}
	}
	defer func() {
		b.leaveLane()
		b.leaveLane = nil
	}()
	err := p.batchAttempt(ctx, b, part)
	if inLane && p.splits(ctx, err) {
		p.conflicted(ctx, len(part))
	}
	return err
}

func (b *batch) messages(part []int) []*Message {
	out := make([]*Message, len(part))
	for j, i := range part {
		out[j] = b.msgs[i]
	}
	return out
}

// chunk cuts xs into slices of at most n (all of it when n is 0).
func chunk(xs []int, n int) [][]int {
	if n <= 0 || n >= len(xs) {
		return [][]int{xs}
	}
	return slices.Collect(slices.Chunk(xs, n))
}

// partSizer is the Processor's memory of how many messages one batch transaction can hold
// without losing lock conflicts: additive increase, multiplicative decrease, as TCP sizes its
// window. 0 means no limit, the state until the first conflict.
type partSizer struct {
	mu    sync.Mutex
	limit int // messages per transaction; 0: unlimited
	// credit counts the messages committed in parts of the current limit; the limit grows by one
	// once growthRounds times the limit got through without a conflict. Many deliveries commit
	// at once, so growing by one per limit's worth (TCP's rule) would climb straight back into
	// the contention that lowered it.
	credit int
}

// growthRounds is how many limits' worth of messages must commit before the limit grows by one.
const growthRounds = 16

// maxPartLimit is where a growing limit turns into no limit again.
const maxPartLimit = 1024

func (s *partSizer) size() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.limit
}

// conflicted records that a part of n messages lost a lock conflict.
func (s *partSizer) conflicted(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if half := max(1, n/2); s.limit == 0 || half < s.limit {
		s.limit = half
	}
	s.credit = 0
}

// committed records that a part of n messages committed.
func (s *partSizer) committed(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.limit == 0 || n < s.limit {
		return
	}
	s.credit += n
	if s.credit >= s.limit*growthRounds {
		s.credit = 0
		s.limit++
		if s.limit > maxPartLimit {
			s.limit = 0
		}
	}
}
