package integration

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/apache/rocketmq-client-go/v2/primitive"
	"github.com/stretchr/testify/require"

	"github.com/txconsume/txconsume/internal/testenv"
	"github.com/txconsume/txconsume/txconsume/outbox"
)

// The outbox chain: a txconsume consumer of topic A whose handler applies its effect and enqueues
// an event for topic B in the same transaction (forwardHandler), relays in processes of their own
// that publish the outbox, and an orderly txconsume consumer of B that applies each order's events
// and records the sequence number it found before (orderlyHandler). In every scenario, A gets
// duplicates (messages sent twice with the same UNIQ_KEY), and the effects are counted in the
// database at the end: every A message applied once, every one of them yields exactly one B
// effect, none lost, and each order's B effects are its sequence 1..n, each one applied after its
// predecessor.

const (
	chainOrders   = 12
	chainPerOrder = 30
	chainTotal    = chainOrders * chainPerOrder
	chainResent   = chainTotal / 5
)

func TestOutboxChain(t *testing.T) {
	t.Run("relay SIGKILLed between send and mark", func(t *testing.T) {
		c := newChain(t, nil)
		a, b := c.startConsumers()
		r1 := c.startRelay("relay-1", relaySpec{KillAfterSends: 3})
		c.sendA()

		r1.waitExit()
		require.True(t, r1.killed(), "relay-1 killed itself after its third send: %s", r1.stderr.String())
		// The broker has the messages of the killed relay's round, and the table still has them
		// pending: the round never committed. Its last send is among them.
		unmarked := c.stillPending(r1.sentIDs())
		last := r1.lastSend()
		require.NotEmpty(t, last)
		require.Subset(t, unmarked, last, "the killed relay's last send is still pending")

		r2 := c.startRelay("relay-2", relaySpec{})
		// Every delivery seen: the messages and the copies the second relay sent again.
		c.waitDone(0, func() bool {
			return c.bStats.applied.Load()+c.bStats.duplicate.Load() >= int64(chainTotal+len(unmarked))
		})
		for _, id := range unmarked {
			require.Equal(t, 1, r2.sentCount(id), "relay-2 sent %s again, under the same id", id)
		}
		r2.stop()
		c.shutdown(a, b)
		c.verify(0)
		require.GreaterOrEqual(t, c.bStats.duplicate.Load(), int64(len(unmarked)), "the copies were duplicates at B")
		// B saw one id per event, copies included: the relays' batch sends kept the UNIQ_KEY
		// Enqueue gave each message.
		idsByKey := b.ids()
		require.Len(t, idsByKey, chainTotal)
		for key, ids := range idsByKey {
			require.Len(t, ids, 1, "event %s arrived under several ids: %v", key, ids)
		}
		t.Logf("A: %s; B: %s; %d messages sent by the killed relay and again", c.aStats, c.bStats, len(unmarked))
	})

	t.Run("two relays at once", func(t *testing.T) {
		c := newChain(t, nil)
		a, b := c.startConsumers()
		r1 := c.startRelay("relay-1", relaySpec{})
		r2 := c.startRelay("relay-2", relaySpec{})
		c.sendA()
		c.waitDone(0, nil)
		r1.stop()
		r2.stop()
		c.shutdown(a, b)
		c.verify(0)

		n1, n2 := r1.sentTotal(), r2.sentTotal()
		require.Equal(t, chainTotal, n1+n2, "no message sent twice in normal operation; relays' warnings:\n%s\n%s",
			r1.warnings(), r2.warnings())
		for id, n := range r1.sentIDs() {
			require.Equal(t, 1, n+r2.sentCount(id), "message %s", id)
		}
		require.Positive(t, n1, "both relays worked")
		require.Positive(t, n2, "both relays worked")
		require.Zero(t, c.bStats.duplicate.Load(), "B saw no copy")
		t.Logf("relay-1 sent %d, relay-2 sent %d; A: %s; B: %s", n1, n2, c.aStats, c.bStats)
	})

	t.Run("broker restarted mid-stream", func(t *testing.T) {
		began := time.Now()
		step := func(what string) { t.Logf("%6.1fs %s", time.Since(began).Seconds(), what) }
		cluster := testenv.PrivateRocketMQ(t)
		broker := cluster.Brokers[0]
		step("private broker up")
		mq := &testenv.RocketMQ{NameServer: cluster.NameServer(), Broker: broker.Addr(), Group: testenv.UniqueName(t, "g")}
		mq.Topic = mq.CreateTopic(t, testenv.UniqueName(t, "a"), 4)
		c := newChain(t, mq)
		a, b := c.startConsumers()
		r := c.startRelay("relay", relaySpec{})
		step("chain running")

		msgs := c.aMessages()
		c.sendAWithRetries(msgs[:chainTotal/2])
		c.waitFor("the first half through the chain", 0, func() bool { return c.bStats.applied.Load() >= chainTotal/4 })
		step("first half through")
		broker.Kill(t)
		// Messages enqueued in plain transactions while the broker is down: the relay cannot send
		// them, keeps them and backs off.
		const direct = 20
		c.enqueueDirect(direct)
		c.waitFor("the relay failing to send", direct, func() bool { return r.failures() > 0 })
		step("relay failed")
		broker.Start(t)
		step("broker restarted")
		c.sendAWithRetries(msgs[chainTotal/2:])
		c.sendAWithRetries(c.duplicatesOf(msgs))
		step("second half sent")
		c.waitDone(direct, nil)
		step("done")
		r.stop()
		c.shutdown(a, b)
		c.verify(direct)
		t.Logf("relay failed %d sends while the broker was down; A: %s; B: %s", r.failures(), c.aStats, c.bStats)
	})
}

