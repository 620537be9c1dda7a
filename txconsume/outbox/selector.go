package outbox

import (
	"math/rand/v2"
	"sync"
	"sync/atomic"

	"github.com/apache/rocketmq-client-go/v2/primitive"
	"github.com/apache/rocketmq-client-go/v2/producer"
)

// QueueSelector returns the queue selector a relay's producer must be created with:
//
//	p, err := rocketmq.NewProducer(
//		producer.WithNsResolver(primitive.NewPassthroughResolver([]string{"127.0.0.1:9876"})),
//		producer.WithGroupName("order-service-outbox"),
//		producer.WithQueueSelector(outbox.QueueSelector()),
//	)
//
// Why the relay needs it: the relay sends many messages in one SendSync, and a batch send hands
// the selector only the batch, not the messages' sharding keys, so producer.NewHashQueueSelector
// would put a key's batch on a random queue. With this selector the relay chooses each batch's
// queue itself: the one the hash selector would choose for the batch's sharding keys, all of
// which the relay has grouped by that queue. A relay whose producer was created without it
// stops at its first send with an error saying so.
//
// For messages that do not come from a relay, the selector does what
// producer.NewHashQueueSelector does (the queue of the sharding key, or a random queue), or
// returns the message's Queue when the caller set one; so the same producer can serve other
// sends too.
func QueueSelector() producer.QueueSelector { return queueSelector{} }

type queueSelector struct{}

// picks maps the placeholder queue a relay puts on the first message of a send to what the
// relay wants for that send. A placeholder never reaches the broker: the selector replaces it
// by one of the topic's queues.
var picks sync.Map // *primitive.MessageQueue -> *pick

// roundRobin spreads messages without a sharding key over the queues.
var roundRobin atomic.Uint32

func (queueSelector) Select(msg *primitive.Message, mqs []*primitive.MessageQueue, lastBrokerName string) *primitive.MessageQueue {
	if len(mqs) == 0 {
		return nil
	}
	if msg.Queue != nil {
		if p, ok := picks.Load(msg.Queue); ok {
			return p.(*pick).choose(mqs, lastBrokerName)
		}
		return msg.Queue
	}
	if key := msg.GetShardingKey(); key != "" {
		return mqs[keyHash(key)%uint32(len(mqs))]
	}
	return mqs[rand.IntN(len(mqs))]
}

// queuePlan is the queue a relay wants for one send. Keyed sends go to one queue: the queue at
// index when the topic's queue count is known (queues > 0), else the queue of hash, as the hash
// selector would choose it. Sends without a sharding key go to any queue.
type queuePlan struct {
	keyed  bool
	queues int
	index  int
	hash   uint32
}

// pick is a send's queue plan and what the selector saw.
type pick struct {
	queuePlan

	mu      sync.Mutex
	seen    int // len(mqs) at the last Select, 0 if Select was never called
	chosen  *primitive.MessageQueue
	refused bool // queues was given and the topic has another number of queues
}

// placeholderBroker names the broker of a placeholder queue, for a selector that returns it
// as it is (producer.NewManualQueueSelector): the send then fails with "route info not found".
const placeholderBroker = "(queue chosen by outbox.QueueSelector)"

// register makes a placeholder queue for topic that stands for p until unregister.
func (p *pick) register(topic string) *primitive.MessageQueue {
	q := &primitive.MessageQueue{Topic: topic, BrokerName: placeholderBroker, QueueId: -1}
	picks.Store(q, p)
	return q
}

func unregister(q *primitive.MessageQueue) { picks.Delete(q) }

func (p *pick) choose(mqs []*primitive.MessageQueue, lastBrokerName string) *primitive.MessageQueue {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.seen = len(mqs)
	switch {
	case p.keyed && p.queues > 0:
		if p.queues != len(mqs) {
			// The relay grouped keys by a queue count the topic no longer has: sending the
			// batch to any queue would put some keys on a queue that is not theirs. Refusing
			// makes the send fail without sending; the relay regroups with len(mqs).
			p.refused = true
			return nil
		}
		p.chosen = mqs[p.index]
	case p.keyed:
		p.chosen = mqs[p.hash%uint32(len(mqs))]
	default:
		// No order to keep: any queue, away from a broker that just failed if there is another.
		start := roundRobin.Add(1)
		p.chosen = mqs[start%uint32(len(mqs))]
		for i := range uint32(len(mqs)) {
			q := mqs[(start+i)%uint32(len(mqs))]
			if q.BrokerName != lastBrokerName {
				p.chosen = q
				break
			}
		}
	}
	return p.chosen
}

// result reports what the selector saw: the topic's queue count (0 when Select was not called),
// the queue chosen, and whether it refused the send.
func (p *pick) result() (seen int, chosen *primitive.MessageQueue, refused bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.seen, p.chosen, p.refused
}
