package integration

import (
	"os"
	"testing"

	"github.com/txconsume/txconsume/internal/testenv"
)

// TestMain lets the test binary double as a consumer service instance: with TXCONSUME_RMQ_WORKER set
// it runs one RocketMQ consumer (see rmq_worker_test.go) instead of the tests.
func TestMain(m *testing.M) {
	if spec := os.Getenv(rmqWorkerEnv); spec != "" {
		os.Exit(runRMQWorker(spec))
	}
	os.Exit(testenv.M(m).Run())
}
