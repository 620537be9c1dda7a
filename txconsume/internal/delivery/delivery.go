// Package delivery carries what a transport (package rmq) and a processor of this module (txconsume,
// idem) tell each other about one delivery beyond the Result and error that Process returns: the
// transport says which attempt this is, the processor says why it discarded a message, so that
// one log line, written by the transport with its group and ids, can name the reason.
package delivery

import (
	"context"
	"errors"
	"sync"
)

// ErrInProgress is the identity of idem.ErrInProgress: a transport recognises an expected
// "another attempt holds the key" redelivery without importing the status-mode package.
var ErrInProgress = errors.New("idem: message is being processed by another attempt")

// Report is shared by a transport and the processor it calls for one delivery. Its methods are
// safe for concurrent use and do nothing on a nil *Report.
type Report struct {
	// Final reports whether a failure of a message with this many earlier attempts is its last:
	// the broker then moves it to the dead-letter topic. Nil when the transport cannot tell.
	Final func(reconsumeTimes int32) bool

	mu       sync.Mutex
	discards map[any]error
}

type reportKey struct{}

// NewContext returns ctx carrying r.
func NewContext(ctx context.Context, r *Report) context.Context {
	return context.WithValue(ctx, reportKey{}, r)
}

// FromContext returns the Report of ctx, or nil when no transport of this module set one.
func FromContext(ctx context.Context) *Report {
	r, _ := ctx.Value(reportKey{}).(*Report)
	return r
}

// Discarded records that msg (a *txconsume.Message) was discarded for reason. It reports whether
// a transport takes the record, which then logs the discard in its own line; false means the
// processor should log it itself.
func (r *Report) Discarded(msg any, reason error) bool {
	if r == nil {
		return false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.discards == nil {
		r.discards = make(map[any]error)
	}
	r.discards[msg] = reason
	return true
}

// DiscardReason returns the reason recorded for msg by Discarded.
func (r *Report) DiscardReason(msg any) error {
	if r == nil {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.discards[msg]
}

// IsFinal reports whether a failure of a message with reconsumeTimes earlier attempts is its
// last, as far as the transport of ctx knows.
func IsFinal(ctx context.Context, reconsumeTimes int32) bool {
	r := FromContext(ctx)
	return r != nil && r.Final != nil && r.Final(reconsumeTimes)
}
