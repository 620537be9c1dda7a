package demo

import (
	"context"
	"sync"
	"time"
)

// killer SIGKILLs a service each time another 1/(n+1) of the total is applied (as the service
// reports), and starts it again at once. A service that runs an outbox relay is killed right
// after the relay reported a send (or 2s later without one): the relay then often still has
// the round open, its rows sent but not yet marked sent, and the next process sends them again.
type killer struct {
	err  chan error    // receives the error that stopped the killer
	done chan struct{} // closed when the killer is done

	mu    sync.Mutex
	kills []Kill
}

func startKiller(ctx context.Context, svc *service, n, total int, prog *progress) *killer {
	k := &killer{err: make(chan error, 1), done: make(chan struct{})}
	go func() {
		defer close(k.done)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for i := 1; i <= n; i++ {
			at := i * total / (n + 1)
			for svc.tally.snapshot().Applied < at {
				select {
				case <-ctx.Done():
					return
				case <-tick.C:
				}
			}
			if svc.relays {
				afterRelaySend(ctx, svc.tally)
			}
			applied := svc.tally.snapshot().Applied
			if err := svc.kill(); err != nil {
				k.err <- err
				return
			}
			prog.event("SIGKILL %s after %d applied; restarting it", svc.name, applied)
			down := time.Now()
			if err := svc.start(ctx); err != nil {
				k.err <- err
				return
			}
			kill := Kill{AfterApplied: applied, Downtime: time.Since(down)}
			k.mu.Lock()
			k.kills = append(k.kills, kill)
			k.mu.Unlock()
			prog.event("%s consuming again after %s", svc.name, kill.Downtime.Round(time.Millisecond))
		}
	}()
	return k
}

// afterRelaySend returns once the relay of t's service reports its next send, or after 2s.
func afterRelaySend(ctx context.Context, t *tally) {
	select {
	case <-t.relaySent: // an earlier send: wait for the next one
	default:
	}
	select {
	case <-t.relaySent:
	case <-time.After(2 * time.Second):
	case <-ctx.Done():
	}
}

// list returns the kills done so far.
func (k *killer) list() []Kill {
	k.mu.Lock()
	defer k.mu.Unlock()
	return append([]Kill(nil), k.kills...)
}
