// Package idemtest is the conformance suite for idem.Store implementations: it checks the store's
// compare-and-set contract directly, and the Processor's guarantees on top of it, against a real
// backend. The MySQL and Redis stores run it; so can any other implementation:
//
//	func TestMyStore(t *testing.T) {
//		idemtest.Run(t, func(t *testing.T) idemtest.Backend {
//			return idemtest.Backend{NewStore: ..., Unreachable: ..., Effects: ...}
//		})
//	}
//
// The suite waits for real expiry with short TTLs (hundreds of milliseconds); it needs no clock
// injection because the stores take time from their server.
package idemtest

import (
	"context"
	"testing"

	"github.com/txconsume/txconsume/txconsume/idem"
)

// Backend is one kind of store under test. Run calls the setup function once per subtest; the
// stores and effects it returns must be isolated from other subtests (a fresh database, a fresh
// key prefix) and share records with each other within the subtest.
type Backend struct {
	// NewStore returns a new store instance with its own connection pool or client, like a second
	// instance of a service would have, and a function that closes that pool or client, making
	// this instance (only) unavailable. Required.
	NewStore func(t *testing.T) (store idem.Store, shutdown func())
	// Unreachable returns a store whose server cannot be reached (e.g. a client pointed at a
	// closed port). Required.
	Unreachable func(t *testing.T) idem.Store
	// Effects records handler effects in the backend's own storage, so that "the handler ran once"
	// is counted where the effect lives and not only in memory. Required.
	Effects Effects
}

// Effects is a durable counter of handler effects per key.
type Effects interface {
	// Record counts one effect for key.
	Record(ctx context.Context, key string) error
	// Count returns how many effects were recorded for key.
	Count(ctx context.Context, key string) (int, error)
}

// Run runs the whole suite: store-level subtests under "Store" and processor-level subtests under
// "Processor".
func Run(t *testing.T, setup func(t *testing.T) Backend) {
	t.Run("Store", func(t *testing.T) { runStore(t, setup) })
	t.Run("Processor", func(t *testing.T) { runProcessor(t, setup) })
	t.Run("Observability", func(t *testing.T) { runObservability(t, setup) })
}
