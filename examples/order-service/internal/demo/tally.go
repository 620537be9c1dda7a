package demo

import (
	"sync"
	"time"
)

// tally counts what one consumer reported, from the "consumed" lines of its log. Each line is
// written by the service after the library returned a result for one delivery, so the counts are
// the service's own account; the database is checked separately.
type tally struct {
	mu         sync.Mutex
	byResult   map[string]int
	seenByID   map[string]int // successful results per UNIQ_KEY
	relayed    int            // messages the service's outbox relay sent, copies included
	relaySent  chan struct{}  // receives (without blocking) after each send of the relay
	first      time.Time
	last       time.Time
	lastErrMsg string
}

func newTally() *tally {
	return &tally{byResult: make(map[string]int), seenByID: make(map[string]int), relaySent: make(chan struct{}, 1)}
}

// Results the service logs. "error" means the delivery failed and will be redelivered.
const (
	resultApplied   = "applied"
	resultDuplicate = "duplicate"
	resultDiscarded = "discarded"
	resultError     = "error"
)

func (t *tally) add(result, msgID, errMsg string, at time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.byResult[result]++
	if result == resultError {
		t.lastErrMsg = errMsg
	} else {
		t.seenByID[msgID]++
	}
	if t.first.IsZero() {
		t.first = at
	}
	t.last = at
}

// addRelayed counts n messages that the service's outbox relay reported sent.
func (t *tally) addRelayed(n int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.relayed += n
	select {
	case t.relaySent <- struct{}{}:
	default:
	}
}

// counts is a snapshot of a tally.
type counts struct {
	Applied, Duplicate, Discarded, Errors int
	Relayed                               int // messages the outbox relay sent, copies included
	First, Last                           time.Time
	LastError                             string
}

// Seen is every delivery the service reported a result for, failed ones included.
func (c counts) Seen() int { return c.Applied + c.Duplicate + c.Discarded + c.Errors }

func (t *tally) snapshot() counts {
	t.mu.Lock()
	defer t.mu.Unlock()
	return counts{
		Applied: t.byResult[resultApplied], Duplicate: t.byResult[resultDuplicate],
		Discarded: t.byResult[resultDiscarded], Errors: t.byResult[resultError], Relayed: t.relayed,
		First: t.first, Last: t.last, LastError: t.lastErrMsg,
	}
}

// missing returns how many sent messages have not been reported as consumed yet: for each
// UNIQ_KEY, the copies sent minus the successful results seen (never below zero). A message
// consumed by an instance that was killed before its offset was committed is delivered again
// and reported twice; that can hide a copy still in flight, which is why draining also waits
// for a quiet period and for the database to show every order paid.
func (t *tally) missing(copies map[string]int) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	for id, c := range copies {
		if seen := t.seenByID[id]; seen < c {
			n += c - seen
		}
	}
	return n
}
