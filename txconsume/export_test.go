package txconsume

import "context"

// RetentionDeleteStatement returns the DELETE that DeleteDedupOlderThan issues for one batch of
// (group, key) pairs older than cutoff, so that tests can EXPLAIN it and hold it open in a
// transaction of their own.
func RetentionDeleteStatement(cutoff string, keys [][2]string) (string, []any, error) {
	pks := make([]dedupPK, len(keys))
	for i, k := range keys {
		pks[i] = dedupPK{group: []byte(k[0]), key: []byte(k[1])}
	}
	return deleteKeysStatement(cutoff, pks)
}

// Unprotected makes p run its transactions as if its pool were guarded although it is not: the
// statements it sends are then exactly those of a Processor without any protection against a
// handler's mistakes. The benchmarks and TestStatementsPerMessage measure the protections
// against it; nothing else should use it.
func Unprotected(p *Processor) *Processor {
	p.guarded = true
	return p
}

// LaneLimit returns how many batch transactions p runs at once after lock conflicts (0: no
// limit).
func LaneLimit(p *Processor) int {
	p.lanes.mu.Lock()
	defer p.lanes.mu.Unlock()
	return p.lanes.limit
}

// HoldLanes limits p to n batch transactions at once and takes all n lanes, as n batch
// transactions in flight would; the returned function gives them back.
func HoldLanes(p *Processor, n int) (release func()) {
	p.lanes.mu.Lock()
	p.lanes.limit = n
	p.lanes.mu.Unlock()
	for range n {
		if err := p.lanes.acquire(context.Background()); err != nil {
			panic(err)
		}
	}
	return func() {
		for range n {
			p.lanes.release()
		}
	}
}
