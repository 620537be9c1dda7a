package rmq

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/apache/rocketmq-client-go/v2/consumer"
	"github.com/apache/rocketmq-client-go/v2/primitive"
	"github.com/apache/rocketmq-client-go/v2/rlog"
	"github.com/stretchr/testify/require"
)

func queues(topic string, brokers ...string) []*primitive.MessageQueue {
	var qs []*primitive.MessageQueue
	for _, b := range brokers {
		for id := range 2 {
			qs = append(qs, &primitive.MessageQueue{Topic: topic, BrokerName: b, QueueId: id})
		}
	}
	return qs
}

func names(qs []*primitive.MessageQueue) []string {
	out := make([]string, len(qs))
	for i, q := range qs {
		out[i] = fmt.Sprintf("%s/%d", q.BrokerName, q.QueueId)
	}
	return out
}

// TestAllocator: the wrapper allocates as the strategy does, leaves out the queues of excluded
// brokers, and keeps the queues it held while the broker it asked does not list this consumer.
func TestAllocator(t *testing.T) {
	all := queues("t", "a", "b")
	setup := func() *allocator { return newAllocator(consumer.AllocateByAveragely) }

	t.Run("allocates as the strategy does", func(t *testing.T) {
		a := setup()
		cids := []string{"c1", "c2"}
		require.Equal(t, names(consumer.AllocateByAveragely("g", "c1", all, cids)), names(a.allocate("g", "c1", all, cids)))
		require.Equal(t, []string{"a/0", "a/1"}, names(a.allocate("g", "c1", all, cids)))
		require.Empty(t, a.allocate("g", "c1", nil, cids))
	})

	t.Run("excluded brokers are left out until included again", func(t *testing.T) {
		a := setup()
		a.exclude([]string{"b"}, true)
		require.Equal(t, []string{"a/0", "a/1"}, names(a.allocate("g", "c1", all, []string{"c1"})))
		a.exclude([]string{"b"}, false)
		require.Equal(t, []string{"a/0", "a/1", "b/0", "b/1"}, names(a.allocate("g", "c1", all, []string{"c1"})))
	})

	t.Run("a consumer list without this consumer keeps the queues held", func(t *testing.T) {
		a := setup()
		require.Empty(t, a.allocate("g", "c1", all, nil), "nothing held yet: nothing")
		require.Equal(t, []string{"b/0", "b/1"}, names(a.allocate("g", "c2", all, []string{"c1", "c2"})))
		require.Equal(t, []string{"b/0", "b/1"}, names(a.allocate("g", "c2", all, nil)),
			"a broker that restarted lists no consumer yet")
		require.Equal(t, []string{"b/0", "b/1"}, names(a.allocate("g", "c2", all, []string{"c1"})))

		a.exclude([]string{"b"}, true)
		require.Empty(t, a.allocate("g", "c2", all, nil), "held, but excluded")
		a.exclude([]string{"b"}, false)
		require.Equal(t, []string{"b/0", "b/1"}, names(a.allocate("g", "c2", all, nil)),
			"exclusion does not change what is held")

		require.Equal(t, []string{"b/1"}, names(a.allocate("g", "c2", slices.Delete(slices.Clone(all), 2, 3), nil)),
			"a held queue that no longer exists is dropped")
		require.Equal(t, []string{"b/0", "b/1"}, names(a.allocate("g", "c2", queues("t2", "a", "b")[2:], []string{"c2"})),
			"topics are held apart")
	})
}

// fakeBrokers plays the brokers of a recovery: which addresses are brokers, whether they answer,
// and what the allocator excludes at each rebalance.
type fakeBrokers struct {
	mu         sync.Mutex
	answering  bool
	forgotten  bool // the client's routes lack broker-a: its rebalances offer other queues only
	probes     int
	rebalances [][]string // the excluded brokers at each rebalance
	alloc      *allocator
}

func (f *fakeBrokers) brokers(_ context.Context, addr string) ([]string, string) {
	if addr == "10.0.0.1:10911" {
		return []string{"broker-a"}, "orders"
	}
	return nil, ""
}

func (f *fakeBrokers) answers(_ context.Context, addr, topic string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.probes++
	return f.answering
}

func (f *fakeBrokers) rebalance() {
	f.mu.Lock()
	offer := queues("orders", "broker-a", "broker-b")
	if f.forgotten {
		offer = queues("orders", "broker-b")
	}
	f.mu.Unlock()
	f.alloc.allocate("g", "c1", offer, []string{"c1"})
	f.alloc.mu.Lock()
	var ex []string
	for b := range f.alloc.excluded {
		ex = append(ex, b)
	}
	f.alloc.mu.Unlock()
	slices.Sort(ex)
	f.mu.Lock()
	f.rebalances = append(f.rebalances, ex)
	f.mu.Unlock()
}

// persist is recorded among the rebalances, as ["persist"].
func (f *fakeBrokers) persist() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rebalances = append(f.rebalances, []string{"persist"})
}

func (f *fakeBrokers) state() (probes int, rebalances [][]string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.probes, slices.Clone(f.rebalances)
}

