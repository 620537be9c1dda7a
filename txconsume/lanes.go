package txconsume

import (
	"context"
	"slices"
	"sync"
)

// laneLimiter bounds how many batch transactions (of more than one message) of one Processor run
// at once, after lock conflicts showed that they get in each other's way.
//
// Batches of messages that update the same few rows (a popular product's stock, a merchant's
// balance) in different orders deadlock when several run at once. Cutting them into smaller
// transactions (partSizer) ends the deadlocks but gives up what a batch saves: one claim INSERT
// and one commit for many messages, which on hot rows left batched deliveries no faster than one
// message per transaction (about 0.83x of a hand-written at-least-once consumer through the
// broker). Running fewer of them at once keeps the batches whole: measured through the broker on
// 20 hot rows, 10,000 messages in deliveries of 16 lost about 30 transactions to conflicts, not
// 300, and ran as fast as the hand-written consumer. So a conflict between concurrent batch
// transactions first lowers how many run at once, and only a conflict that concurrency cannot
// explain (no more than minLanes in flight: hot rows within one batch, or another process)
// shrinks the parts.
//
// The limit is additive increase, multiplicative decrease, as partSizer's: a conflict sets it to
// half the transactions in flight, commits without conflicts raise it by one, and past maxLanes
// it turns back into no limit. 0 means no limit, the state until the first conflict, so a
// workload without conflicts never waits here.
type laneLimiter struct {
	mu       sync.Mutex
	limit    int // batch transactions at once; 0: unlimited
	inFlight int
	// credit counts the transactions committed at the current limit; the limit grows by one once
	// laneGrowthRounds times the limit committed without a conflict (see partSizer for why not
	// one).
	credit int
	// waiting holds, in arrival order, the channels of the transactions waiting for a lane: a
	// lane is handed over by closing the first one, already counted in inFlight.
	waiting []chan struct{}
}

// minLanes is the fewest batch transactions at once that conflicts lower the limit to. One at a
// time cannot deadlock with each other whatever rows their handlers touch; the limit then grows
// back to two and falls again at the next conflict, so on hot rows in random orders it
// alternates between one and two.
const minLanes = 1

// maxLanes is where a growing limit turns into no limit again.
const maxLanes = 64

// laneGrowthRounds is how many limits' worth of transactions must commit before the limit grows by
// one: more than partSizer's growthRounds, because on hot rows in random orders two batches at
// once conflict within a few transactions, and every conflict rolls one back.
const laneGrowthRounds = 64

// acquire waits for a lane, or for ctx to end.
func (l *laneLimiter) acquire(ctx context.Context) error {
	l.mu.Lock()
	if len(l.waiting) == 0 && (l.limit == 0 || l.inFlight < l.limit) {
		l.inFlight++
		l.mu.Unlock()
		return nil
	}
	ready := make(chan struct{})
	l.waiting = append(l.waiting, ready)
	l.mu.Unlock()
	select {
	case <-ready:
		return nil
	case <-ctx.Done():
		l.mu.Lock()
		if i := slices.Index(l.waiting, ready); i >= 0 {
			l.waiting = slices.Delete(l.waiting, i, i+1)
			l.mu.Unlock()
			return ctx.Err()
		}
		l.mu.Unlock()
		// The lane was handed over as ctx ended: pass it on.
		l.release()
		return ctx.Err()
	}
}

// release gives a lane back.
func (l *laneLimiter) release() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.inFlight--
	l.handOver()
}

// handOver gives free lanes to the first waiting transactions. l.mu is held.
func (l *laneLimiter) handOver() {
	for len(l.waiting) > 0 && (l.limit == 0 || l.inFlight < l.limit) {
		l.inFlight++
		close(l.waiting[0])
		l.waiting = l.waiting[1:]
	}
}

// conflicted records that a batch transaction, which still holds its lane, lost a lock
// conflict. It reports whether other batch transactions ran beside it (more than minLanes in
// flight), and the limit that leaves; if not, fewer at once cannot help and the caller shrinks
// the parts instead.
func (l *laneLimiter) conflicted() (concurrent bool, limit int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.credit = 0
	if l.inFlight <= minLanes {
		return false, l.limit
	}
	if half := max(minLanes, l.inFlight/2); l.limit == 0 || half < l.limit {
		l.limit = half
	}
	return true, l.limit
}

// committed records that a batch transaction committed.
func (l *laneLimiter) committed() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.limit == 0 {
		return
	}
	l.credit++
	if l.credit >= l.limit*laneGrowthRounds {
		l.credit = 0
		l.limit++
		if l.limit > maxLanes {
			l.limit = 0
		}
		l.handOver()
	}
}
