package idemtest

import (
	"context"
	"errors"
	"log/slog"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/txconsume/txconsume/txconsume"
	"github.com/txconsume/txconsume/txconsume/idem"
)

const (
	group = "svc"
	msgID = "m-1" // the message most subtests deliver, again and again
)

// rig is one subtest's backend plus the counters its handlers update.
type rig struct {
	t     *testing.T
	b     Backend
	calls atomic.Int64 // handler invocations, in memory
	logs  *logSink
}

func newRig(t *testing.T, setup func(t *testing.T) Backend) *rig {
	return &rig{t: t, b: setup(t), logs: &logSink{}}
}

// processor builds a Processor on a new store instance (its own pool or client).
func (r *rig) processor(h idem.Handler, opts ...idem.Option) *idem.Processor {
	r.t.Helper()
	return r.processorOn(newStore(r.t, r.b), h, opts...)
}

func (r *rig) processorOn(s idem.Store, h idem.Handler, opts ...idem.Option) *idem.Processor {
	r.t.Helper()
	opts = append([]idem.Option{idem.WithLogger(slog.New(r.logs))}, opts...)
	p, err := idem.New(s, group, h, opts...)
	require.NoError(r.t, err)
	return p
}

// effect is the handler that does the work: it records one effect for the message in the
// backend and counts the call.
func (r *rig) effect(ctx context.Context, msg *txconsume.Message) error {
	r.calls.Add(1)
	return r.b.Effects.Record(ctx, msg.ID)
}

// effects counts the recorded effects of message msgID.
func (r *rig) effects() int {
	r.t.Helper()
	n, err := r.b.Effects.Count(context.Background(), msgID)
	require.NoError(r.t, err)
	return n
}

func message(id string) *txconsume.Message {
	return &txconsume.Message{ID: id, Topic: "orders", Body: []byte(`{"order":1}`)}
}

// waitClosed fails the test if ch is not closed in time, instead of hanging it.
func waitClosed(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(waitFor):
		t.Fatalf("timed out waiting for %s", what)
	}
}

