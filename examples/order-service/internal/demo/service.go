package demo

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"
)

// service runs a service's binary as a child process, restarts it after a kill, and feeds
// the "consumed" lines of its log into a tally. Every line is also appended to its log file.
type service struct {
	name   string
	bin    string
	args   []string
	log    *os.File
	tally  *tally
	relays bool // the service runs an outbox relay

	mu      sync.Mutex
	cmd     *exec.Cmd
	exited  chan struct{} // closed when cmd has been waited for
	waitErr error
	ready   chan struct{} // closed when the current process logged that it consumes
	starts  int
}

// logLine is the part of a service log line (slog JSON) the driver reads.
type logLine struct {
	Time   time.Time `json:"time"`
	Msg    string    `json:"msg"`
	Result string    `json:"result"`
	MsgID  string    `json:"msg_id"`
	Err    string    `json:"err"`
	// Messages is the number of messages of a "relayed" line.
	Messages int `json:"messages"`
}

// Messages of the service's log that the driver reacts to.
const (
	logConsumed = "consumed"  // one delivery's result
	logRelayed  = "relayed"   // one send of the outbox relay
	logReady    = "consuming" // the consumer is started
)

func newService(name, bin, logPath string, args []string) (*service, error) {
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	return &service{name: name, bin: bin, args: args, log: f, tally: newTally()}, nil
}

// start starts a new process of the service and waits until it consumes.
func (s *service) start(ctx context.Context) error {
	cmd := exec.Command(s.bin, s.args...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	cmd.Stderr = cmd.Stdout // one pipe: ordering of lines is kept
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("demo: start %s: %w", s.name, err)
	}
	s.mu.Lock()
	s.cmd, s.exited, s.ready, s.waitErr = cmd, make(chan struct{}), make(chan struct{}), nil
	s.starts++
	exited, ready := s.exited, s.ready
	fmt.Fprintf(s.log, "--- demo: started %s (pid %d, start %d)\n", s.name, cmd.Process.Pid, s.starts)
	s.mu.Unlock()

	var readOnce sync.Once
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.read(out, func() { readOnce.Do(func() { close(ready) }) })
	}()
	go func() {
		<-done // Wait closes the pipe: read everything first
		err := cmd.Wait()
		s.mu.Lock()
		s.waitErr = err
		s.mu.Unlock()
		close(exited)
	}()

	select {
	case <-ready:
		return nil
	case <-exited:
		return fmt.Errorf("demo: %s exited before it started consuming (%w); see %s", s.name, s.exitStatus(), s.log.Name())
	case <-ctx.Done():
		_ = cmd.Process.Kill()
		return ctx.Err()
	case <-time.After(2 * time.Minute):
		_ = cmd.Process.Kill()
		return fmt.Errorf("demo: %s did not start consuming within 2 minutes; see %s", s.name, s.log.Name())
	}
}

func (s *service) read(r io.Reader, onReady func()) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		line := sc.Bytes()
		_, _ = s.log.Write(append(line, '\n'))
		var l logLine
		if len(line) == 0 || line[0] != '{' || json.Unmarshal(line, &l) != nil {
			continue
		}
		switch l.Msg {
		case logConsumed:
			s.tally.add(l.Result, l.MsgID, l.Err, l.Time)
		case logRelayed:
			s.tally.addRelayed(l.Messages)
		case logReady:
			onReady()
		}
	}
}

// kill SIGKILLs the running process and waits for it to be gone.
func (s *service) kill() error {
	s.mu.Lock()
	cmd, exited := s.cmd, s.exited
	s.mu.Unlock()
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		return fmt.Errorf("demo: kill %s: %w", s.name, err)
	}
	<-exited
	fmt.Fprintf(s.log, "--- demo: SIGKILLed %s (pid %d)\n", s.name, cmd.Process.Pid)
	return nil
}

// stop asks the running process to shut down with SIGTERM and waits up to timeout for it to
// exit. It returns how long the shutdown took, and an error unless the process exited 0.
func (s *service) stop(timeout time.Duration) (time.Duration, error) {
	s.mu.Lock()
	cmd, exited := s.cmd, s.exited
	s.mu.Unlock()
	if cmd == nil {
		return 0, nil
	}
	select {
	case <-exited:
		return 0, fmt.Errorf("demo: %s had already exited (%w); see %s", s.name, s.exitStatus(), s.log.Name())
	default:
	}
	start := time.Now()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return 0, err
	}
	select {
	case <-exited:
	case <-time.After(timeout):
		_ = cmd.Process.Kill()
		<-exited
		return time.Since(start), fmt.Errorf("demo: %s did not shut down within %s after SIGTERM", s.name, timeout)
	}
	took := time.Since(start)
	if err := s.exitErr(); err != nil {
		return took, fmt.Errorf("demo: %s shut down with %w; see %s", s.name, err, s.log.Name())
	}
	return took, nil
}

// running reports whether the current process is alive.
func (s *service) running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.exited == nil {
		return false
	}
	select {
	case <-s.exited:
		return false
	default:
		return true
	}
}

// exitStatus is exitErr, with a clean exit as an error too, for messages about an unexpected exit.
func (s *service) exitStatus() error {
	if err := s.exitErr(); err != nil {
		return err
	}
	return errors.New("exit status 0")
}

func (s *service) exitErr() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.waitErr
}

// close kills a process that is still running and closes the log.
func (s *service) close() {
	if s.running() {
		_ = s.kill()
	}
	_ = s.log.Close()
}
