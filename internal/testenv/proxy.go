package testenv

import (
	"bytes"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// MySQLCommitPacket is the packet go-sql-driver/mysql sends for Tx.Commit (uncompressed
// protocol): a 7-byte payload, sequence 0, COM_QUERY (0x03) and "COMMIT". Give it to
// CutAfterClientSends to drop a connection once the server has been asked to commit.
var MySQLCommitPacket = []byte("\x07\x00\x00\x00\x03COMMIT")

// Proxy is a TCP proxy between a client under test and a real service, for injecting network
// faults. It forwards bytes both ways until told otherwise:
//
//   - Blackhole holds every byte where it is, as a network partition does, and Forward lets them
//     through again (TCP loses nothing: a partition that heals delivers late);
//   - CutAll closes every open connection;
//   - CutAfterClientSends and CutBeforeClientSends close one connection when the client sends a
//     byte pattern (a COMMIT packet, say), with or without forwarding it first.
//
// New connections are accepted at all times. A Proxy is safe for concurrent use.
type Proxy struct {
	target string
	ln     net.Listener

	mu       sync.Mutex
	conns    map[*proxyConn]struct{}
	hold     chan struct{} // non-nil while blackholed; closed by Forward
	triggers []*Trigger
	closed   bool

	wg sync.WaitGroup
}

// StartProxy starts a proxy to target (host:port) on a free loopback port. It is closed when
// the test ends.
func StartProxy(t testing.TB, target string) *Proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("testenv: proxy listen: %v", err)
	}
	p := &Proxy{target: target, ln: ln, conns: map[*proxyConn]struct{}{}}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.Close)
	return p
}

// Addr returns the address clients connect to instead of the target.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Blackhole stops moving bytes in both directions on every connection, current and new, until
// Forward. Connections stay open; what the peers write waits in the proxy and the kernel's
// buffers.
func (p *Proxy) Blackhole() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.hold == nil {
		p.hold = make(chan struct{})
	}
}

// Forward resumes forwarding after Blackhole; the bytes held are delivered in order.
func (p *Proxy) Forward() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.hold != nil {
		close(p.hold)
		p.hold = nil
	}
}

// CutAll closes every open connection, both sides, and returns how many there were. New
// connections are still accepted.
func (p *Proxy) CutAll() int {
	p.mu.Lock()
	conns := make([]*proxyConn, 0, len(p.conns))
	for c := range p.conns {
		conns = append(conns, c)
	}
	p.mu.Unlock()
	for _, c := range conns {
		c.cut()
	}
	return len(conns)
}

// Connections returns the number of open connections.
func (p *Proxy) Connections() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.conns)
}

// CutAfterClientSends arms a one-shot trigger: the first connection on which the client sends
// pattern (after this call) gets every byte up to the end of the pattern forwarded to the target
// and is then closed on both sides, so the target receives the request but the client never sees
// the answer. Bytes after the pattern are dropped.
func (p *Proxy) CutAfterClientSends(pattern []byte) *Trigger {
	return p.arm(pattern, true)
}

// CutBeforeClientSends is CutAfterClientSends without forwarding the pattern: the target receives
// the bytes before it and then sees the connection close. (A pattern that arrives in pieces may
// have had its first piece forwarded before the rest was seen.)
func (p *Proxy) CutBeforeClientSends(pattern []byte) *Trigger {
	return p.arm(pattern, false)
}

func (p *Proxy) arm(pattern []byte, forwardPattern bool) *Trigger {
	if len(pattern) == 0 {
		panic("testenv: Proxy trigger with an empty pattern")
	}
	tr := &Trigger{pattern: bytes.Clone(pattern), forward: forwardPattern, fired: make(chan struct{})}
	p.mu.Lock()
	p.triggers = append(p.triggers, tr)
	p.mu.Unlock()
	return tr
}

// Close stops accepting, cuts every connection and waits for the proxy's goroutines.
func (p *Proxy) Close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	p.mu.Unlock()
	_ = p.ln.Close()
	p.CutAll()
	p.Forward()
	p.wg.Wait()
}

// Trigger is an armed CutAfterClientSends or CutBeforeClientSends.
type Trigger struct {
	pattern []byte
	forward bool
	taken   atomic.Bool
	fired   chan struct{}
}

