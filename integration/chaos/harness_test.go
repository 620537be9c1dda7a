package chaos

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/apache/rocketmq-client-go/v2/primitive"
	"github.com/jmoiron/sqlx"
	"github.com/stretchr/testify/require"

	"github.com/txconsume/txconsume/internal/testenv"
	"github.com/txconsume/txconsume/migrations"
	"github.com/txconsume/txconsume/txconsume/rmq"
)

// scenarioConfig says where a scenario runs; what is left empty is a fresh database on the shared
// server, or the shared RocketMQ.
type scenarioConfig struct {
	mode       string // modeTx (default), modeIdemMySQL, modeIdemRedis
	ledgerDSN  string // the database where effects are counted (modeTx: with the dedup table)
	storeDSN   string // modeIdemMySQL
	redisAddr  string // modeIdemRedis
	nameServer string // a private cluster's name server
	brokers    int    // brokers of that cluster when the scenario starts; default 1
	queues     int    // queues of the topic on each broker; default 4
}

// scenario is one fault-injection run: a database, a topic and group, a producer that streams
// messages, consumer processes, and what they reported.
type scenario struct {
	t      *testing.T
	name   string
	rng    *rand.Rand
	cfg    scenarioConfig
	server string

	ledger       *sqlx.DB
	redisPrefix  string
	topic, group string
	admin        *rmq.Admin
	prod         *producerProc
	queues       []*primitive.MessageQueue // guarded by mu

	rec        *recorder
	mu         sync.Mutex
	workers    []*worker
	recoveries []time.Duration
	notes      []string
}

func newScenario(t *testing.T, name string, cfg scenarioConfig) *scenario {
	t.Helper()
	if cfg.mode == "" {
		cfg.mode = modeTx
	}
	if cfg.queues == 0 {
		cfg.queues = 4
	}
	if cfg.brokers == 0 {
		cfg.brokers = 1
	}
	s := &scenario{t: t, name: name, rng: scenarioRand(name), cfg: cfg, rec: newRecorder()}
	s.server = testenv.MySQLServer(t).Name
	t.Logf("chaos: scenario %s, seed %d (replay with TXCONSUME_CHAOS_SEED=%d)", name, config().seed, config().seed)
	ctx := context.Background()

	if s.cfg.ledgerDSN == "" {
		s.cfg.ledgerDSN = testenv.MySQLDSN(t)
	}
	s.ledger = testenv.OpenMySQL(t, s.cfg.ledgerDSN)
	if cfg.mode == modeTx {
		require.NoError(t, migrations.Up(ctx, s.ledger.DB))
	}
	for _, stmt := range []string{
		// No unique key on purpose: an effect applied twice is a second row.
		`CREATE TABLE ledger (id BIGINT AUTO_INCREMENT PRIMARY KEY, msg_key VARCHAR(128) NOT NULL,
			body VARCHAR(255) NOT NULL, KEY ledger_msg_key (msg_key)) ENGINE = InnoDB`,
		`CREATE TABLE counter (id INT PRIMARY KEY, n BIGINT NOT NULL) ENGINE = InnoDB`,
		`INSERT INTO counter (id, n) VALUES (1, 0)`,
	} {
		_, err := s.ledger.ExecContext(ctx, stmt)
		require.NoError(t, err)
	}
	switch cfg.mode {
	case modeIdemMySQL:
		store := testenv.OpenMySQL(t, cfg.storeDSN)
		require.NoError(t, migrations.Up(ctx, store.DB))
	case modeIdemRedis:
		s.redisPrefix = testenv.UniqueName(t, "chaos") + ":"
	}

	if s.cfg.nameServer == "" {
		s.cfg.nameServer, _ = testenv.RocketMQServer(t)
	}
	s.topic, s.group = testenv.UniqueName(t, "t"), testenv.UniqueName(t, "g")
	adm, err := rmq.NewAdmin([]string{s.cfg.nameServer})
	require.NoError(t, err)
	s.admin = adm
	s.prod = startProducer(t, producerSpec{NameServer: s.cfg.nameServer, Group: s.group + "_p"})
	s.createTopic(cfg.brokers)
	t.Cleanup(s.stopWorkers)
	return s
}

