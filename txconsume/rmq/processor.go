package rmq

import (
	"context"

	"github.com/txconsume/txconsume/txconsume"
)

// Processor consumes one message exactly once. *txconsume.Processor implements it, and so does the
// status-mode processor of package txconsume/idem.
type Processor interface {
	Process(ctx context.Context, msg *txconsume.Message) (txconsume.Result, error)
}

// BatchProcessor consumes several messages in one transaction. When the Processor given to Listener
// or NewConsumer also implements BatchProcessor, deliveries of more than one message (see
// WithBatchMaxSize) go through ProcessBatch; *txconsume.Processor implements it.
type BatchProcessor interface {
	ProcessBatch(ctx context.Context, msgs []*txconsume.Message) ([]txconsume.Result, error)
}

// processorGroup returns the consumer group p deduplicates for, when it says (a Group method,
// as *txconsume.Processor and *idem.Processor have), or "".
func processorGroup(p Processor) string {
	if g, ok := p.(interface{ Group() string }); ok {
		return g.Group()
	}
	return ""
}

// checker is a Processor that can tell whether it is able to work (database reachable, schema
// migrated); *txconsume.Processor and *idem.Processor are.
type checker interface {
	Check(ctx context.Context) error
}
