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