// Fired is closed once the trigger has cut a connection.
func (tr *Trigger) Fired() <-chan struct{} { return tr.fired }

// Disarm keeps the trigger from firing if it has not yet; it reports whether it had fired.
func (tr *Trigger) Disarm() (fired bool) {
	if tr.taken.CompareAndSwap(false, true) {
		return false
	}
	<-tr.fired
	return true
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		client, err := p.ln.Accept()
		if err != nil {
			return // closed
		}
		server, err := net.DialTimeout("tcp", p.target, 10*time.Second)
		if err != nil {
			_ = client.Close()
			continue
		}
		c := &proxyConn{p: p, client: client, server: server, done: make(chan struct{})}
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			c.cut()
			return
		}
		p.conns[c] = struct{}{}
		p.mu.Unlock()
		p.wg.Add(2)
		go c.pump(client, server, true)
		go c.pump(server, client, false)
	}
}

// holdChan returns the channel to wait on while blackholed, or nil when forwarding.
func (p *Proxy) holdChan() chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.hold
}

// armed returns the triggers that have not fired yet.
func (p *Proxy) armed() []*Trigger {
	p.mu.Lock()
	defer p.mu.Unlock()
	live := p.triggers[:0]
	for _, tr := range p.triggers {
		if !tr.taken.Load() {
			live = append(live, tr)
		}
	}
	p.triggers = live
	return append([]*Trigger(nil), live...)
}

type proxyConn struct {
	p              *Proxy
	client, server net.Conn
	once           sync.Once
	done           chan struct{}
	tail           []byte // the last client bytes, to match patterns split across reads
}

func (c *proxyConn) cut() {
	c.once.Do(func() {
		close(c.done)
		_ = c.client.Close()
		_ = c.server.Close()
		c.p.mu.Lock()
		delete(c.p.conns, c)
		c.p.mu.Unlock()
	})
}

// pump copies src to dst until either side closes; fromClient marks the direction in which
// triggers are matched.
func (c *proxyConn) pump(src, dst net.Conn, fromClient bool) {
	defer c.p.wg.Done()
	defer c.cut()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 && !c.forward(buf[:n], dst, fromClient) {
			return
		}
		if err != nil {
			return // EOF, or the connection was cut: either way both sides close
		}
	}
}

// forward writes data to dst once forwarding is allowed, cutting the connection where a trigger
// says so. It reports whether the connection is still open.
func (c *proxyConn) forward(data []byte, dst net.Conn, fromClient bool) bool {
	var fired *Trigger
	if fromClient {
		data, fired = c.match(data)
	}
	if fired != nil {
		defer close(fired.fired)
		defer c.cut()
		// The client side closes before the pattern goes on: the server answers a COMMIT within
		// microseconds, and that answer must never reach the client, or a commit meant to be of
		// unknown outcome sometimes arrives as committed.
		_ = c.client.Close()
	}
	if !c.waitForwarding() {
		return false
	}
	if len(data) > 0 {
		if _, err := dst.Write(data); err != nil {
			return false
		}
	}
	return fired == nil
}

// match looks for an armed trigger's pattern in the client stream. It returns the part of data
// to forward and the trigger that fired, if any.
func (c *proxyConn) match(data []byte) ([]byte, *Trigger) {
	triggers := c.p.armed()
	keep := 0
	for _, tr := range triggers {
		keep = max(keep, len(tr.pattern)-1)
	}
	stream := append(append([]byte(nil), c.tail...), data...)
	for _, tr := range triggers {
		i := bytes.Index(stream, tr.pattern)
		if i < 0 || !tr.taken.CompareAndSwap(false, true) {
			continue
		}
		end := i // in stream
		if tr.forward {
			end += len(tr.pattern)
		}
		end -= len(c.tail) // in data; the tail was forwarded already
		return data[:max(end, 0)], tr
	}
	if len(stream) > keep {
		stream = stream[len(stream)-keep:]
	}
	c.tail = stream
	return data, nil
}

// waitForwarding blocks while the proxy is blackholed; false if the connection was cut meanwhile.
func (c *proxyConn) waitForwarding() bool {
	for {
		hold := c.p.holdChan()
		if hold == nil {
			select {
			case <-c.done:
				return false
			default:
				return true
			}
		}
		select {
		case <-hold:
		case <-c.done:
			return false
		}
	}
}
