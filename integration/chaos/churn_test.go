package chaos

import (
	"fmt"
	"testing"
	"time"

	"github.com/txconsume/txconsume/internal/testenv"
)

// TestConsumerChurn: three consumer processes of one group, one of them killed (SIGKILL, mid
// delivery) or stopped (SIGTERM, gracefully) at a random moment and started again, over and over,
// as in a deploy or under an orchestrator that kills and reschedules. The group's other consumers
// take over its queues; what it had in flight comes again and is recognised.
func TestConsumerChurn(t *testing.T) {
	parallel(t)
	s := newScenario(t, "consumer churn", scenarioConfig{queues: 6})
	names := []string{"c1", "c2", "c3"}
	workers := map[string]*worker{}
	start := func(name string) {
		spec := s.spec()
		spec.Instance = name
		workers[name] = s.startWorker(name, spec)
	}
	for _, n := range names {
		start(n)
	}
	cycles := form(4, 20)
	st := s.startStream(form(1500, 12000), rate())
	kills, terms := 0, 0
	for c := 1; c <= cycles; c++ {
		time.Sleep(time.Duration(500+s.rng.IntN(2500)) * time.Millisecond)
		name := names[s.rng.IntN(len(names))]
		w := workers[name]
		if s.rng.IntN(2) == 0 {
			w.kill()
			kills++
		} else {
			w.term()
			terms++
		}
		// The others take over its queues within seconds. But the broker may go on listing a
		// consumer that is gone, killed or stopped alike, for up to testenv.DeadConsumerListed
		// (docs/upstream.md, report 6), and the queues it allocates that consumer wait that long:
		// the bound allows for that wait on top of the usual one.
		d := s.awaitRecovery(fmt.Sprintf("cycle %d: %s gone", c, name), time.Now(), 2*time.Minute+testenv.DeadConsumerListed)
		if d > deadConsumerWait {
			s.note("cycle %d: some queues delivered again only after %.0fs, as when the broker keeps "+
				"listing a consumer that is gone", c, d.Seconds())
		}
		time.Sleep(time.Duration(s.rng.IntN(2000)) * time.Millisecond)
		start(name)
	}
	s.note("%d consumers killed, %d stopped gracefully, each started again", kills, terms)
	st.stop()
	s.settle(3 * time.Minute)
	s.finish()
}

// deadConsumerWait is a recovery after a consumer left that only a broker still listing it
// explains: it expires such a consumer 120s after its last heartbeat, and otherwise the others
// take over within seconds.
const deadConsumerWait = 100 * time.Second
