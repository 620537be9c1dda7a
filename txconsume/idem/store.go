package idem

import (
	"context"
	"fmt"
	"time"
)

// Key names one idempotency record. Records are namespaced by consumer group and topic, so two
// groups consuming the same message each process it once, and equal ids on different topics never
// collide. ID is compared byte for byte by every store.
type Key struct {
	Group string
	Topic string
	ID    string
}

// String formats the key for logs and errors.
func (k Key) String() string { return fmt.Sprintf("%s/%s/%q", k.Group, k.Topic, k.ID) }

// State is what Acquire found.
type State int

const (
	// Acquired means the caller now owns a PROCESSING record for the key until its TTL passes. The key
	// was absent, or its record had expired (a crashed attempt, or a CONSUMED record past its
	// retention).
	Acquired State = iota + 1
	// InProgress means another owner holds an unexpired PROCESSING record.
	InProgress
	// Consumed means the key was consumed and the record is still within its retention.
	Consumed
)

// String returns the state's name in lower case.
func (s State) String() string {
	switch s {
	case Acquired:
		return "acquired"
	case InProgress:
		return "in-progress"
	case Consumed:
		return "consumed"
	default:
		return "unknown"
	}
}

// Acquisition is the outcome of Store.Acquire.
type Acquisition struct {
	State State
	// Remaining is how long the record found stays as it is: for InProgress the time until the
	// other owner's TTL passes, for Consumed the rest of its retention. Zero for Acquired, and
	// zero when the store cannot tell.
	Remaining time.Duration
}

// Store keeps PROCESSING and CONSUMED records. Every transition is a compare-and-set on an owner
// token, a random value the Processor draws per attempt, so a worker whose PROCESSING record
// expired and was taken over by another attempt can neither mark that attempt's record consumed
// nor delete it. Implementations must be safe for concurrent use by many goroutines and
// processes, and must take times from the server that holds the records, never from the caller's
// clock.
//
// A record past its TTL (PROCESSING) or past its retention (CONSUMED) is treated as absent. Until
// another owner takes an expired PROCESSING record over, whether its old owner may still mark or
// release it is store specific: the MySQL store allows it, the Redis store has dropped the key.
//
// Use the conformance suite in package idemtest to check an implementation.
type Store interface {
	// Acquire makes owner the holder of a PROCESSING record for key that expires after ttl, if the
	// key is absent or its record has expired; otherwise it reports what it found.
	Acquire(ctx context.Context, key Key, owner string, ttl time.Duration) (Acquisition, error)
	// MarkConsumed turns owner's PROCESSING record into a CONSUMED record kept for retention.
	// It returns ErrNotOwner if the record is not a PROCESSING record held by owner.
	MarkConsumed(ctx context.Context, key Key, owner string, retention time.Duration) error
	// Release deletes owner's PROCESSING record so the next delivery can process the key.
	// It returns ErrNotOwner if the record is not a PROCESSING record held by owner.
	Release(ctx context.Context, key Key, owner string) error
}

// Checker is implemented by stores that can tell whether they are usable (reachable, schema
// migrated). Processor.Check calls it; both stores of this package implement it.
type Checker interface {
	Check(ctx context.Context) error
}
