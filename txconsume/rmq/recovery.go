package rmq

import (
	"context"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/apache/rocketmq-client-go/v2/consumer"
	"github.com/apache/rocketmq-client-go/v2/primitive"
)

// Restarting the pulls of a broker that came back.
//
// rocketmq-client-go matches answers to requests through one table keyed by request id. When a
// connection closes (the broker crashed or restarted, a proxy cut it), the client forgets the
// connection but leaves the requests that wait for an answer on it: each pull in flight waits out
// its fixed 30s timeout, and the pull loop of its queue then pauses 3s more. A broker back within
// seconds therefore gets no pull from the consumer for up to 33s after the connection closed (the
// upstream report is in docs/upstream.md).
//
// The client writes a record when it closes a connection ("conn error, close connection", at
// error level for a reset and at debug level for EOF), naming the remote address. A Consumer that
// reads one for the address of a broker it consumes from probes that broker until it answers, and
// then has the client rebalance twice: first with that broker's queues left out of the allocation,
// which drops their process queues (a stuck pull finds its queue dropped when it returns, and
// ends), then with them back, which starts fresh pulls on a new connection from the offsets the
// first rebalance stored on the broker.

// clientConnClosed is the message of the client's record of a closed connection.
const clientConnClosed = "conn error, close connection"

// probeInterval is how often a lost broker is asked whether it answers again.
const probeInterval = 200 * time.Millisecond

// unreachableReminder is how often a broker that still does not answer is logged again.
const unreachableReminder = 30 * time.Second

// allocator wraps the client's allocation strategy for the recovery above, and for one more
// case: a broker that restarted knows the group's consumers only after their next heartbeat, and
// in the meantime answers a rebalance's request for them with a list that lacks this consumer. The
// client's strategies then allocate nothing, which stops every pull of the consumer until its
// next heartbeat and rebalance (up to 30s and 20s later). The allocator keeps the queues it held
// instead: what the consumer would get once the broker knows it again.
type allocator struct {
	strategy consumer.AllocateStrategy

	mu       sync.Mutex
	excluded map[string]bool                      // broker names whose queues are left out
	held     map[string][]*primitive.MessageQueue // topic -> the strategy's last allocation
	known    map[string]map[string]bool           // topic -> the brokers of the queues last offered
}

func newAllocator(strategy consumer.AllocateStrategy) *allocator {
	if strategy == nil {
		strategy = consumer.AllocateByAveragely
	}
	return &allocator{strategy: strategy, excluded: map[string]bool{}, held: map[string][]*primitive.MessageQueue{},
		known: map[string]map[string]bool{}}
}

// allocate is a consumer.AllocateStrategy. The client calls it once per subscribed topic, with
// every queue of that topic.
func (a *allocator) allocate(group, clientID string, mqAll []*primitive.MessageQueue, cidAll []string) []*primitive.MessageQueue {
	if len(mqAll) == 0 {
		return a.strategy(group, clientID, mqAll, cidAll)
	}
	topic := mqAll[0].Topic
	a.mu.Lock()
	defer a.mu.Unlock()
	known := map[string]bool{}
	for _, q := range mqAll {
		known[q.BrokerName] = true
	}
	a.known[topic] = known
	var result []*primitive.MessageQueue
	if slices.Contains(cidAll, clientID) {
		result = a.strategy(group, clientID, mqAll, cidAll)
	} else {
		for _, q := range a.held[topic] {
			if slices.ContainsFunc(mqAll, func(m *primitive.MessageQueue) bool { return *m == *q }) {
				result = append(result, q)
			}
		}
	}
	a.held[topic] = result
	if len(a.excluded) == 0 {
		return result
	}
	kept := make([]*primitive.MessageQueue, 0, len(result))
	for _, q := range result {
		if !a.excluded[q.BrokerName] {
			kept = append(kept, q)
		}
	}
	return kept
}

