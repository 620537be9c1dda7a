package chaos

import (
	"flag"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	_ "github.com/go-sql-driver/mysql" // registers the "mysql" driver

	"github.com/txconsume/txconsume/internal/testenv"
)

// TestMain lets the test binary double as a consumer or producer process (see worker_test.go and
// producer_test.go), and prints the summary table once every scenario has run.
func TestMain(m *testing.M) {
	if spec := os.Getenv(workerEnv); spec != "" {
		os.Exit(runWorker(spec))
	}
	if spec := os.Getenv(producerEnv); spec != "" {
		os.Exit(runProducer(spec))
	}
	flag.Parse()
	startScenariosAtOnce()
	code := testenv.M(m).Run()
	summary.print()
	os.Exit(code)
}

// runConfig is what the environment asks of this run.
type runConfig struct {
	long bool
	seed uint64
}

var config = sync.OnceValue(func() runConfig {
	c := runConfig{long: os.Getenv("TXCONSUME_CHAOS") == "long"}
	if s := os.Getenv("TXCONSUME_CHAOS_SEED"); s != "" {
		seed, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			panic(fmt.Sprintf("TXCONSUME_CHAOS_SEED=%q: %v", s, err))
		}
		c.seed = seed
	} else {
		c.seed = uint64(time.Now().UnixNano()) % 1_000_000_000
	}
	return c
})

// scenarioRand returns the random source of a scenario: the run's seed and the scenario's name, so
// that one scenario run alone makes the same choices as in the full run.
func scenarioRand(name string) *rand.Rand {
	h := fnv.New64a()
	_, _ = h.Write([]byte(name))
	return rand.New(rand.NewPCG(config().seed, h.Sum64()))
}

// form returns short in the short form (make test) and long in the long form (make chaos).
func form[T any](short, long T) T {
	if config().long {
		return long
	}
	return short
}

// row is one line of the summary table.
type row struct {
	Scenario     string
	Server       string
	Messages     int // distinct messages sent
	Sends        int // successful sends, re-sends included
	DupDelivered int // deliveries the Processor found already consumed
	Failed       int // deliveries that failed and were redelivered
	AppliedTwice int
	Lost         int
	DeadLettered int             // messages that went to the dead-letter topic (and may have been replayed since)
	Recovery     []time.Duration // per fault: until every queue delivered a message sent after it
	Note         string
}

// summaryTable collects the rows of the scenarios that ran.
type summaryTable struct {
	mu   sync.Mutex
	rows []row
}

var summary summaryTable

func (r row) recovery() string {
	if len(r.Recovery) == 0 {
		return "-"
	}
	lo, hi := r.Recovery[0], r.Recovery[0]
	for _, d := range r.Recovery {
		lo, hi = min(lo, d), max(hi, d)
	}
	if len(r.Recovery) == 1 {
		return fmt.Sprintf("%.1fs", hi.Seconds())
	}
	return fmt.Sprintf("%.1f-%.1fs (%d)", lo.Seconds(), hi.Seconds(), len(r.Recovery))
}

func (s *summaryTable) add(r row) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rows = append(s.rows, r)
}

// print writes the table to stdout and, when TXCONSUME_CHAOS_SUMMARY names a file, appends it there.
func (s *summaryTable) print() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.rows) == 0 {
		return
	}
	var b strings.Builder
	c := config()
	form := "short"
	if c.long {
		form = "long"
	}
	fmt.Fprintf(&b, "\nchaos summary (%s form, seed %d; replay: TXCONSUME_CHAOS_SEED=%d)\n", form, c.seed, c.seed)
	head := []string{"scenario", "server", "messages", "sends", "dup delivered", "failed", "applied twice", "lost", "dead-lettered", "recovery"}
	lines := [][]string{head}
	for _, r := range s.rows {
		lines = append(lines, []string{r.Scenario, r.Server, strconv.Itoa(r.Messages), strconv.Itoa(r.Sends),
			strconv.Itoa(r.DupDelivered), strconv.Itoa(r.Failed), strconv.Itoa(r.AppliedTwice), strconv.Itoa(r.Lost),
			strconv.Itoa(r.DeadLettered), r.recovery()})
	}
	widths := make([]int, len(head))
	for _, l := range lines {
		for i, cell := range l {
			widths[i] = max(widths[i], len(cell))
		}
	}
	for n, l := range lines {
		for i, cell := range l {
			if i < 2 {
				fmt.Fprintf(&b, "%-*s  ", widths[i], cell)
			} else {
				fmt.Fprintf(&b, "%*s  ", widths[i], cell)
			}
		}
		b.WriteString("\n")
		if n == 0 {
			for i := range head {
				b.WriteString(strings.Repeat("-", widths[i]) + "  ")
			}
			b.WriteString("\n")
		}
	}
	for _, r := range s.rows {
		if r.Note != "" {
			fmt.Fprintf(&b, "%s (%s): %s\n", r.Scenario, r.Server, r.Note)
		}
	}
	fmt.Print(b.String())
	if path := os.Getenv("TXCONSUME_CHAOS_SUMMARY"); path != "" {
		f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
		if err == nil {
			_, _ = f.WriteString(b.String())
			_ = f.Close()
		}
	}
}

// In the short form the scenarios run beside each other: they mostly wait on servers, and the
// whole suite must stay short. The long form runs them one at a time, so that the recovery times it
// reports are not those of a machine busy with other scenarios.
//
// Go runs at most -parallel tests at a time (GOMAXPROCS by default), in no set order: the longest
// scenario, the brokers' (which waits on JVMs starting), would start last as often as first and
// make the suite as long as the others put together plus itself. So, unless -parallel is given,
// every scenario starts at once, and the suite bounds the load itself: the brokers' scenario runs
// beside at most sideSlots others (see parallel and parallelLongest).

// sideSlots is how many scenarios besides the brokers' run at a time in the short form.
const sideSlots = 2

var slots = make(chan struct{}, sideSlots)

// startScenariosAtOnce raises -parallel, when it was not given, above the number of scenarios.
func startScenariosAtOnce() {
	given := false
	flag.Visit(func(f *flag.Flag) { given = given || f.Name == "test.parallel" })
	if !given {
		_ = flag.Set("test.parallel", "64")
	}
}

// parallel runs a scenario beside the others in the short form, once one of the sideSlots is free.
func parallel(t *testing.T) {
	if config().long {
		return
	}
	t.Parallel()
	slots <- struct{}{}
	t.Cleanup(func() { <-slots })
}

// parallelLongest runs the longest scenario beside the others in the short form, from the start.
func parallelLongest(t *testing.T) {
	if !config().long {
		t.Parallel()
	}
}

// rate is the messages per second a stream sends: below what a consumer under the race detector
// processes on a busy machine, so that a backlog, which would delay every recovery measured, builds
// only during a fault.
func rate() float64 { return form(100.0, 150.0) }