func runProcessor(t *testing.T, setup func(t *testing.T) Backend) {
	ctx := context.Background()

	t.Run("FirstDeliveryWinsAndDuplicateIsAcknowledged", func(t *testing.T) {
		r := newRig(t, setup)
		p1, p2 := r.processor(r.effect), r.processor(r.effect)
		msg := message(msgID)

		res, err := p1.Process(ctx, msg)
		require.NoError(t, err)
		require.Equal(t, txconsume.Applied, res)

		// The same message again, on this instance and on another one.
		for _, p := range []*idem.Processor{p1, p2} {
			res, err = p.Process(ctx, message(msgID))
			require.NoError(t, err)
			require.Equal(t, txconsume.Duplicate, res)
		}
		require.EqualValues(t, 1, r.calls.Load())
		require.Equal(t, 1, r.effects())
	})

	t.Run("DuplicateWhileProcessingIsRetriedLater", func(t *testing.T) {
		r := newRig(t, setup)
		started, release := make(chan struct{}), make(chan struct{})
		slow := r.processor(func(ctx context.Context, msg *txconsume.Message) error {
			close(started)
			<-release
			return r.effect(ctx, msg)
		})
		other := r.processor(r.effect)

		done := make(chan error, 1)
		go func() {
			res, err := slow.Process(ctx, message(msgID))
			if err == nil && res != txconsume.Applied {
				err = errors.New("first delivery: " + res.String())
			}
			done <- err
		}()
		waitClosed(t, started, "the first delivery's handler")

		_, err := other.Process(ctx, message(msgID))
		require.ErrorIs(t, err, idem.ErrInProgress)
		delay, ok := txconsume.RetryDelay(err)
		require.True(t, ok, "the error asks for a delayed redelivery")
		require.GreaterOrEqual(t, delay, time.Second)

		close(release)
		require.NoError(t, <-done)
		res, err := other.Process(ctx, message(msgID))
		require.NoError(t, err)
		require.Equal(t, txconsume.Duplicate, res)
		require.EqualValues(t, 1, r.calls.Load())
		require.Equal(t, 1, r.effects())
	})

	t.Run("DuplicateWhileProcessingAckedUnderAckAsDuplicate", func(t *testing.T) {
		r := newRig(t, setup)
		started, release := make(chan struct{}), make(chan struct{})
		slow := r.processor(func(ctx context.Context, msg *txconsume.Message) error {
			close(started)
			<-release
			return r.effect(ctx, msg)
		})
		other := r.processor(r.effect, idem.WithInProgressPolicy(idem.AckAsDuplicate))

		done := make(chan error, 1)
		go func() { _, err := slow.Process(ctx, message(msgID)); done <- err }()
		waitClosed(t, started, "the first delivery's handler")

		res, err := other.Process(ctx, message(msgID))
		require.NoError(t, err)
		require.Equal(t, txconsume.Duplicate, res)
		close(release)
		require.NoError(t, <-done)
		require.Equal(t, 1, r.effects())
	})

	t.Run("FailedHandlerRemovesRecord", func(t *testing.T) {
		r := newRig(t, setup)
		var attempt atomic.Int64
		boom := errors.New("downstream refused")
		p := r.processor(func(ctx context.Context, msg *txconsume.Message) error {
			switch attempt.Add(1) {
			case 1:
				return boom
			case 2:
				panic("handler bug")
			default:
				return r.effect(ctx, msg)
			}
		}, idem.WithProcessingTTL(longTTL))

		_, err := p.Process(ctx, message(msgID))
		require.ErrorIs(t, err, boom)
		// Not ErrInProgress: the failed attempt's record is gone, not waiting for its TTL.
		_, err = p.Process(ctx, message(msgID))
		var pe *txconsume.PanicError
		require.ErrorAs(t, err, &pe)
		require.Equal(t, "handler bug", pe.Value)

		res, err := p.Process(ctx, message(msgID))
		require.NoError(t, err)
		require.Equal(t, txconsume.Applied, res)
		require.EqualValues(t, 3, attempt.Load())
		require.Equal(t, 1, r.effects())
	})

	t.Run("DiscardRecordsConsumed", func(t *testing.T) {
		r := newRig(t, setup)
		p := r.processor(func(context.Context, *txconsume.Message) error {
			r.calls.Add(1)
			return txconsume.Discard(errors.New("malformed body"))
		})
		res, err := p.Process(ctx, message("poison"))
		require.NoError(t, err)
		require.Equal(t, txconsume.Discarded, res)
		res, err = p.Process(ctx, message("poison"))
		require.NoError(t, err)
		require.Equal(t, txconsume.Duplicate, res)
		require.EqualValues(t, 1, r.calls.Load())
	})

	t.Run("CrashedAttemptExpiresAfterTTL", func(t *testing.T) {
		// The crashed attempt's TTL leaves its handler (a fifth less) time for the effect, and the
		// next delivery time to find the key still held, on a machine under heavy load: with
		// shortTTL both sometimes ran out first, and the test failed for the wrong reason.
		const crashTTL = 3 * time.Second
		// runtime.Goexit in the handler ends the goroutine without returning, recovering or
		// releasing: what the store sees of a process killed in the middle of a message.
		crash := func(p *idem.Processor) {
			done := make(chan struct{})
			go func() {
				defer close(done)
				_, _ = p.Process(ctx, message(msgID))
				t.Errorf("Process returned after the handler crashed")
			}()
			<-done
		}

		t.Run("BeforeTheEffect", func(t *testing.T) {
			r := newRig(t, setup)
			crash(r.processor(func(context.Context, *txconsume.Message) error {
				runtime.Goexit()
				return nil
			}, idem.WithProcessingTTL(crashTTL)))

			next := r.processor(r.effect, idem.WithProcessingTTL(longTTL))
			_, err := next.Process(ctx, message(msgID))
			require.ErrorIs(t, err, idem.ErrInProgress, "the crashed attempt holds the key until its TTL")
			eventuallyApplied(t, next)
			require.Equal(t, 1, r.effects())
		})

		// The limit of the status mode, shown rather than hidden: an effect made outside the
		// store before a crash that prevents marking it is made again by the next delivery.
		t.Run("AfterTheEffectRunsItAgain", func(t *testing.T) {
			r := newRig(t, setup)
			crash(r.processor(func(ctx context.Context, msg *txconsume.Message) error {
				if err := r.effect(ctx, msg); err != nil {
					return err
				}
				runtime.Goexit()
				return nil
			}, idem.WithProcessingTTL(crashTTL)))

			next := r.processor(r.effect, idem.WithProcessingTTL(longTTL))
			eventuallyApplied(t, next)
			require.Equal(t, 2, r.effects())
		})
	})

	t.Run("HandlerContextEndsBeforeTTL", func(t *testing.T) {
		r := newRig(t, setup)
		// A fifth of the TTL (2s) is the margin in which the watcher below must find the record
		// still held after the handler's deadline: with 2s (a 400ms margin) a loaded machine
		// sometimes let it expire first.
		const ttl = 10 * time.Second
		watcher := newStore(t, r.b)
		var (
			deadline    time.Time
			hasDeadline bool
			seen        idem.Acquisition
			seenErr     error
		)
		p := r.processor(func(hctx context.Context, msg *txconsume.Message) error {
			deadline, hasDeadline = hctx.Deadline()
			<-hctx.Done()
			// The handler's time is up, and the record must still be held: the margin is for
			// recording the outcome before anyone else may take the key.
			seen, seenErr = watcher.Acquire(ctx, idem.Key{Group: group, Topic: msg.Topic, ID: msg.ID}, owner(), longTTL)
			return hctx.Err()
		}, idem.WithProcessingTTL(ttl))

		before := time.Now()
		_, err := p.Process(ctx, message(msgID))
		require.ErrorIs(t, err, context.DeadlineExceeded)
		require.True(t, hasDeadline)
		require.True(t, deadline.Before(before.Add(ttl)), "handler deadline %v is not before the TTL", deadline.Sub(before))
		require.NoError(t, seenErr)
		require.Equal(t, idem.InProgress, seen.State)

		// The timed-out attempt released its record.
		res, err := r.processor(r.effect).Process(ctx, message(msgID))
		require.NoError(t, err)
		require.Equal(t, txconsume.Applied, res)
	})

	t.Run("LateAttemptLogsWhatIsKnown", func(t *testing.T) {
		// An attempt outlives its TTL and nobody takes the key meanwhile. The store may keep its
		// record (MySQL: still the owner's to mark) or drop it (Redis expires it). If the attempt
		// cannot mark it, its log line must say that the TTL passed, and must not claim that
		// another attempt took the key over: nothing here did.
		r := newRig(t, setup)
		started, release := make(chan struct{}), make(chan struct{})
		p := r.processor(func(hctx context.Context, msg *txconsume.Message) error {
			close(started)
			<-release // ignores its context
			return r.effect(ctx, msg)
		}, idem.WithProcessingTTL(shortTTL))
		done := make(chan error, 1)
		go func() {
			_, err := p.Process(ctx, message(msgID))
			done <- err
		}()
		waitClosed(t, started, "the handler")
		time.Sleep(3 * shortTTL) // let the record's TTL pass: the condition under test is time itself
		close(release)
		require.NoError(t, <-done, "the effect happened: acknowledged")

		logged := r.logs.messagesAt(slog.LevelError)
		for _, m := range logged {
			require.NotContains(t, m, "was taken over", "no other attempt ran")
		}
		if len(logged) == 0 {
			// The store kept the record: the key is consumed.
			res, err := r.processor(r.effect).Process(ctx, message(msgID))
			require.NoError(t, err)
			require.Equal(t, txconsume.Duplicate, res)
		} else {
			require.Contains(t, logged[len(logged)-1], "outlived the processing TTL")
		}
		require.Equal(t, 1, r.effects())
	})

	t.Run("StaleOwnerCannotClobber", func(t *testing.T) {
		r := newRig(t, setup)
		aStarted, aRelease := make(chan struct{}), make(chan struct{})
		// A ignores its context and outlives its TTL.
		a := r.processor(func(context.Context, *txconsume.Message) error {
			close(aStarted)
			<-aRelease
			return nil
		}, idem.WithProcessingTTL(shortTTL))
		bStarted, bRelease := make(chan struct{}), make(chan error)
		b := r.processor(func(context.Context, *txconsume.Message) error {
			close(bStarted)
			return <-bRelease
		}, idem.WithProcessingTTL(longTTL))

		aDone := make(chan error, 1)
		go func() {
			res, err := a.Process(ctx, message(msgID))
			if err == nil && res != txconsume.Applied {
				err = errors.New("stale attempt: " + res.String())
			}
			aDone <- err
		}()
		waitClosed(t, aStarted, "A's handler")

		bDone := make(chan error, 1)
		go func() {
			for {
				_, err := b.Process(ctx, message(msgID))
				if errors.Is(err, idem.ErrInProgress) {
					time.Sleep(pollInterval)
					continue
				}
				bDone <- err
				return
			}
		}()
		waitClosed(t, bStarted, "B taking over A's expired record")

		// A finishes late. Its effect happened, so it acknowledges (and logs loudly), but it must
		// not mark B's record consumed while B is still working.
		errorsBefore := r.logs.count(slog.LevelError)
		close(aRelease)
		require.NoError(t, <-aDone)
		require.Greater(t, r.logs.count(slog.LevelError), errorsBefore, "the takeover is logged")
		probe := r.processor(r.effect)
		_, err := probe.Process(ctx, message(msgID))
		require.ErrorIs(t, err, idem.ErrInProgress, "B still holds the key")

		// B fails: its release must find its own record and free the key.
		bRelease <- errors.New("attempt B failed")
		require.EqualError(t, <-bDone, "attempt B failed")
		res, err := probe.Process(ctx, message(msgID))
		require.NoError(t, err)
		require.Equal(t, txconsume.Applied, res)
	})

	t.Run("ConsumedRecordExpiresAfterRetention", func(t *testing.T) {
		r := newRig(t, setup)
		p := r.processor(r.effect, idem.WithRetention(watchedTTL))
		res, err := p.Process(ctx, message(msgID))
		require.NoError(t, err)
		require.Equal(t, txconsume.Applied, res)
		res, err = p.Process(ctx, message(msgID))
		require.NoError(t, err)
		require.Equal(t, txconsume.Duplicate, res)

		eventuallyApplied(t, p)
		require.Equal(t, 2, r.effects(), "past the retention a duplicate is processed again")
	})

	t.Run("UnreachableStoreNeverRunsHandler", func(t *testing.T) {
		r := newRig(t, setup)
		down := r.b.Unreachable(t)
		p := r.processorOn(down, r.effect)
		for range 3 {
			cctx, cancel := context.WithTimeout(ctx, waitFor)
			_, err := p.Process(cctx, message(msgID))
			cancel()
			var se *idem.StoreError
			require.ErrorAs(t, err, &se)
			require.Equal(t, "acquire", se.Op)
			require.NotErrorIs(t, err, idem.ErrInProgress)
		}
		require.EqualValues(t, 0, r.calls.Load())
		require.Equal(t, 0, r.effects())

		t.Run("FailOpenRunsItWhenAsked", func(t *testing.T) {
			open := r.processorOn(down, r.effect, idem.WithFailOpen())
			warnings := r.logs.count(slog.LevelWarn)
			res, err := open.Process(ctx, message(msgID))
			require.NoError(t, err)
			require.Equal(t, txconsume.Applied, res)
			require.EqualValues(t, 1, r.calls.Load())
			require.Greater(t, r.logs.count(slog.LevelWarn), warnings, "a fail-open run is logged")
		})
	})

	t.Run("StoreLostAfterEffect", func(t *testing.T) {
		r := newRig(t, setup)
		s, shutdown := r.b.NewStore(t)
		t.Cleanup(shutdown)
		const ttl = time.Second
		p := r.processorOn(s, func(ctx context.Context, msg *txconsume.Message) error {
			if err := r.effect(ctx, msg); err != nil {
				return err
			}
			shutdown() // the store goes away before the record is marked
			return nil
		}, idem.WithProcessingTTL(ttl))

		errorsBefore := r.logs.count(slog.LevelError)
		res, err := p.Process(ctx, message(msgID))
		// The effect happened: acknowledging is right (a redelivery would repeat it), and the
		// failure to record it is logged, not swallowed.
		require.NoError(t, err)
		require.Equal(t, txconsume.Applied, res)
		require.Greater(t, r.logs.count(slog.LevelError), errorsBefore)

		// The unmarked record blocks duplicates until its TTL, then one runs again: the gap the
		// status mode cannot close.
		next := r.processor(r.effect)
		eventuallyApplied(t, next)
		require.Equal(t, 2, r.effects())
	})

	t.Run("TransitionAnswersLost", func(t *testing.T) {
		// The store applies MarkConsumed (or, after a failed handler, Release) but its answer is
		// lost: the connection dropped after the command, the server restarted. The Processor
		// retries the transition, which must find it done rather than report a lost lease.
		for _, handlerFails := range []bool{false, true} {
			r := newRig(t, setup)
			s := &loseFirstAnswer{Store: newStore(t, r.b)}
			p := r.processorOn(s, func(ctx context.Context, msg *txconsume.Message) error {
				if handlerFails {
					return errors.New("handler failed")
				}
				return r.effect(ctx, msg)
			})
			res, err := p.Process(ctx, message(msgID))
			require.Equal(t, 1, s.lostAnswers(), "the store's first answer was lost")
			require.Zero(t, r.logs.count(slog.LevelWarn), "a transition that happened is not reported as failed")
			if handlerFails {
				require.Error(t, err)
				// Released: the next delivery runs the handler at once, not after the TTL.
				res, err = r.processor(r.effect).Process(ctx, message(msgID))
			}
			require.NoError(t, err)
			require.Equal(t, txconsume.Applied, res)
			require.Equal(t, 1, r.effects())
			res, err = r.processor(r.effect).Process(ctx, message(msgID))
			require.NoError(t, err)
			require.Equal(t, txconsume.Duplicate, res)
		}
	})

	t.Run("SixteenGoroutinesOneKeyRunHandlerOnce", func(t *testing.T) {
		r := newRig(t, setup)
		const n = 16
		var returned atomic.Int64
		othersReturned := make(chan struct{})
		h := func(ctx context.Context, msg *txconsume.Message) error {
			// Hold the key until every other delivery has come and gone, so they all overlap with
			// this run. A second concurrent run would wait here for a 16th return that never
			// comes, time out, and be counted below.
			select {
			case <-othersReturned:
			case <-time.After(waitFor):
			}
			return r.effect(ctx, msg)
		}
		ps := []*idem.Processor{r.processor(h), r.processor(h)}

		results := make([]txconsume.Result, n)
		errs := make([]error, n)
		start := make(chan struct{})
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				<-start
				results[i], errs[i] = ps[i%2].Process(ctx, message(msgID))
				if results[i] != txconsume.Applied && returned.Add(1) == n-1 {
					close(othersReturned)
				}
			})
		}
		close(start)
		wg.Wait()

		applied := 0
		for i := range n {
			if results[i] == txconsume.Applied {
				require.NoError(t, errs[i])
				applied++
				continue
			}
			require.ErrorIs(t, errs[i], idem.ErrInProgress, "delivery %d", i)
			// The broker redelivers it: now it is a duplicate.
			res, err := ps[i%2].Process(ctx, message(msgID))
			require.NoError(t, err)
			require.Equal(t, txconsume.Duplicate, res)
		}
		require.Equal(t, 1, applied)
		require.EqualValues(t, 1, r.calls.Load())
		require.Equal(t, 1, r.effects())
	})

	t.Run("KeyFunc", func(t *testing.T) {
		r := newRig(t, setup)
		p := r.processor(r.effect, idem.WithKeyFunc(txconsume.KeyByFirstKey))
		first := &txconsume.Message{ID: "id-1", Topic: "orders", Keys: []string{"order-7"}}
		resent := &txconsume.Message{ID: "id-2", Topic: "orders", Keys: []string{"order-7"}}
		res, err := p.Process(ctx, first)
		require.NoError(t, err)
		require.Equal(t, txconsume.Applied, res)
		res, err = p.Process(ctx, resent)
		require.NoError(t, err)
		require.Equal(t, txconsume.Duplicate, res, "same business key under another message id")

		_, err = p.Process(ctx, &txconsume.Message{ID: "id-3", Topic: "orders"})
		require.ErrorIs(t, err, txconsume.ErrEmptyKey)
		require.EqualValues(t, 1, r.calls.Load())
	})

	t.Run("PanickingKeyFuncIsAPanicError", func(t *testing.T) {
		r := newRig(t, setup)
		p := r.processor(r.effect, idem.WithKeyFunc(func(*txconsume.Message) (string, error) {
			panic("key bug")
		}))
		res, err := p.Process(ctx, message(msgID))
		var pe *txconsume.PanicError
		require.ErrorAs(t, err, &pe)
		require.Equal(t, "key bug", pe.Value)
		require.NotEmpty(t, pe.Stack)
		require.Zero(t, res)
		require.Zero(t, r.calls.Load())
	})

	t.Run("CancelledContextReleasesRecord", func(t *testing.T) {
		r := newRig(t, setup)
		started := make(chan struct{})
		p := r.processor(func(hctx context.Context, _ *txconsume.Message) error {
			close(started)
			<-hctx.Done()
			return hctx.Err()
		})
		cctx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { _, err := p.Process(cctx, message(msgID)); done <- err }()
		waitClosed(t, started, "the handler")
		cancel()
		require.ErrorIs(t, <-done, context.Canceled)

		res, err := r.processor(r.effect).Process(ctx, message(msgID))
		require.NoError(t, err)
		require.Equal(t, txconsume.Applied, res, "a shut-down attempt releases its record")
	})
}

// eventuallyApplied redelivers message msgID until p applies it.
func eventuallyApplied(t *testing.T, p *idem.Processor) {
	t.Helper()
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		res, err := p.Process(context.Background(), message(msgID))
		require.NoError(c, err)
		require.Equal(c, txconsume.Applied, res)
	}, waitFor, pollInterval)
}

// loseFirstAnswer is a store whose first MarkConsumed or Release is applied but answers with an
// error, as when the connection drops after the server executed the command.
type loseFirstAnswer struct {
	idem.Store
	mu   sync.Mutex
	lost int
}

var errAnswerLost = errors.New("connection lost after the command was sent")

func (s *loseFirstAnswer) loseOnce(err error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err == nil && s.lost == 0 {
		s.lost++
		return errAnswerLost
	}
	return err
}

func (s *loseFirstAnswer) lostAnswers() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lost
}

func (s *loseFirstAnswer) MarkConsumed(ctx context.Context, key idem.Key, owner string, retention time.Duration) error {
	return s.loseOnce(s.Store.MarkConsumed(ctx, key, owner, retention))
}

func (s *loseFirstAnswer) Release(ctx context.Context, key idem.Key, owner string) error {
	return s.loseOnce(s.Store.Release(ctx, key, owner))
}
