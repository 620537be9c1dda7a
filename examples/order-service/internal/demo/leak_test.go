package demo_test

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/txconsume/txconsume/internal/testenv"
)

// TestMain checks that a run leaves none of its own goroutines behind (publishers, log readers,
// the killer). The RocketMQ client's are ignored: it starts a cache janitor at init, its
// background loops sleep 10s before they first look at the shutdown signal, and the readers of
// its connections only stop when the peer closes them.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(testenv.M(m), testenv.IgnoreRocketMQClient()...)
}