// createTopic creates the topic (and the group's retry topic) on every broker of the cluster, of
// which there are brokers, and learns its queues once the name server routes it to all of them.
func (s *scenario) createTopic(brokers int) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	require.NoError(s.t, s.admin.CreateTopic(ctx, rmq.TopicConfig{Topic: s.topic, Queues: s.cfg.queues, RetryGroup: s.group}))
	qs := s.routeQueues(ctx, brokers*s.cfg.queues)
	s.mu.Lock()
	s.queues = qs
	s.mu.Unlock()
}

// topicQueues returns the topic's queues as last learnt.
func (s *scenario) topicQueues() []*primitive.MessageQueue {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.queues
}

// routeQueues returns the topic's write queues once the name server routes it to want queues:
// each broker registers a topic created on it by itself, one after the other.
func (s *scenario) routeQueues(ctx context.Context, want int) []*primitive.MessageQueue {
	s.t.Helper()
	for {
		qs, err := s.prod.queues(s.topic)
		if err == nil && len(qs) >= want {
			sort.Slice(qs, func(i, j int) bool { return queueLabel(qs[i]) < queueLabel(qs[j]) })
			return qs
		}
		select {
		case <-ctx.Done():
			s.t.Fatalf("chaos: the route of %s has %d queues, not %d: %v", s.topic, len(qs), want, err)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// queueLabel names a queue in the stream's property and in the recorder.
func queueLabel(q *primitive.MessageQueue) string {
	return fmt.Sprintf("%s/%d", q.BrokerName, q.QueueId)
}

// labels returns the labels of queues.
func (s *scenario) labels(queues ...*primitive.MessageQueue) []string {
	out := make([]string, len(queues))
	for i, q := range queues {
		out[i] = queueLabel(q)
	}
	return out
}

// spec returns the worker spec of this scenario; the caller may change it.
func (s *scenario) spec() workerSpec {
	spec := workerSpec{
		Mode: s.cfg.mode, DSN: s.cfg.ledgerDSN, StoreDSN: s.cfg.storeDSN, RedisAddr: s.cfg.redisAddr,
		RedisPrefix: s.redisPrefix, NameServer: s.cfg.nameServer, Topic: s.topic, Group: s.group,
		Goroutines: 8, RetryDelayLevel: 1,
	}
	return spec
}

// note records an observation for the summary.
func (s *scenario) note(format string, args ...any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.notes = append(s.notes, fmt.Sprintf(format, args...))
	s.t.Logf("chaos: "+format, args...)
}

// ---------------------------------------------------------------------------- the recorder

// recorder keeps what the producer sent and what the workers reported.
type recorder struct {
	mu        sync.Mutex
	attempted map[string]bool      // every key sent, whether or not a send of it succeeded
	sent      map[string]time.Time // key -> its first successful send
	sends     int
	// A message the stream sends again goes to another queue: recovery counts a queue as
	// delivering again only when a copy sent to that queue came from it, not when another copy of
	// the same message came from another queue while this one waits.
	sentTo    map[sentCopy]time.Time // a copy -> its first successful send
	delivered map[sentCopy]time.Time // a copy -> its first delivery that committed (applied or duplicate), as the parent received it
	outcomes  map[string]int
	dead      map[string]bool
	logs      map[string]int // "LEVEL message" -> count
	lastLogs  []string       // the workers' last log lines, whole, for a failure's message
	changed   chan struct{}  // closed and replaced on every report
}

// keptLogLines is how many of the workers' last log lines a recorder keeps.
const keptLogLines = 12

// sentCopy is a message (its key) as sent to one queue (its label).
type sentCopy struct{ key, queue string }

func newRecorder() *recorder {
	return &recorder{attempted: map[string]bool{}, sent: map[string]time.Time{}, sentTo: map[sentCopy]time.Time{},
		delivered: map[sentCopy]time.Time{}, outcomes: map[string]int{}, dead: map[string]bool{}, logs: map[string]int{},
		changed: make(chan struct{})}
}

func (r *recorder) notify() {
	close(r.changed)
	r.changed = make(chan struct{})
}

// attempt records a key about to be sent: a send that fails may still have stored the message (the
// broker died before it answered), which is then delivered, though never confirmed sent.
func (r *recorder) attempt(key string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.attempted[key] = true
}

func (r *recorder) sentOK(key, queue string, at time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.sends++
	if _, ok := r.sent[key]; !ok {
		r.sent[key] = at
	}
	if _, ok := r.sentTo[sentCopy{key, queue}]; !ok {
		r.sentTo[sentCopy{key, queue}] = at
	}
}

// result records a delivery's outcome; queue is the label of the queue its copy was sent to.
func (r *recorder) result(outcome, key, queue string, at time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.outcomes[outcome]++
	c := sentCopy{key, queue}
	if _, ok := r.delivered[c]; !ok && (outcome == "applied" || outcome == "duplicate") {
		r.delivered[c] = at
	}
	r.notify()
}

func (r *recorder) deadLetter(key string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.dead[key] = true
	r.notify()
}

func (r *recorder) log(line string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	// Counted by message, without the attributes.
	msg := line
	if i := strings.Index(line, " "); i > 0 {
		if j := strings.Index(line[i+1:], " "); j > 0 {
			rest := line[i+1+j+1:]
			if k := strings.Index(rest, "="); k > 0 {
				if sp := strings.LastIndex(rest[:k], " "); sp > 0 {
					rest = rest[:sp]
				}
			}
			msg = line[:i+1+j] + " " + rest
		}
	}
	r.logs[msg]++
	r.lastLogs = append(r.lastLogs, line)
	if len(r.lastLogs) > keptLogLines {
		r.lastLogs = r.lastLogs[len(r.lastLogs)-keptLogLines:]
	}
}

// recovery returns, for a fault that ended at end, how long after it every queue of queues had
// delivered, and committed, a message sent to it after end, and the queues that have not yet
// (while there are any, the duration means nothing).
func (r *recorder) recovery(end time.Time, queues []string) (time.Duration, []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	first := map[string]time.Time{}
	for c, at := range r.delivered {
		if sent, ok := r.sentTo[c]; !ok || !sent.After(end) {
			continue
		}
		if f, seen := first[c.queue]; !seen || at.Before(f) {
			first[c.queue] = at
		}
	}
	var worst time.Duration
	var waiting []string
	for _, q := range queues {
		at, ok := first[q]
		if !ok {
			waiting = append(waiting, q)
			continue
		}
		worst = max(worst, at.Sub(end))
	}
	return worst, waiting
}

// firstSentAfter returns when the first message sent after end was accepted.
func (r *recorder) firstSentAfter(end time.Time) time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	var first time.Time
	for _, sent := range r.sent {
		if sent.After(end) && (first.IsZero() || sent.Before(first)) {
			first = sent
		}
	}
	return first
}

func (r *recorder) wait() <-chan struct{} {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.changed
}

// ---------------------------------------------------------------------------- the stream

// stream sends messages at a steady rate, each to the next queue in turn (skipping the queues of a
// broker that just refused one), and sends a share of them again with the same UNIQ_KEY a little
// later, as a producer retrying after a lost acknowledgement does. A send that fails is tried
// again, with the same key, until it succeeds.
type stream struct {
	s       *scenario
	target  int
	stopped chan struct{} // closed by stop
	giveUp  chan struct{} // closed a minute after stop: a send still failing then gives up
	done    chan struct{}

	mu       sync.Mutex
	n        int
	sendErrs int
	lastErr  error
}

// outgoing is a message the stream sends. Its UNIQ_KEY is set before its first send and kept by
// every send of it that follows, as a producer's own retry keeps it.
type outgoing struct {
	body  []byte
	props map[string]string
	again bool // a re-send of a message sent already
}

func (m outgoing) key() string { return m.props[primitive.PropertyUniqueClientMessageIdKeyIndex] }

// startStream sends at least target messages at rate per second, and goes on until stop.
func (s *scenario) startStream(target int, rate float64) *stream {
	st := &stream{s: s, target: target, stopped: make(chan struct{}), giveUp: make(chan struct{}), done: make(chan struct{})}
	resends := make(chan outgoing, 1024)
	rng := rand.New(rand.NewPCG(s.rng.Uint64(), s.rng.Uint64()))
	go func() {
		defer close(st.done)
		interval := time.Duration(float64(time.Second) / rate)
		next := time.Now()
		down := map[string]time.Time{}
		qi := 0
		for i := 1; ; i++ {
			select {
			case <-st.stopped:
				if i > target {
					return
				}
			default:
			}
			if wait := time.Until(next); wait > 0 {
				time.Sleep(wait)
			}
			next = next.Add(interval)
			if behind := time.Since(next); behind > time.Second {
				next = time.Now() // no burst after a stall
			}
			var m outgoing
			select {
			case m = <-resends:
				i-- // a re-send does not count as a new message
			default:
				m = outgoing{body: []byte(fmt.Sprintf("%s-%06d", s.name, i)),
					props: map[string]string{primitive.PropertyUniqueClientMessageIdKeyIndex: primitive.CreateUniqID()}}
			}
			s.rec.attempt(m.key())
			for attempt := 0; ; attempt++ {
				queues := s.topicQueues()
				q := queues[qi%len(queues)]
				qi++
				if until, ok := down[q.BrokerName]; ok && time.Now().Before(until) && attempt < 3*len(queues) {
					continue
				}
				m.props[queueProperty] = queueLabel(q)
				key, err := s.prod.send(s.topic, m.body, m.props, q)
				if err == nil && key != m.key() {
					err = fmt.Errorf("the producer sent %s with UNIQ_KEY %s", m.key(), key)
				}
				if err == nil {
					s.rec.sentOK(key, queueLabel(q), time.Now())
					break
				}
				st.mu.Lock()
				st.sendErrs++
				st.lastErr = err
				st.mu.Unlock()
				if errors.Is(err, errProducerGone) {
					return
				}
				down[q.BrokerName] = time.Now().Add(time.Second)
				select {
				case <-time.After(100 * time.Millisecond):
				case <-st.giveUp:
					return
				}
			}
			if !m.again {
				st.mu.Lock()
				st.n++
				st.mu.Unlock()
				if rng.Float64() < 0.1 {
					again := outgoing{body: m.body, props: maps(m.props), again: true}
					delay := time.Duration(rng.IntN(2000)) * time.Millisecond
					time.AfterFunc(delay, func() {
						select {
						case resends <- again:
						default:
						}
					})
				}
			}
		}
	}()
	return st
}

// sent returns how many new messages have been sent.
func (st *stream) sent() int {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.n
}

// waitSent waits until n new messages have been sent.
func (st *stream) waitSent(n int) {
	st.s.t.Helper()
	deadline := time.Now().Add(5 * time.Minute)
	for st.sent() < n {
		if time.Now().After(deadline) {
			st.mu.Lock()
			err := st.lastErr
			st.mu.Unlock()
			st.s.t.Fatalf("chaos: stream sent %d of %d messages in 5m (last send error: %v)", st.sent(), n, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stop ends the stream once its target is sent.
func (st *stream) stop() {
	st.s.t.Helper()
	close(st.stopped)
	giveUp := time.AfterFunc(time.Minute, func() { close(st.giveUp) })
	defer giveUp.Stop()
	select {
	case <-st.done:
	case <-time.After(5 * time.Minute):
		st.s.t.Fatalf("chaos: the stream did not end 5m after stop (sent %d of %d)", st.sent(), st.target)
	}
}

// ---------------------------------------------------------------------------- recovery

// restart starts a stopped server again and returns when it first accepted a connection: the
// moment the fault ended, from which recovery is measured (Start itself returns later, once the
// server is fully ready: a broker, for one, registers with its name server after it serves).
func (s *scenario) restart(server *testenv.Instance) time.Time {
	s.t.Helper()
	answered := make(chan time.Time, 1)
	done := make(chan struct{})
	go func() {
		for {
			select {
			case <-done:
				return
			default:
			}
			if c, err := net.DialTimeout("tcp", server.Addr(), 200*time.Millisecond); err == nil {
				_ = c.Close()
				answered <- time.Now()
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	server.Start(s.t)
	close(done)
	select {
	case at := <-answered:
		return at
	default:
		return time.Now()
	}
}

// restartCycles streams messages, and in each of cycles, a third of the way through, kills the
// server (odd cycles) or stops it (even cycles), leaves it down for a random while, starts it
// again and waits until consumption has recovered. Then it lets the stream end, waits until every
// message is applied or dead-lettered, and checks the effects (finish).
func (s *scenario) restartCycles(server *testenv.Instance, cycles int) {
	s.t.Helper()
	perCycle := form(900, 1200)
	st := s.startStream(perCycle*cycles, rate())
	for c := 1; c <= cycles; c++ {
		st.waitSent(perCycle*(c-1) + perCycle/3)
		if c%2 == 1 {
			server.Kill(s.t)
		} else {
			server.Stop(s.t)
		}
		time.Sleep(time.Duration(1000+s.rng.IntN(form(1000, 9000))) * time.Millisecond)
		s.awaitRecovery(s.name, s.restart(server), 2*time.Minute)
	}
	st.stop()
	s.settle(3 * time.Minute)
	s.finish()
}

// awaitRecovery waits until every queue of the topic has applied a message sent after end, records
// how long that took, and returns it. A consumer that never recovers fails the scenario after
// bound: nothing may hang forever.
func (s *scenario) awaitRecovery(what string, end time.Time, bound time.Duration) time.Duration {
	s.t.Helper()
	return s.awaitQueues(what, end, bound, s.topicQueues())
}

// awaitQueues is awaitRecovery for some of the topic's queues.
func (s *scenario) awaitQueues(what string, end time.Time, bound time.Duration, queues []*primitive.MessageQueue) time.Duration {
	s.t.Helper()
	if len(queues) == 0 {
		s.t.Fatalf("chaos: %s: no queue to wait for", what)
	}
	labels := s.labels(queues...)
	deadline := time.After(bound)
	for {
		ch := s.rec.wait()
		d, waiting := s.rec.recovery(end, labels)
		if len(waiting) == 0 {
			s.mu.Lock()
			s.recoveries = append(s.recoveries, d)
			s.mu.Unlock()
			// The first send accepted after the fault tells how much of the time the servers took to
			// take messages again (a broker serves requests seconds after it accepts connections).
			s.t.Logf("chaos: %s: every queue delivered again %.2fs after the fault ended (the first message sent after it was accepted after %.2fs)",
				what, d.Seconds(), s.rec.firstSentAfter(end).Sub(end).Seconds())
			return d
		}
		select {
		case <-ch:
		case <-time.After(500 * time.Millisecond):
		case <-deadline:
			// The queues still waiting tell a consumer that stopped (all of them) from queues
			// allocated to a consumer that is not there (a share of them).
			s.t.Fatalf("chaos: %s: the consumer did not recover within %v after the fault ended: %d of %d queues "+
				"delivered no message sent after it (%v; results: %v); what the workers logged: %v; their last lines:\n%s",
				what, bound, len(waiting), len(labels), waiting, s.outcomes(), s.logCounts(), strings.Join(s.lastLogLines(), "\n"))
		}
	}
}

func (s *scenario) outcomes() map[string]int {
	s.rec.mu.Lock()
	defer s.rec.mu.Unlock()
	return maps(s.rec.outcomes)
}

func (s *scenario) logCounts() map[string]int {
	s.rec.mu.Lock()
	defer s.rec.mu.Unlock()
	return maps(s.rec.logs)
}

func (s *scenario) lastLogLines() []string {
	s.rec.mu.Lock()
	defer s.rec.mu.Unlock()
	return slices.Clone(s.rec.lastLogs)
}

func maps[K comparable, V any](m map[K]V) map[K]V {
	c := make(map[K]V, len(m))
	for k, v := range m {
		c[k] = v
	}
	return c
}

// ---------------------------------------------------------------------------- workers

// worker is a consumer process (see worker_test.go).
type worker struct {
	s      *scenario
	name   string
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	stderr testenv.LockedBuffer
	ready  chan struct{}
	exited chan struct{}
}

// startWorker starts a consumer process and waits until it consumes.
func (s *scenario) startWorker(name string, spec workerSpec) *worker {
	s.t.Helper()
	b, err := json.Marshal(spec)
	require.NoError(s.t, err)
	w := &worker{s: s, name: name, ready: make(chan struct{}), exited: make(chan struct{})}
	w.cmd = exec.Command(os.Args[0], "-test.run=^$")
	w.cmd.Env = append(os.Environ(), workerEnv+"="+string(b))
	w.stdin, err = w.cmd.StdinPipe()
	require.NoError(s.t, err)
	out, err := w.cmd.StdoutPipe()
	require.NoError(s.t, err)
	w.cmd.Stderr = &w.stderr
	require.NoError(s.t, w.cmd.Start())
	go w.read(out)
	s.mu.Lock()
	s.workers = append(s.workers, w)
	s.mu.Unlock()
	select {
	case <-w.ready:
	case <-w.exited:
		s.t.Fatalf("chaos: worker %s exited before consuming: %s", name, w.stderr.Tail(4000))
	case <-time.After(3 * time.Minute):
		s.t.Fatalf("chaos: worker %s not consuming after 3m: %s", name, w.stderr.Tail(4000))
	}
	return w
}

func (w *worker) read(out io.Reader) {
	defer close(w.exited)
	defer func() { _ = w.cmd.Wait() }()
	sc := bufio.NewScanner(out)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		switch f[0] {
		case "ready":
			close(w.ready)
		case "R":
			if len(f) >= 4 {
				w.s.rec.result(f[1], f[2], f[3], time.Now())
			}
		case "D":
			if len(f) >= 2 {
				w.s.rec.deadLetter(f[1])
			}
		case "L":
			w.s.rec.log(strings.TrimPrefix(line, "L "))
		}
	}
}

func (w *worker) running() bool {
	select {
	case <-w.exited:
		return false
	default:
		return true
	}
}

// kill sends SIGKILL: the process dies mid-delivery, as in a crash or an OOM kill.
func (w *worker) kill() { w.signal(syscall.SIGKILL, 30*time.Second) }

// term sends SIGTERM: the worker shuts down gracefully, as on a deploy.
func (w *worker) term() { w.signal(syscall.SIGTERM, 2*time.Minute) }

func (w *worker) signal(sig syscall.Signal, bound time.Duration) {
	w.s.t.Helper()
	if !w.running() {
		return
	}
	_ = w.cmd.Process.Signal(sig)
	select {
	case <-w.exited:
	case <-time.After(bound):
		_ = w.cmd.Process.Kill()
		<-w.exited
		w.s.t.Errorf("chaos: worker %s did not exit within %v of %v", w.name, bound, sig)
	}
	w.checkRaces()
}

// checkRaces fails the scenario on a race report in this module's code.
func (w *worker) checkRaces() {
	module, others := testenv.RaceReports(w.stderr.String())
	for _, report := range module {
		w.s.t.Errorf("chaos: worker %s: data race in txconsume code:\n%s", w.name, report)
	}
	if others > 0 {
		w.s.t.Logf("chaos: worker %s: %d data race report(s) inside the RocketMQ client, tolerated", w.name, others)
	}
}

// stopWorkers shuts every running worker down gracefully.
func (s *scenario) stopWorkers() {
	s.mu.Lock()
	workers := slices.Clone(s.workers)
	s.mu.Unlock()
	var wg sync.WaitGroup
	for _, w := range workers {
		if !w.running() {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _ = io.WriteString(w.stdin, "shutdown\n")
			select {
			case <-w.exited:
			case <-time.After(90 * time.Second):
				_ = w.cmd.Process.Kill()
				<-w.exited
				s.t.Errorf("chaos: worker %s did not shut down within 90s", w.name)
			}
			w.checkRaces()
		}()
	}
	wg.Wait()
}

// deadLettered returns how many messages the consumers reported given up.
func (s *scenario) deadLettered() int {
	s.rec.mu.Lock()
	defer s.rec.mu.Unlock()
	return len(s.rec.dead)
}

// forgetDeadLetters clears the consumers' dead-letter reports, after the dead letters were
// replayed: from then on settle waits for them to be applied.
func (s *scenario) forgetDeadLetters() {
	s.rec.mu.Lock()
	defer s.rec.mu.Unlock()
	s.rec.dead = map[string]bool{}
}

// ---------------------------------------------------------------------------- the verdict

// effects are what the database holds after a scenario.
type effects struct {
	rowsByKey map[string]int
	counter   int
	dedup     int
}

func (s *scenario) effects(ctx context.Context) (effects, error) {
	e := effects{rowsByKey: map[string]int{}}
	rows, err := s.ledger.QueryContext(ctx, `SELECT msg_key, COUNT(*) FROM ledger GROUP BY msg_key`)
	if err != nil {
		return e, err
	}
	defer rows.Close()
	for rows.Next() {
		var key string
		var n int
		if err := rows.Scan(&key, &n); err != nil {
			return e, err
		}
		e.rowsByKey[key] = n
	}
	if err := rows.Err(); err != nil {
		return e, err
	}
	if s.cfg.mode == modeTx {
		if err := s.ledger.GetContext(ctx, &e.counter, `SELECT n FROM counter WHERE id = 1`); err != nil {
			return e, err
		}
		if err := s.ledger.GetContext(ctx, &e.dedup, `SELECT COUNT(*) FROM txconsume_dedup`); err != nil {
			return e, err
		}
	}
	return e, nil
}

// settle waits until every message sent is applied or dead-lettered, as the database and the
// dead-letter hook say.
func (s *scenario) settle(bound time.Duration) {
	s.t.Helper()
	deadline := time.Now().Add(bound)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		e, err := s.effects(ctx)
		cancel()
		var missing []string
		if err == nil {
			s.rec.mu.Lock()
			for key := range s.rec.sent {
				if e.rowsByKey[key] == 0 && !s.rec.dead[key] {
					missing = append(missing, key)
				}
			}
			s.rec.mu.Unlock()
			if len(missing) == 0 {
				return
			}
		}
		if time.Now().After(deadline) {
			sort.Strings(missing)
			s.t.Fatalf("chaos: %d message(s) neither applied nor dead-lettered %v after the stream ended "+
				"(last read error: %v; results: %v; first: %v)", len(missing), bound, err, s.outcomes(), missing[:min(5, len(missing))])
		}
		time.Sleep(time.Second)
	}
}

// finish stops the workers, counts the effects, checks that nothing was applied twice or lost,
// and adds the scenario's row to the summary.
func (s *scenario) finish() row {
	s.t.Helper()
	s.stopWorkers()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	e, err := s.effects(ctx)
	require.NoError(s.t, err)
	dlq := map[string]bool{}
	letters, err := s.admin.DeadLetters(ctx, s.group, 100000)
	if err != nil && !errors.Is(err, rmq.ErrTopicNotFound) {
		require.NoError(s.t, err)
	}
	for _, m := range letters {
		dlq[m.GetProperty(primitive.PropertyUniqueClientMessageIdKeyIndex)] = true
	}

	s.rec.mu.Lock()
	r := row{Scenario: s.name, Server: s.server, Messages: len(s.rec.sent), Sends: s.rec.sends,
		DupDelivered: s.rec.outcomes["duplicate"], Failed: s.rec.outcomes["failed"]}
	var lost, twice, unexpected []string
	for key := range s.rec.sent {
		if dlq[key] {
			r.DeadLettered++ // given up at some point, whether or not replayed since
		}
		switch n := e.rowsByKey[key]; {
		case n > 1:
			twice = append(twice, key)
		case n == 0 && !dlq[key]:
			lost = append(lost, key)
		}
	}
	for key, n := range e.rowsByKey {
		if _, ok := s.rec.sent[key]; ok {
			continue
		}
		switch {
		case !s.rec.attempted[key]:
			unexpected = append(unexpected, key)
		case n > 1:
			twice = append(twice, key) // its sends all failed, yet it was stored, and applied twice
		}
	}
	logs := maps(s.rec.logs)
	s.rec.mu.Unlock()
	r.AppliedTwice, r.Lost = len(twice), len(lost)
	s.mu.Lock()
	r.Recovery = slices.Clone(s.recoveries)
	r.Note = strings.Join(s.notes, "; ")
	s.mu.Unlock()
	summary.add(r)

	// What a user sees: the log lines the workers wrote, by message.
	keys := make([]string, 0, len(logs))
	for k := range logs {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		s.t.Logf("chaos: log x%d: %s", logs[k], k)
	}
	s.t.Logf("chaos: %s: %+v", s.name, r)

	require.Empty(s.t, twice, "messages applied more than once")
	require.Empty(s.t, lost, "messages neither applied nor dead-lettered")
	require.Empty(s.t, unexpected, "effects of messages never sent")
	if s.cfg.mode == modeTx {
		rows := 0
		for _, n := range e.rowsByKey {
			rows += n
		}
		require.Equal(s.t, rows, e.counter, "every ledger row comes with its counter increment")
		require.Equal(s.t, len(e.rowsByKey), e.dedup, "every applied message has its deduplication record, and no other does")
	}
	return r
}