// offered reports whether the last rebalance offered queues of every broker of brokers, in some
// topic: the client learnt their route again.
func (a *allocator) offered(brokers []string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, b := range brokers {
		found := false
		for _, known := range a.known {
			found = found || known[b]
		}
		if !found {
			return false
		}
	}
	return true
}

func (a *allocator) exclude(brokers []string, out bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, b := range brokers {
		if out {
			a.excluded[b] = true
		} else {
			delete(a.excluded, b)
		}
	}
}

// rebalancer is what the client's push consumer offers beyond rocketmq.PushConsumer: its
// Rebalance method runs one rebalance now.
type rebalancer interface{ Rebalance() }

// offsetPersister is the client push consumer's method that sends every queue's consumed offset
// to its broker now.
type offsetPersister interface{ PersistConsumerOffset() error }

// recovery follows the client's connections to the brokers of one Consumer.
type recovery struct {
	alloc     *allocator
	rebalance func()
	// persist sends the consumed offsets of every queue to the brokers; nil when the client
	// cannot.
	persist func()
	log     *slog.Logger
	group   string
	// brokers returns the names of the brokers at addr among those serving the Consumer's topics,
	// and a topic one of them serves (to probe with); nil when addr is no such broker.
	brokers func(ctx context.Context, addr string) (names []string, topic string)
	// answers reports whether the broker at addr answers a request about topic.
	answers func(ctx context.Context, addr, topic string) bool

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex
	probing map[string]bool // addr -> a probe runs
}

func newRecovery(r *recovery) *recovery {
	r.ctx, r.cancel = context.WithCancel(context.Background())
	r.probing = map[string]bool{}
	return r
}

// connectionClosed is called with the remote address of every connection the client closes.
func (r *recovery) connectionClosed(addr string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ctx.Err() != nil || r.probing[addr] {
		return
	}
	r.probing[addr] = true
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		names, restarted := r.recover(addr)
		// From here on, a connection to addr that closes again starts a new recovery.
		r.mu.Lock()
		delete(r.probing, addr)
		r.mu.Unlock()
		if restarted {
			r.retake(names)
		}
	}()
}

// recover waits until the broker at addr answers, then restarts the pulls of its queues; it
// returns the broker's names and whether it did.
func (r *recovery) recover(addr string) ([]string, bool) {
	names, topic := r.brokers(r.ctx, addr)
	if len(names) == 0 {
		return nil, false // a name server, or a broker this Consumer does not read from
	}
	lost := time.Now()
	reminded := lost
	first := true
	for !r.answers(r.ctx, addr, topic) {
		if first {
			r.log.Warn("rmq: connection to broker lost; waiting for it to answer",
				slog.String("group", r.group), slog.String("broker", addr), slog.Any("broker_names", names))
			first = false
		}
		if time.Since(reminded) >= unreachableReminder {
			reminded = time.Now()
			r.log.Warn("rmq: broker still unreachable", slog.String("group", r.group),
				slog.String("broker", addr), slog.Duration("for", time.Since(lost).Round(time.Second)))
		}
		select {
		case <-r.ctx.Done():
			return nil, false
		case <-time.After(probeInterval):
		}
	}
	if r.ctx.Err() != nil {
		return nil, false
	}
	start := time.Now()
	// The queues are taken again from the offsets the broker has. A broker that was killed lost
	// those it had not flushed yet, and the client's drop of a queue sends the offset of that queue
	// only (and forgets the others' as it does): every queue's offset goes to the brokers first,
	// or the consumer would redeliver seconds of messages before it reaches new ones.
	if r.persist != nil {
		r.persist()
	}
	r.alloc.exclude(names, true)
	r.rebalance()
	r.alloc.exclude(names, false)
	r.rebalance()
	r.log.Info("rmq: broker answers; pulls of its queues restarted", slog.String("group", r.group),
		slog.String("broker", addr), slog.Duration("unreachable_for", start.Sub(lost).Round(time.Millisecond)),
		slog.Duration("restart_took", time.Since(start).Round(time.Millisecond)))
	return names, true
}

