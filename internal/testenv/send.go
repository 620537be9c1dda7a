package testenv

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	rocketmq "github.com/apache/rocketmq-client-go/v2"
	"github.com/apache/rocketmq-client-go/v2/primitive"
	"github.com/stretchr/testify/require"
)

// busyResend is how long SendSync keeps sending again while the broker says it is busy.
const busyResend = time.Minute

// SendSync sends msgs with prod, and sends again while the broker answers that it is busy, for up
// to a minute. A loaded broker turns sends away with flow control (TIMEOUT_CLEAN_QUEUE when a send
// waited too long in its queue, PCBUSY_CLEAN_QUEUE when its page cache is busy) before storing
// them, so sending again adds no copy; a test's set-up must not fail on the machine's load.
func SendSync(ctx context.Context, prod rocketmq.Producer, msgs ...*primitive.Message) (*primitive.SendResult, error) {
	deadline := time.Now().Add(busyResend)
	for {
		res, err := prod.SendSync(ctx, msgs...)
		if err == nil || !BrokerBusy(err) || time.Now().After(deadline) {
			return res, err
		}
		select {
		case <-ctx.Done():
			return res, err
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// BrokerBusy reports whether err is the broker's flow control turning a send away.
func BrokerBusy(err error) bool {
	return err != nil && strings.Contains(err.Error(), "broker busy")
}

// SendAll sends msgs with SendSync from a few goroutines, to keep a test's set-up time down, and
// fails the test on any send error or on a status other than SEND_OK.
func SendAll(t testing.TB, prod rocketmq.Producer, msgs []*primitive.Message) {
	t.Helper()
	const workers = 8
	errs := make([]error, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := w; i < len(msgs); i += workers {
				res, err := SendSync(context.Background(), prod, msgs[i])
				if err == nil && res.Status != primitive.SendOK {
					err = fmt.Errorf("send status %v", res.Status)
				}
				if err != nil {
					errs[w] = err
					return
				}
			}
		})
	}
	wg.Wait()
	for _, err := range errs {
		require.NoError(t, err)
	}
}
