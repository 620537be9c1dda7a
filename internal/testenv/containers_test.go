package testenv

import (
	"context"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/stretchr/testify/require"
	"github.com/testcontainers/testcontainers-go"
	"github.com/testcontainers/testcontainers-go/wait"
)

// readyTarget is a running container whose log holds one line. It records the deadline of the
// context that the wait strategy reads the log with: how long the wait would have lasted.
type readyTarget struct {
	wait.StrategyTarget // the methods a log wait does not call
	line                string
	deadline            time.Time
}

func (r *readyTarget) State(context.Context) (*container.State, error) {
	return &container.State{Status: container.StateRunning, Running: true}, nil
}

func (r *readyTarget) Logs(ctx context.Context) (io.ReadCloser, error) {
	r.deadline, _ = ctx.Deadline()
	return io.NopCloser(strings.NewReader(r.line + "\n")), nil
}

// TestReadyLogWaitsForTheStartTimeout checks that a container gets containerStartTimeout to print
// its ready line: testcontainers.WithWaitStrategy cut every wait at 60 seconds, and under load a
// namesrv took longer.
func TestReadyLogWaitsForTheStartTimeout(t *testing.T) {
	var req testcontainers.GenericContainerRequest
	require.NoError(t, readyLog("The Name Server boot success")(&req))
	target := &readyTarget{line: "The Name Server boot success"}
	start := time.Now()
	require.NoError(t, req.WaitingFor.WaitUntilReady(context.Background(), target))
	require.False(t, target.deadline.IsZero(), "the log was read without a deadline")
	require.GreaterOrEqual(t, target.deadline.Sub(start), containerStartTimeout-time.Second)
}
