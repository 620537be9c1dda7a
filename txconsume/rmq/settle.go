package rmq

import (
	"context"
	"log/slog"
	"reflect"
	"time"

	"github.com/apache/rocketmq-client-go/v2/primitive"
)

// Bounds of settle.
const (
	settlePoll = time.Millisecond
	settleMax  = 10 * time.Second
)

// deliveries is what the Consumer knows of the deliveries the client made to it, per queue: what
// settle compares the client's state with.
type deliveries struct {
	last        map[primitive.MessageQueue]int64 // highest queue offset delivered
	heldMsgs    map[primitive.MessageQueue]int   // messages of deliveries held during Shutdown
	heldByTopic map[string]int                   // deliveries held during Shutdown, by queue topic
}

func newDeliveries() deliveries {
	return deliveries{
		last:        map[primitive.MessageQueue]int64{},
		heldMsgs:    map[primitive.MessageQueue]int{},
		heldByTopic: map[string]int{},
	}
}

// note records a delivery; held says it is held until the client has shut down. The caller holds
// c.mu.
func (d deliveries) note(msgs []*primitive.MessageExt, held bool) {
	topics := map[string]bool{}
	for _, m := range msgs {
		if m == nil || m.Queue == nil {
			continue
		}
		mq := *m.Queue
		if off, ok := d.last[mq]; !ok || m.QueueOffset > off {
			d.last[mq] = m.QueueOffset
		}
		if held {
			d.heldMsgs[mq]++
			topics[mq.Topic] = true
		}
	}
	for t := range topics {
		d.heldByTopic[t]++
	}
}

// settle waits, once no delivery is in the Processor and before the client shuts down, until the
// client has recorded the result of every delivery that returned.
//
// Why: the client records a result (removes the messages from its queue's cache and advances the
// queue's offset in memory) on the callback's goroutine after the callback returned, and only
// while the queue has not been dropped. Its Shutdown drops every queue, then persists the offsets
// in memory to the broker. A result it had not recorded by then is lost: the next consumer of the
// group gets those messages again, and every later message of the queue (as Duplicates: nothing
// is applied twice, but all of them run through the Processor again).
//
// When is every result recorded? Each delivery takes one of the client's consume slots (the
// Goroutines option, per queue topic) and gives it back after recording its result. A concurrent
// queue topic is settled when the deliveries held by Shutdown take all its slots (no other
// delivery can be left), or when every queue of the topic caches exactly the messages held and
// its offset in memory is at the lowest of them, or past the last message delivered when none is
// held. An orderly queue, consumed one delivery at a time, is settled when a delivery of it is
// held (the one before was recorded before it was taken), or when it caches nothing and its
// offset is past the last message delivered.
//
// The client exports its queues' state only through a method whose result type this package
// cannot name (GetConsumerRunningInfo), so settle reads it by reflection. If that does not work
// with the client's version, settle returns at once, and up to one delivery per consume slot may
// have its result lost as described; if the state does not settle within settleMax (a client whose
// Goroutines option was overridden through WithClientOptions, say), it logs and returns.
func (c *Consumer) settle(ctx context.Context) {
	deadline := time.Now().Add(settleMax)
	for {
		settled, ok := c.settled()
		if !ok {
			c.log.Debug("rmq: cannot read the client's queue state; not waiting for it to record the last results",
				slog.String("group", c.cfg.group))
			return
		}
		if settled {
			return
		}
		if time.Now().After(deadline) {
			c.log.Warn("rmq: the client did not record the last results in time; their messages may come again as duplicates",
				slog.String("group", c.cfg.group), slog.Duration("waited", settleMax))
			return
		}
		t := time.NewTimer(settlePoll)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return
		}
	}
}

// queueState is the part of the client's state of one queue that settle reads.
type queueState struct {
	dropped           bool
	commit            int64 // offset in memory
	cached, cachedMin int64 // messages cached, not recorded (and the lowest offset among them)
	taken             int64 // orderly: messages taken for consumption, not yet committed
}

// settled reports whether every queue is settled (see settle); ok is false when the client's
// state cannot be read.
func (c *Consumer) settled() (settled, ok bool) {
	queues, ok := c.queueStates()
	if !ok {
		return false, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	d := c.delivered
	for mq, q := range queues {
		if q.dropped {
			continue
		}
		last, delivered := d.last[mq]
		if c.cfg.orderly {
			if d.heldMsgs[mq] > 0 {
				continue
			}
			if q.cached > 0 || q.taken > 0 || delivered && q.commit < last+1 {
				return false, true
			}
			continue
		}
		if d.heldByTopic[mq.Topic] >= c.cfg.goroutines {
			continue
		}
		if q.cached != int64(d.heldMsgs[mq]) {
			return false, true
		}
		switch {
		case q.cached > 0 && q.commit < q.cachedMin:
			return false, true
		case q.cached == 0 && delivered && q.commit < last+1:
			return false, true
		}
	}
	return true, true
}

// queueStates reads the client's queues by reflection from GetConsumerRunningInfo(false), whose
// result holds MQTable map[primitive.MessageQueue]*ProcessQueueInfo.
func (c *Consumer) queueStates() (states map[primitive.MessageQueue]queueState, ok bool) {
	defer func() {
		if recover() != nil { // a client whose types differ from those expected
			states, ok = nil, false
		}
	}()
	m := reflect.ValueOf(c.push).MethodByName("GetConsumerRunningInfo")
	if !m.IsValid() || m.Type().NumIn() != 1 || m.Type().In(0).Kind() != reflect.Bool || m.Type().NumOut() != 1 {
		return nil, false
	}
	table := reflect.Indirect(m.Call([]reflect.Value{reflect.ValueOf(false)})[0]).FieldByName("MQTable")
	if table.Kind() != reflect.Map {
		return nil, false
	}
	states = map[primitive.MessageQueue]queueState{}
	iter := table.MapRange()
	for iter.Next() {
		mq := iter.Key().Interface().(primitive.MessageQueue)
		pq := reflect.Indirect(iter.Value())
		num := func(name string) int64 { return pq.FieldByName(name).Int() }
		states[mq] = queueState{
			dropped:   pq.FieldByName("Dropped").Bool(),
			commit:    num("CommitOffset"),
			cached:    num("CachedMsgCount"),
			cachedMin: num("CachedMsgMinOffset"),
			taken:     num("TransactionMsgCount"),
		}
	}
	return states, true
}
