package chaos

import (
	"strings"
	"testing"
	"time"

	"github.com/apache/rocketmq-client-go/v2/primitive"
	"github.com/stretchr/testify/require"

	"github.com/txconsume/txconsume/internal/testenv"
)

// brokerRecoveryGoal is how soon after a broker answers again consumption must have resumed on
// every queue. The long form holds every restart to it; the short form, which runs under the race
// detector on machines shared with other tests, checks that the Consumer's recovery ran and that
// consumption resumed well before the client's own 30s pull timeout would have let it.
const brokerRecoveryGoal = 5 * time.Second

// TestBrokerFaults runs the broker scenarios one after the other on one private cluster.
func TestBrokerFaults(t *testing.T) {
	parallelLongest(t)
	cluster := testenv.PrivateRocketMQ(t)
	t.Run("restart", func(t *testing.T) { brokerRestart(t, cluster, "broker restart", false) })
	if config().long {
		// The client alone, for comparison (not held to the goal).
		t.Run("restart, client alone", func(t *testing.T) {
			brokerRestart(t, cluster, "broker restart (client alone)", true)
		})
	}
	t.Run("second broker", func(t *testing.T) { secondBroker(t, cluster) })
}

// brokerRestart: the broker is killed (SIGKILL) or stopped (SIGTERM) and started again while a
// stream is consumed. Without the Consumer's recovery, pulls in flight on the closed connection
// wait out the client's 30s timeout; with it, every queue delivers again within seconds of the
// broker answering.
func brokerRestart(t *testing.T, cluster *testenv.Cluster, name string, clientRecovery bool) {
	s := newScenario(t, name, scenarioConfig{nameServer: cluster.NameServer(), brokers: len(cluster.Brokers)})
	spec := s.spec()
	spec.ClientRecovery = clientRecovery
	s.startWorker("c1", spec)
	cycles := form(1, 4)
	perCycle := form(900, 1500)
	st := s.startStream(perCycle*cycles, rate())
	broker := cluster.Brokers[0]
	for c := 1; c <= cycles; c++ {
		st.waitSent(perCycle*(c-1) + perCycle/3)
		kill := c%2 == 1
		if kill {
			broker.Kill(t)
		} else {
			broker.Stop(t)
		}
		time.Sleep(time.Duration(s.rng.IntN(form(1000, 5000))) * time.Millisecond)
		end := s.restart(broker)
		d := s.awaitRecovery(name, end, 2*time.Minute)
		if !clientRecovery {
			if config().long {
				require.LessOrEqual(t, d, brokerRecoveryGoal, "cycle %d (kill=%t)", c, kill)
			} else {
				require.Less(t, d, 20*time.Second, "cycle %d (kill=%t)", c, kill)
			}
		}
	}
	st.stop()
	s.settle(3 * time.Minute)
	if !clientRecovery {
		s.requireLogged("rmq: broker answers; pulls of its queues restarted")
	}
	s.finish()
}

// requireLogged fails the scenario unless a worker logged a line containing text.
func (s *scenario) requireLogged(text string) {
	s.t.Helper()
	s.rec.mu.Lock()
	defer s.rec.mu.Unlock()
	for line := range s.rec.logs {
		if strings.Contains(line, text) {
			return
		}
	}
	s.t.Fatalf("chaos: no worker logged %q; logs: %v", text, s.rec.logs)
}

// secondBroker: a second broker registers with the name server and the topic is spread over both;
// then one of them is stopped while a stream is consumed, and started again later. The queues of
// the broker that stays keep delivering; the messages left on the stopped one are delivered once it
// is back and the consumer has learnt its route again.
//
// The short form starts the consumer after the second broker joined; the long form lets it join
// while the stream is consumed (the client learns new routes every 30s), and stops either broker in
// several cycles.
func secondBroker(t *testing.T, cluster *testenv.Cluster) {
	first := cluster.Brokers[0]
	if !config().long {
		cluster.AddBroker(t)
	}
	s := newScenario(t, "second broker", scenarioConfig{nameServer: cluster.NameServer(), brokers: len(cluster.Brokers)})
	s.startWorker("c1", s.spec())
	cycles := form(1, 3)
	perCycle := form(600, 1500)
	st := s.startStream(perCycle*(cycles+1), rate())
	if config().long {
		st.waitSent(perCycle / 3)
		cluster.AddBroker(t)
		s.createTopic(len(cluster.Brokers)) // on both brokers; the stream sends to every queue from now on
		s.awaitRecovery("second broker joined", time.Now(), 2*time.Minute)
	}
	for c := 1; c <= cycles; c++ {
		st.waitSent(perCycle*c + perCycle/3)
		stopped := first
		if c%2 == 0 {
			stopped = cluster.Brokers[1]
		}
		stopped.Stop(t)
		end := time.Now()
		var rest []*primitive.MessageQueue
		for _, q := range s.topicQueues() {
			if q.BrokerName != stopped.Name {
				rest = append(rest, q)
			}
		}
		s.awaitQueues("one of two brokers stopped", end, 2*time.Minute, rest)
		if config().long {
			st.waitSent(st.sent() + perCycle/3)
		}
		s.restart(stopped)
	}
	st.stop()
	s.settle(3 * time.Minute)
	s.finish()
}
