package idemtest

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/txconsume/txconsume/txconsume"
	"github.com/txconsume/txconsume/txconsume/idem"
)

// runObservability checks what an operator sees: the processor's Check, the discard log line
// and the hooks.
func runObservability(t *testing.T, setup func(t *testing.T) Backend) {
	ctx := context.Background()

	t.Run("CheckReportsWhetherTheStoreAnswers", func(t *testing.T) {
		r := newRig(t, setup)
		require.NoError(t, r.processor(r.effect).Check(ctx))
		down := r.b.Unreachable(t)
		if _, ok := down.(idem.Checker); !ok {
			return // a store without a check: Processor.Check cannot know
		}
		err := r.processorOn(down, r.effect).Check(ctx)
		require.Error(t, err)
		require.ErrorContains(t, err, "group "+group)
	})

	t.Run("DiscardIsLoggedOnceWithItsReason", func(t *testing.T) {
		r := newRig(t, setup)
		p := r.processor(func(context.Context, *txconsume.Message) error {
			return txconsume.Discard(errors.New("payload lacks an order"))
		})
		res, err := p.Process(ctx, message(msgID))
		require.NoError(t, err)
		require.Equal(t, txconsume.Discarded, res)
		lines := r.logs.messages()
		require.Equal(t, []string{"idem: message discarded"}, lines)
		require.Contains(t, r.logs.attrs(0), "reason=txconsume: discarded: payload lacks an order")
		require.Contains(t, r.logs.attrs(0), "group="+group)
	})

	t.Run("HooksSeeResultsHandlerRunsAndInProgressConflicts", func(t *testing.T) {
		r := newRig(t, setup)
		var mu sync.Mutex
		var events []string
		add := func(s string) { mu.Lock(); events = append(events, s); mu.Unlock() }
		hooks := txconsume.Hooks{
			OnStart: func(ctx context.Context, g string, m *txconsume.Message) context.Context {
				add("start " + g + " " + m.ID)
				return ctx
			},
			OnHandler: func(_ context.Context, m *txconsume.Message, err error, _ time.Duration) {
				add("handler " + m.ID + " " + errString(err))
			},
			OnResult: func(_ context.Context, m *txconsume.Message, res txconsume.Result, err error, _ time.Duration) {
				add("result " + m.ID + " " + res.String() + " " + errString(err))
			},
			OnInProgress: func(_ context.Context, m *txconsume.Message, _ time.Duration) {
				add("in-progress " + m.ID)
			},
			OnRetry: func(context.Context, []*txconsume.Message, int, error, time.Duration) {
				add("retry")
			},
		}
		started, release := make(chan struct{}), make(chan struct{})
		slow := r.processor(func(ctx context.Context, msg *txconsume.Message) error {
			close(started)
			<-release
			return r.effect(ctx, msg)
		}, idem.WithHooks(hooks))
		other := r.processor(r.effect, idem.WithHooks(hooks))
		done := make(chan error, 1)
		go func() {
			_, err := slow.Process(ctx, message(msgID))
			done <- err
		}()
		waitClosed(t, started, "the first delivery's handler")
		_, err := other.Process(ctx, message(msgID))
		require.ErrorIs(t, err, idem.ErrInProgress)
		close(release)
		require.NoError(t, <-done)
		poison := r.processor(func(context.Context, *txconsume.Message) error {
			return txconsume.Discard(errors.New("bad"))
		}, idem.WithHooks(hooks))
		_, err = poison.Process(ctx, message("m-2"))
		require.NoError(t, err)

		mu.Lock()
		defer mu.Unlock()
		require.ElementsMatch(t, []string{
			"start svc m-1", "start svc m-1",
			"in-progress m-1",
			"result m-1 unknown " + idem.ErrInProgress.Error(),
			"handler m-1 ",
			"result m-1 applied ",
			"start svc m-2",
			"handler m-2 txconsume: discarded: bad",
			"result m-2 discarded ", // a discard is no failure: OnResult gets a nil error
		}, events)
	})
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	// The in-progress error names the key after the sentinel's text.
	if errors.Is(err, idem.ErrInProgress) {
		return idem.ErrInProgress.Error()
	}
	return err.Error()
}

// messages returns the messages of the records logged so far.
func (s *logSink) messages() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, len(s.records))
	for i, r := range s.records {
		out[i] = r.Message
	}
	return out
}

// attrs returns record i's attributes as "key=value" lines.
func (s *logSink) attrs(i int) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var b strings.Builder
	s.records[i].Attrs(func(a slog.Attr) bool {
		b.WriteString(a.Key + "=" + a.Value.String() + "\n")
		return true
	})
	return b.String()
}
