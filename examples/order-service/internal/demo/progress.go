package demo

import (
	"fmt"
	"io"
	"sync"
	"time"
)

// progress prints the live status line and the events of the run. On a terminal (live) the
// status line is rewritten in place; otherwise a plain line is printed every few seconds, which
// keeps CI logs readable.
type progress struct {
	mu       sync.Mutex
	w        io.Writer
	live     bool
	start    time.Time
	lastLine time.Time
	shown    bool // a live line is on screen
}

const plainEvery = 3 * time.Second

func newProgress(w io.Writer, live bool) *progress {
	return &progress{w: w, live: live, start: time.Now()}
}

// status updates the status line; force prints it even between plain intervals.
func (p *progress) status(line string, force bool) {
	if p.w == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	stamp := fmt.Sprintf("[%5.1fs] ", time.Since(p.start).Seconds())
	if p.live {
		fmt.Fprint(p.w, "\r\x1b[K"+stamp+line)
		p.shown = true
		return
	}
	if force || time.Since(p.lastLine) >= plainEvery {
		fmt.Fprintln(p.w, stamp+line)
		p.lastLine = time.Now()
	}
}

// event prints a line of its own (a kill, a restart), above the live status line.
func (p *progress) event(format string, args ...any) {
	if p.w == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.shown {
		fmt.Fprint(p.w, "\r\x1b[K")
		p.shown = false
	}
	fmt.Fprintf(p.w, "[%5.1fs] "+format+"\n", append([]any{time.Since(p.start).Seconds()}, args...)...)
}

// done ends the live line.
func (p *progress) done() {
	if p.w == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.shown {
		fmt.Fprintln(p.w)
		p.shown = false
	}
}
