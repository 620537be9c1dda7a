package idem

import (
	"errors"
	"fmt"

	"github.com/txconsume/txconsume/txconsume/internal/delivery"
)

var (
	// ErrInProgress means another attempt holds the key's PROCESSING record. Process returns it
	// (wrapped) for a duplicate that arrives while the first delivery is still being handled, so
	// the broker redelivers it later; by then the key is CONSUMED (acknowledged as a duplicate) or
	// released (processed).
	ErrInProgress = delivery.ErrInProgress
	// ErrNotOwner is returned by a MarkConsumed or Release whose owner token does not hold the
	// key's PROCESSING record: it expired (and another attempt may have taken the key over), or it
	// was removed (an operator's release, a store that lost it).
	ErrNotOwner = errors.New("idem: record is not held by this owner")
	// ErrKeyTooLong means the key does not fit the store's limits (see the store's documentation).
	ErrKeyTooLong = errors.New("idem: key too long for the store")
)

// StoreError reports a store operation that failed, usually because the store is unreachable.
// When Acquire fails, Process returns a *StoreError and does not run the handler (unless
// WithFailOpen is set), so the broker redelivers the message later.
type StoreError struct {
	Op  string // "acquire", "mark consumed" or "release"
	Key Key
	Err error
}

func (e *StoreError) Error() string {
	return fmt.Sprintf("idem: %s %s: %v", e.Op, e.Key, e.Err)
}

func (e *StoreError) Unwrap() error { return e.Err }
