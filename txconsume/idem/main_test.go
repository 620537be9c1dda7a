package idem_test

import (
	"net"
	"testing"

	"go.uber.org/goleak"

	"github.com/txconsume/txconsume/internal/testenv"
)

func TestMain(m *testing.M) {
	// The RocketMQ client (TestRocketMQ) leaves goroutines behind after Shutdown.
	goleak.VerifyTestMain(testenv.M(m), testenv.IgnoreRocketMQClient()...)
}

// closedAddr returns a loopback address on which nothing listens: a store pointed at it is down.
func closedAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	addr := l.Addr().String()
	if err := l.Close(); err != nil {
		t.Fatalf("close listener: %v", err)
	}
	return addr
}
