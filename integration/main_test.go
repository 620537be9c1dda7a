package integration

import (
	"os"
	"testing"

	"github.com/txconsume/txconsume/internal/testenv"
)

// TestMain lets the test binary double as a service instance: with TXCONSUME_RMQ_WORKER set it runs
// one RocketMQ consumer (see rmq_worker_test.go), with TXCONSUME_OUTBOX_RELAY one outbox relay (see
// outbox_relay_worker_test.go), instead of the tests.
func TestMain(m *testing.M) {
	if spec := os.Getenv(rmqWorkerEnv); spec != "" {
		os.Exit(runRMQWorker(spec))
	}
	if spec := os.Getenv(relayWorkerEnv); spec != "" {
		os.Exit(runRelayWorker(spec))
	}
	os.Exit(testenv.M(m).Run())
}