// chain is one end-to-end setup of the outbox chain.
type chain struct {
	t              *testing.T
	e              *rmqEnv // topic A and its group, the database, the producer of A messages
	topicB, groupB string
	aStats, bStats *resultStats
	relays         []*relayProc
}

// newChain sets up the chain on mq's broker (its topic is A), or on new topics of the shared
// broker when mq is nil.
func newChain(t *testing.T, mq *testenv.RocketMQ) *chain {
	t.Helper()
	e := newRMQEnvOn(t, mq)
	for _, stmt := range []string{
		`CREATE TABLE order_next (order_id VARCHAR(32) PRIMARY KEY, n INT NOT NULL) ENGINE = InnoDB`,
		`CREATE TABLE order_seq (order_id VARCHAR(32) PRIMARY KEY, last_seq INT NOT NULL) ENGINE = InnoDB`,
		`CREATE TABLE order_effects (id BIGINT AUTO_INCREMENT PRIMARY KEY, order_id VARCHAR(32) NOT NULL,
			seq INT NOT NULL, prev_seq INT NOT NULL) ENGINE = InnoDB`,
	} {
		_, err := e.db.Exec(stmt)
		require.NoError(t, err)
	}
	c := &chain{t: t, e: e, topicB: testenv.UniqueName(t, "b"), groupB: e.mq.Group + "_b",
		aStats: e.stats, bStats: &resultStats{}}
	e.mq.CreateTopic(t, c.topicB, 4)
	e.mq.CreateTopic(t, retryTopic(c.groupB), 1)
	return c
}

// startConsumers starts the consumer of A (forwarding to B) and the orderly consumer of B.
func (c *chain) startConsumers() (a, b *worker) {
	a = c.e.startWorker("consumer-a", workerSpec{Handler: "forward", ForwardTopic: c.topicB}, c.aStats)
	b = c.e.startWorker("consumer-b", workerSpec{Handler: "orderly", Orderly: true, SuspendMillis: 100,
		Topic: c.topicB, Group: c.groupB}, c.bStats)
	return a, b
}

func (c *chain) shutdown(workers ...*worker) {
	for _, w := range workers {
		w.shutdown()
	}
}

// aMessages returns the A messages: chainPerOrder events of each of chainOrders orders.
func (c *chain) aMessages() []*primitive.Message {
	msgs := make([]*primitive.Message, 0, chainTotal)
	for e := range chainPerOrder {
		for o := range chainOrders {
			m := c.e.newMessage(fmt.Sprintf("o%02d-e%03d", o, e))
			m.WithProperty("order", fmt.Sprintf("order-%02d", o))
			msgs = append(msgs, m)
		}
	}
	return msgs
}

// duplicatesOf returns copies of every fifth message with the same UNIQ_KEY.
func (c *chain) duplicatesOf(msgs []*primitive.Message) []*primitive.Message {
	var dups []*primitive.Message
	for i := 0; i < len(msgs); i += len(msgs) / chainResent {
		dups = append(dups, resend(msgs[i]))
	}
	return dups
}

// sendA sends every A message and then the duplicates.
func (c *chain) sendA() {
	msgs := c.aMessages()
	c.sendAParallel(msgs)
	c.sendAParallel(c.duplicatesOf(msgs))
}

