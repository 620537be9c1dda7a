package integration

import (
	"bufio"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/txconsume/txconsume/internal/testenv"
	"github.com/txconsume/txconsume/txconsume"
)

// worker is a consumer process started by a test (see rmq_worker_test.go).
type worker struct {
	t      *testing.T
	name   string
	cmd    *exec.Cmd
	stdin  *os.File
	stats  *resultStats
	ready  chan struct{}
	exited chan struct{}
	stderr testenv.LockedBuffer

	mu           sync.Mutex
	shutdownSent bool
	events       []string
	eventCh      chan string
	idsByKey     map[string]map[string]bool
	dead         []string
}

// startWorker starts a consumer process for spec (name server, group, topic and database default to
// the env's) whose outcomes are counted in stats, and waits until it consumes. The process is shut down
// when the test ends, and its race reports are checked then.
func (e *rmqEnv) startWorker(name string, spec workerSpec, stats *resultStats) *worker {
	t := e.t
	t.Helper()
	if spec.DSN == "" {
		spec.DSN = e.dsn
	}
	if spec.NameServer == "" {
		spec.NameServer = e.mq.NameServer
	}
	if spec.Group == "" {
		spec.Group = e.mq.Group
	}
	if spec.Topic == "" {
		spec.Topic = e.mq.Topic
	}
	w := &worker{t: t, name: name, stats: stats, ready: make(chan struct{}), exited: make(chan struct{}),
		eventCh: make(chan string, 64), idsByKey: make(map[string]map[string]bool)}
	var out io.Reader
	w.cmd, w.stdin, out = startChild(t, rmqWorkerEnv, spec, &w.stderr)
	go w.read(out)
	t.Cleanup(w.stop)
	awaitReady(t, "worker "+name+" consuming", w.ready, w.exited, &w.stderr)
	return w
}

// awaitReady waits until a child process reports ready, failing the test if it exits first or
// takes more than 90s.
func awaitReady(t *testing.T, what string, ready, exited <-chan struct{}, stderr *testenv.LockedBuffer) {
	t.Helper()
	select {
	case <-ready:
	case <-exited:
		t.Fatalf("exited before %s: %s", what, stderr.String())
	case <-time.After(90 * time.Second):
		t.Fatalf("no %s after 90s: %s", what, stderr.String())
	}
}

// startChild starts the test binary again as a child process that runs spec, given as JSON in the
// environment variable env (see TestMain), and returns it with the write end of its stdin and the
// read end of its stdout; its stderr goes to stderr.
func startChild(t *testing.T, env string, spec any, stderr io.Writer) (*exec.Cmd, *os.File, io.Reader) {
	t.Helper()
	b, err := json.Marshal(spec)
	require.NoError(t, err)
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), env+"="+string(b))
	inR, inW, err := os.Pipe()
	require.NoError(t, err)
	cmd.Stdin = inR
	out, err := cmd.StdoutPipe()
	require.NoError(t, err)
	cmd.Stderr = stderr
	require.NoError(t, cmd.Start())
	_ = inR.Close()
	return cmd, inW, out
}

func (w *worker) read(out io.Reader) {
	defer close(w.exited)
	defer func() { _ = w.cmd.Wait() }()
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		switch f[0] {
		case "ready":
			close(w.ready)
		case "R":
			var err error
			res := map[string]txconsume.Result{"applied": txconsume.Applied, "duplicate": txconsume.Duplicate,
				"discarded": txconsume.Discarded}[f[1]]
			if f[1] == "failed" {
				err = errInjected
			}
			w.mu.Lock()
			if f[3] != "-" {
				if w.idsByKey[f[3]] == nil {
					w.idsByKey[f[3]] = make(map[string]bool)
				}
				w.idsByKey[f[3]][f[2]] = true
			}
			if f[4] == "true" {
				w.events = append(w.events, "slow message "+f[1])
			}
			w.mu.Unlock()
			w.stats.record(res, err)
		case "B":
			n, _ := strconv.ParseInt(f[1], 10, 64)
			for cur := w.stats.maxBatch.Load(); n > cur && !w.stats.maxBatch.CompareAndSwap(cur, n); cur = w.stats.maxBatch.Load() {
			}
		case "E":
			ev := strings.Join(f[1:], " ")
			w.mu.Lock()
			w.events = append(w.events, ev)
			w.mu.Unlock()
			w.eventCh <- ev
		case "D":
			w.mu.Lock()
			w.dead = append(w.dead, strings.Join(f[1:], " "))
			w.mu.Unlock()
		}
	}
}

// startReader starts a worker that reads topic in a group of its own and reports each message.
func (e *rmqEnv) startReader(topic string) *worker {
	mq := *e.mq
	mq.Group += "_reader"
	reader := *e
	reader.mq = &mq
	return reader.startWorker("dlq-reader", workerSpec{Handler: "dlq", Topic: topic}, &resultStats{})
}

func (w *worker) send(cmd string) {
	w.t.Helper()
	w.mu.Lock()
	if cmd == "shutdown" {
		if w.shutdownSent {
			w.mu.Unlock()
			return
		}
		w.shutdownSent = true
	}
	w.mu.Unlock()
	_, err := w.stdin.WriteString(cmd + "\n")
	require.NoError(w.t, err)
}

// awaitEvent waits for the worker to report ev.
func (w *worker) awaitEvent(ev string) {
	w.t.Helper()
	deadline := time.After(90 * time.Second)
	for {
		select {
		case got := <-w.eventCh:
			if got == ev {
				return
			}
		case <-deadline:
			w.t.Fatalf("worker %s: no %q after 90s: %s", w.name, ev, w.stderr.String())
		}
	}
}

// shutdown asks the worker to Shutdown and waits for the process to end; it returns the events seen.
func (w *worker) shutdown() []string {
	w.t.Helper()
	w.send("shutdown")
	select {
	case <-w.exited:
	case <-time.After(90 * time.Second):
		w.t.Fatalf("worker %s did not shut down in 90s", w.name)
	}
	w.checkRaces()
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.events...)
}

func (w *worker) stop() {
	select {
	case <-w.exited:
		return
	default:
	}
	w.mu.Lock()
	sent := w.shutdownSent
	w.shutdownSent = true
	w.mu.Unlock()
	if !sent {
		_, _ = w.stdin.WriteString("shutdown\n")
	}
	select {
	case <-w.exited:
	case <-time.After(60 * time.Second):
		_ = w.cmd.Process.Kill()
		<-w.exited
	}
	w.checkRaces()
}

// checkRaces fails the test on a race report of the worker in which either access happened in this
// module's code; reports confined to the RocketMQ client are only counted.
func (w *worker) checkRaces() {
	w.t.Helper()
	checkRaceReports(w.t, "worker "+w.name, w.stderr.String())
}

// checkRaceReports fails the test on a race report in stderr (of the child process named name) in
// which either access happened in this module's code; reports confined to the RocketMQ client are
// only counted.
func checkRaceReports(t *testing.T, name, stderr string) {
	t.Helper()
	module, clientOnly := testenv.RaceReports(stderr)
	for _, report := range module {
		t.Errorf("%s: data race in txconsume code:\n%s", name, report)
	}
	if clientOnly > 0 {
		t.Logf("%s: %d data race report(s) inside the RocketMQ client, tolerated", name, clientOnly)
	}
}

func (w *worker) deadLetters() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.dead...)
}

func (w *worker) ids() map[string]map[string]bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.idsByKey
}
