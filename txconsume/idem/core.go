package idem

import (
	"fmt"
	"time"

	"github.com/txconsume/txconsume/txconsume"
)

// minInProgressRetry is the shortest redelivery delay suggested for a key in progress: asking for
// less would have the broker bounce the message back before anything could have changed.
const minInProgressRetry = time.Second

// inProgressError wraps ErrInProgress in txconsume.RetryAfter with the time the other attempt's
// record has left (when the store knows it), so the transport redelivers when the key is either
// consumed or expired, not in a tight loop.
func inProgressError(key Key, remaining time.Duration) error {
	err := fmt.Errorf("%w: %s", ErrInProgress, key)
	return txconsume.RetryAfter(max(remaining, minInProgressRetry), err)
}