// sendAParallel sends msgs from a few goroutines, each message until the broker takes it: a
// broker under load answers a producer's first sends to a new topic with "route info not
// found" now and then, and busy brokers refuse sends for a moment.
func (c *chain) sendAParallel(msgs []*primitive.Message) {
	c.t.Helper()
	const workers = 8
	deadline := time.Now().Add(3 * time.Minute)
	errs := make(chan error, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := w; i < len(msgs); i += workers {
				if err := c.sendUntilTaken(msgs[i], deadline); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(c.t, err)
	}
}

// sendAWithRetries sends msgs one by one, each until the broker takes it (the broker may be down):
// a message that was stored although its send failed arrives twice, with the same UNIQ_KEY.
func (c *chain) sendAWithRetries(msgs []*primitive.Message) {
	c.t.Helper()
	deadline := time.Now().Add(3 * time.Minute)
	for _, m := range msgs {
		require.NoError(c.t, c.sendUntilTaken(m, deadline))
	}
}

// sendUntilTaken sends m until the broker stores it, or fails after deadline.
func (c *chain) sendUntilTaken(m *primitive.Message, deadline time.Time) error {
	for {
		res, err := c.e.prod.SendSync(context.Background(), m)
		if err == nil && res.Status == primitive.SendOK {
			return nil
		}
		if err == nil {
			err = fmt.Errorf("send status %v", res.Status)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the broker did not take A messages for 3 minutes: %w", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// enqueueDirect enqueues n B events from plain business transactions of the test (orders of
// their own), as an HTTP handler would.
func (c *chain) enqueueDirect(n int) {
	c.t.Helper()
	ctx := context.Background()
	for i := range n {
		order := fmt.Sprintf("direct-%d", i%4)
		tx, err := c.e.db.Beginx()
		require.NoError(c.t, err)
		_, err = tx.Exec(`INSERT INTO order_next (order_id, n) VALUES (?, 1) ON DUPLICATE KEY UPDATE n = n + 1`, order)
		require.NoError(c.t, err)
		var seq int
		require.NoError(c.t, tx.Get(&seq, `SELECT n FROM order_next WHERE order_id = ?`, order))
		require.NoError(c.t, outbox.Enqueue(ctx, tx, outbox.Message{Topic: c.topicB, Keys: []string{fmt.Sprintf("b-direct-%d", i)},
			ShardingKey: order, Body: []byte("direct"), Properties: map[string]string{"order": order, "seq": strconv.Itoa(seq)}}))
		require.NoError(c.t, tx.Commit())
	}
}

func (c *chain) startRelay(name string, spec relaySpec) *relayProc {
	spec.DSN, spec.NameServer, spec.Instance = c.e.dsn, c.e.mq.NameServer, name
	if spec.PollMillis == 0 {
		spec.PollMillis = 50
	}
	r := startRelayProc(c.t, name, spec)
	c.relays = append(c.relays, r)
	return r
}

// stillPending returns those of ids whose rows are pending in the outbox table.
func (c *chain) stillPending(ids map[string]int) []string {
	c.t.Helper()
	var pending []string
	require.NoError(c.t, c.e.db.Select(&pending, "SELECT msg_id FROM txconsume_outbox WHERE sent_at IS NULL"))
	var out []string
	for _, id := range pending {
		if ids[id] > 0 {
			out = append(out, id)
		}
	}
	return out
}

func (c *chain) outboxRows() int {
	c.t.Helper()
	var n int
	require.NoError(c.t, c.e.db.Get(&n, "SELECT COUNT(*) FROM txconsume_outbox"))
	return n
}

// waitDone waits until every A message and the direct B events are applied at B and the outbox is
// empty, and until extra holds.
func (c *chain) waitDone(direct int, extra func() bool) {
	c.waitFor("every event through the chain", direct, func() bool {
		return c.bStats.applied.Load() >= int64(chainTotal+direct) && c.outboxRows() == 0 && (extra == nil || extra())
	})
}

func (c *chain) waitFor(what string, direct int, cond func() bool) {
	c.t.Helper()
	if !assertEventually(cond, 3*time.Minute) {
		c.t.Fatalf("waiting for %s: not done after 3 minutes; A: %s; B: %s; outbox rows: %d; %s",
			what, c.aStats, c.bStats, c.outboxRows(), c.describe(direct))
	}
}

func (c *chain) describe(direct int) string {
	var b strings.Builder
	for _, r := range c.relays {
		fmt.Fprintf(&b, "%s sent %d, failed %d; ", r.name, r.sentTotal(), r.failures())
	}
	fmt.Fprintf(&b, "expected B effects %d", chainTotal+direct)
	return b.String()
}

// verify counts the effects in the database.
func (c *chain) verify(direct int) {
	t := c.t
	t.Helper()
	ctx := context.Background()
	require.Equal(t, counts{Ledger: chainTotal, DistinctKeys: chainTotal, Counter: chainTotal, Dedup: 2*chainTotal + direct},
		c.e.counts(), "A applied once each; dedup holds A's and B's claims")
	require.GreaterOrEqual(t, c.aStats.duplicate.Load(), int64(chainResent), "A's duplicates were delivered and dropped")
	var dedupB int
	require.NoError(t, c.e.db.GetContext(ctx, &dedupB, `SELECT COUNT(*) FROM txconsume_dedup WHERE consumer_group = ?`, c.groupB))
	require.Equal(t, chainTotal+direct, dedupB)
	require.Zero(t, c.outboxRows())

	var effects []struct {
		Order string `db:"order_id"`
		Seq   int    `db:"seq"`
		Prev  int    `db:"prev_seq"`
	}
	require.NoError(t, c.e.db.SelectContext(ctx, &effects, `SELECT order_id, seq, prev_seq FROM order_effects ORDER BY id`))
	require.Len(t, effects, chainTotal+direct, "one B effect per A message (and per direct event), none lost")
	last := map[string]int{}
	for _, ef := range effects {
		require.Equal(t, last[ef.Order]+1, ef.Seq, "order %s: B effects out of enqueue order, or twice", ef.Order)
		require.Equal(t, ef.Seq-1, ef.Prev, "order %s: event %d did not see %d applied", ef.Order, ef.Seq, ef.Seq-1)
		last[ef.Order] = ef.Seq
	}
	var next []struct {
		Order string `db:"order_id"`
		N     int    `db:"n"`
	}
	require.NoError(t, c.e.db.SelectContext(ctx, &next, `SELECT order_id, n FROM order_next`))
	for _, o := range next {
		require.Equal(t, o.N, last[o.Order], "order %s: every enqueued event applied", o.Order)
	}
}

// relayProc is an outbox relay process started by a test (see outbox_relay_worker_test.go).
type relayProc struct {
	t      *testing.T
	name   string
	cmd    *exec.Cmd
	stdin  *os.File
	ready  chan struct{}
	exited chan struct{}
	stderr testenv.LockedBuffer

	mu      sync.Mutex
	sends   [][]string
	byID    map[string]int
	total   int
	failed  atomic.Int64
	gotKill bool
	stopped bool
}

func startRelayProc(t *testing.T, name string, spec relaySpec) *relayProc {
	t.Helper()
	r := &relayProc{t: t, name: name, ready: make(chan struct{}), exited: make(chan struct{}), byID: map[string]int{}}
	var out io.Reader
	r.cmd, r.stdin, out = startChild(t, relayWorkerEnv, spec, &r.stderr)
	go r.read(out)
	t.Cleanup(r.stop)
	awaitReady(t, name+" running", r.ready, r.exited, &r.stderr)
	return r
}

func (r *relayProc) read(out io.Reader) {
	defer close(r.exited)
	defer func() { _ = r.cmd.Wait() }()
	sc := bufio.NewScanner(out)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		switch f[0] {
		case "ready":
			close(r.ready)
		case "S":
			r.mu.Lock()
			r.sends = append(r.sends, f[1:])
			for _, id := range f[1:] {
				r.byID[id]++
			}
			r.total += len(f) - 1
			r.mu.Unlock()
		case "F":
			r.failed.Add(1)
		case "K":
			r.mu.Lock()
			r.gotKill = true
			r.mu.Unlock()
		}
	}
}

// stop asks the relay to stop and waits for it (a killed relay has stopped already).
func (r *relayProc) stop() {
	r.mu.Lock()
	if r.stopped {
		r.mu.Unlock()
		return
	}
	r.stopped = true
	r.mu.Unlock()
	_, _ = r.stdin.WriteString("shutdown\n")
	select {
	case <-r.exited:
	case <-time.After(60 * time.Second):
		_ = r.cmd.Process.Kill()
		<-r.exited
		r.t.Errorf("%s did not stop within 60s", r.name)
	}
	checkRaceReports(r.t, r.name, r.stderr.String())
}

func (r *relayProc) waitExit() {
	r.t.Helper()
	select {
	case <-r.exited:
	case <-time.After(3 * time.Minute):
		r.t.Fatalf("%s still running after 3 minutes: %s", r.name, r.stderr.String())
	}
}

func (r *relayProc) killed() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.gotKill && r.cmd.ProcessState != nil && !r.cmd.ProcessState.Success()
}

func (r *relayProc) lastSend() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.sends) == 0 {
		return nil
	}
	return r.sends[len(r.sends)-1]
}

func (r *relayProc) sentCount(id string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.byID[id]
}

func (r *relayProc) sentIDs() map[string]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[string]int, len(r.byID))
	for k, v := range r.byID {
		out[k] = v
	}
	return out
}

func (r *relayProc) sentTotal() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.total
}

func (r *relayProc) failures() int { return int(r.failed.Load()) }

// warnings returns the relay's log lines at WARN and ERROR.
func (r *relayProc) warnings() string {
	var out []string
	for _, l := range strings.Split(r.stderr.String(), "\n") {
		if strings.Contains(l, "level=WARN") || strings.Contains(l, "level=ERROR") {
			out = append(out, r.name+": "+l)
		}
	}
	return strings.Join(out, "\n")
}