// TestRecovery: a closed connection to a broker is followed by probes until the broker answers,
// then by a rebalance without the broker's queues and one with them (then a few more that change
// nothing); a closed connection to anything else changes nothing, and stop ends the probes.
func TestRecovery(t *testing.T) {
	setup := func(t *testing.T) (*recovery, *fakeBrokers, *bytes.Buffer) {
		var logs bytes.Buffer
		f := &fakeBrokers{alloc: newAllocator(nil)}
		r := newRecovery(&recovery{
			alloc: f.alloc, rebalance: f.rebalance, persist: f.persist, group: "g", brokers: f.brokers,
			answers: f.answers, log: slog.New(slog.NewTextHandler(&syncWriter{w: &logs}, nil)),
		})
		t.Cleanup(r.stop)
		return r, f, &logs
	}

	t.Run("broker back: its queues are dropped, then taken again", func(t *testing.T) {
		r, f, logs := setup(t)
		r.connectionClosed("10.0.0.1:10911")
		require.Eventually(t, func() bool { p, _ := f.state(); return p >= 3 }, 10*time.Second, 10*time.Millisecond)
		r.connectionClosed("10.0.0.1:10911") // the same loss again: one recovery
		_, rebalances := f.state()
		require.Empty(t, rebalances, "no rebalance while the broker does not answer")
		f.mu.Lock()
		f.answering = true
		f.mu.Unlock()
		require.Eventually(t, func() bool { _, rb := f.state(); return len(rb) >= 3 }, 10*time.Second, 10*time.Millisecond)
		_, rebalances = f.state()
		require.Equal(t, []string{"persist"}, rebalances[0], "the offsets go to the brokers first")
		require.Equal(t, []string{"broker-a"}, rebalances[1], "then a rebalance without the broker's queues")
		require.Empty(t, rebalances[2], "then one with them")
		require.Eventually(t, func() bool { _, rb := f.state(); return len(rb) == 3+len(retakeDelays) }, 20*time.Second, 10*time.Millisecond)
		_, rebalances = f.state()
		for _, rb := range rebalances[2:] {
			require.Empty(t, rb)
		}
		out := (&syncWriter{w: logs}).String()
		require.Contains(t, out, `msg="rmq: connection to broker lost; waiting for it to answer" group=g broker=10.0.0.1:10911`)
		require.Contains(t, out, `msg="rmq: broker answers; pulls of its queues restarted" group=g broker=10.0.0.1:10911`)
	})

	t.Run("a broker the routes forgot: rebalances go on until the client offers it again", func(t *testing.T) {
		r, f, _ := setup(t)
		f.answering, f.forgotten = true, true
		r.connectionClosed("10.0.0.1:10911")
		require.Eventually(t, func() bool { _, rb := f.state(); return len(rb) >= 3+len(retakeDelays)+2 }, 30*time.Second,
			10*time.Millisecond, "more rebalances than a broker the client still knows gets")
		f.mu.Lock()
		f.forgotten = false
		f.mu.Unlock()
		_, before := f.state()
		time.Sleep(5 * time.Second)
		_, after := f.state()
		require.LessOrEqual(t, len(after), len(before)+1, "they stop once its queues are offered again")
	})

	t.Run("a connection that is no broker's changes nothing", func(t *testing.T) {
		r, f, logs := setup(t)
		f.answering = true
		r.connectionClosed("10.0.0.9:9876")
		r.stop()
		probes, rebalances := f.state()
		require.Zero(t, probes)
		require.Empty(t, rebalances)
		require.Empty(t, (&syncWriter{w: logs}).String())
	})

	t.Run("stop ends the probes and no rebalance follows", func(t *testing.T) {
		r, f, _ := setup(t)
		r.connectionClosed("10.0.0.1:10911")
		require.Eventually(t, func() bool { p, _ := f.state(); return p >= 1 }, 10*time.Second, 10*time.Millisecond)
		r.stop()
		f.mu.Lock()
		f.answering = true
		f.mu.Unlock()
		r.connectionClosed("10.0.0.1:10911")
		time.Sleep(3 * probeInterval)
		_, rebalances := f.state()
		require.Empty(t, rebalances)
	})
}

// TestClientConnectionRecords: the client's record of a closed connection reaches the recovery of
// every running Consumer, at any level, even below the level passed on to the logs.
func TestClientConnectionRecords(t *testing.T) {
	c, err := NewConsumer(&countingProcessor{}, WithNameServers("127.0.0.1:9876"), WithGroup("g"),
		WithSubscription("t", "*"), WithLogger(slog.New(slog.DiscardHandler)))
	require.NoError(t, err)
	f := &fakeBrokers{alloc: c.alloc, answering: true}
	r := newRecovery(&recovery{alloc: c.alloc, rebalance: f.rebalance, group: "g", brokers: f.brokers,
		answers: f.answers, log: slog.New(slog.DiscardHandler)})
	t.Cleanup(r.stop)
	c.recov.Store(r)
	registerClientLogger(c)
	t.Cleanup(func() { unregisterClientLogger(c) })

	rlog.Debug(clientConnClosed, map[string]interface{}{"remoteAddr": fakeAddr("10.0.0.1:10911"), "localAddr": "x"})
	require.Eventually(t, func() bool { _, rb := f.state(); return len(rb) >= 2 }, 10*time.Second, 10*time.Millisecond)
}

type fakeAddr string

func (a fakeAddr) Network() string { return "tcp" }
func (a fakeAddr) String() string  { return string(a) }

// syncWriter lets the test read a buffer that a recovery's goroutine writes to; every syncWriter
// takes the same lock, so that two of them may wrap one buffer.
type syncWriter struct{ w *bytes.Buffer }

var syncWriters sync.Mutex

func (s *syncWriter) Write(p []byte) (int, error) {
	syncWriters.Lock()
	defer syncWriters.Unlock()
	return s.w.Write(p)
}

func (s *syncWriter) String() string {
	syncWriters.Lock()
	defer syncWriters.Unlock()
	return s.w.String()
}
