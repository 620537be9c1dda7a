package rmq

import "time"

// delayLevels is the broker's default messageDelayLevel table: level n (1-based) waits delayLevels[n-1].
var delayLevels = [...]time.Duration{
	1 * time.Second, 5 * time.Second, 10 * time.Second, 30 * time.Second,
	1 * time.Minute, 2 * time.Minute, 3 * time.Minute, 4 * time.Minute, 5 * time.Minute,
	6 * time.Minute, 7 * time.Minute, 8 * time.Minute, 9 * time.Minute, 10 * time.Minute,
	20 * time.Minute, 30 * time.Minute, 1 * time.Hour, 2 * time.Hour,
}

// MaxDelayLevel is the highest delay level of the broker's default table (2h).
const MaxDelayLevel = len(delayLevels)

// DelayLevel returns the broker delay level for waiting d before a redelivery: the smallest level whose
// delay is at least d, so a message is never redelivered earlier than asked, capped at MaxDelayLevel
// (2h). The levels are the broker's default messageDelayLevel
// "1s 5s 10s 30s 1m 2m 3m 4m 5m 6m 7m 8m 9m 10m 20m 30m 1h 2h"; a broker configured with another
// table interprets levels by its own table.
func DelayLevel(d time.Duration) int {
	for i, level := range delayLevels {
		if d <= level {
			return i + 1
		}
	}
	return MaxDelayLevel
}