// retake runs more rebalances after a restart of pulls: a few in any case, then more until the
// client offers the broker's queues again.
func (r *recovery) retake(names []string) {
	// The client does not take a queue whose offset it cannot read from the broker, and tries
	// again only at its next rebalance, up to 20s later; a broker just back may not answer that
	// read yet. A rebalance that changes nothing costs one request, so a few follow.
	for _, wait := range retakeDelays {
		if !r.sleep(wait) {
			return
		}
		r.rebalance()
	}
	// A broker that was down long enough for the name servers to forget it (for a topic that
	// another broker serves too) comes back into the client's routes only at its next route
	// poll, every 30s, and into its allocation at the rebalance after that, every 20s: a rebalance
	// every few seconds until the client offers its queues again saves the second wait.
	deadline := time.Now().Add(routeRelearn)
	for !r.alloc.offered(names) && time.Now().Before(deadline) {
		if !r.sleep(2 * time.Second) {
			return
		}
		r.rebalance()
	}
}

// sleep waits d, or reports false when the recovery stops first.
func (r *recovery) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-r.ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// retakeDelays are the pauses before the rebalances that follow a restart of pulls.
var retakeDelays = []time.Duration{time.Second, 2 * time.Second, 4 * time.Second}

// routeRelearn bounds the rebalances that wait for the client to learn a broker's route again:
// its route poll runs every 30s.
const routeRelearn = 40 * time.Second

// stop ends the probes and waits for a recovery under way; no rebalance runs after it returns.
func (r *recovery) stop() {
	r.mu.Lock()
	r.cancel()
	r.mu.Unlock()
	r.wg.Wait()
}

// brokerDirectory knows which brokers serve a Consumer's topics, by address. It is refreshed from
// the name servers at Start and every routeRefresh: when a connection closes because a broker
// went down, the name servers may already have forgotten that broker.
type brokerDirectory struct {
	admin  *Admin
	topics []string

	mu      sync.Mutex
	byAddr  map[string][]string // broker address -> broker names
	topicOf map[string]string   // broker name -> a topic it serves
}

const routeRefresh = 30 * time.Second

// refresh asks the name servers for the routes of the topics; a topic it cannot get keeps what
// was known.
func (d *brokerDirectory) refresh(ctx context.Context) {
	byAddr := map[string][]string{}
	topicOf := map[string]string{}
	for _, topic := range d.topics {
		route, err := d.admin.route(ctx, topic)
		if err != nil {
			continue
		}
		for _, b := range route.BrokerDatas {
			for _, addr := range b.BrokerAddrs {
				if !slices.Contains(byAddr[addr], b.BrokerName) {
					byAddr[addr] = append(byAddr[addr], b.BrokerName)
				}
			}
			if _, ok := topicOf[b.BrokerName]; !ok {
				topicOf[b.BrokerName] = topic
			}
		}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.byAddr == nil {
		d.byAddr, d.topicOf = map[string][]string{}, map[string]string{}
	}
	for addr, names := range byAddr {
		d.byAddr[addr] = names
	}
	for name, topic := range topicOf {
		d.topicOf[name] = topic
	}
}

// lookup returns the names of the brokers at addr and a topic one of them serves.
func (d *brokerDirectory) lookup(ctx context.Context, addr string) ([]string, string) {
	if names, topic := d.known(addr); len(names) > 0 {
		return names, topic
	}
	d.refresh(ctx)
	return d.known(addr)
}

func (d *brokerDirectory) known(addr string) ([]string, string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	names := d.byAddr[addr]
	for _, n := range names {
		if t, ok := d.topicOf[n]; ok {
			return slices.Clone(names), t
		}
	}
	return nil, ""
}

// keepFresh refreshes the directory every routeRefresh until ctx ends.
func (d *brokerDirectory) keepFresh(ctx context.Context) {
	t := time.NewTicker(routeRefresh)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			d.refresh(ctx)
		}
	}
}
