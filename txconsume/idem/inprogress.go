package idem

import (
	"fmt"
	"time"

	"github.com/txconsume/txconsume/txconsume"
)

// minInProgressRetry is the first redelivery delay suggested for a key in progress: asking for
// less would have the broker bounce the message straight back.
const minInProgressRetry = time.Second

// inProgressError wraps ErrInProgress in txconsume.RetryAfter so that the transport redelivers
// the duplicate when the other attempt has probably finished, without a tight loop that would
// burn through the message's redelivery budget (and send it to the dead-letter queue) while a
// slow attempt is still running. The delay doubles with each redelivery, from 1s, and is capped
// by the time the other attempt's record has left: by then it has been consumed, released or has
// expired, so that redelivery is not bounced again.
func inProgressError(key Key, msg *txconsume.Message, remaining time.Duration) error {
	delay := minInProgressRetry << min(max(msg.ReconsumeTimes, 0), 12)
	if remaining > 0 {
		delay = min(delay, remaining)
	}
	return txconsume.RetryAfter(max(delay, minInProgressRetry), fmt.Errorf("%w: %s", ErrInProgress, key))
}
