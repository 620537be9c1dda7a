package testenv_test

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/txconsume/txconsume/internal/testenv"
)

func TestBrokerBusy(t *testing.T) {
	// The broker's answers as the client reports them.
	require.True(t, testenv.BrokerBusy(errors.New("CODE: 2, DESC: [TIMEOUT_CLEAN_QUEUE]broker busy, start flow control for a while, period in queue: 224ms, size of queue: 6")))
	require.True(t, testenv.BrokerBusy(errors.New("CODE: 2, DESC: [PCBUSY_CLEAN_QUEUE]broker busy, start flow control for a while, period in queue: 410ms, size of queue: 0")))
	require.False(t, testenv.BrokerBusy(errors.New("CODE: 17, DESC: topic[orders] not exist")))
	require.False(t, testenv.BrokerBusy(nil))
}
