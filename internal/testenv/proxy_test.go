package testenv

import (
	"bytes"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// echoServer accepts connections, echoes what it reads and records, per connection, every byte it
// received until the connection closed.
type echoServer struct {
	ln       net.Listener
	mu       sync.Mutex
	received []*bytes.Buffer
	closed   map[int]bool // connections the server saw close
	changed  *sync.Cond
	wg       sync.WaitGroup
}

func startEcho(t *testing.T) *echoServer {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	s := &echoServer{ln: ln, closed: map[int]bool{}}
	s.changed = sync.NewCond(&s.mu)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			buf := &bytes.Buffer{}
			s.received = append(s.received, buf)
			i := len(s.received) - 1
			s.mu.Unlock()
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				defer c.Close()
				b := make([]byte, 1024)
				for {
					n, err := c.Read(b)
					if n > 0 {
						s.mu.Lock()
						buf.Write(b[:n])
						s.mu.Unlock()
						_, _ = c.Write(b[:n])
					}
					if err != nil {
						s.mu.Lock()
						s.closed[i] = true
						s.changed.Broadcast()
						s.mu.Unlock()
						return
					}
				}
			}()
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		s.wg.Wait()
	})
	return s
}

// got returns what connection i received so far.
func (s *echoServer) got(i int) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.received[i].String()
}

// waitClosed waits until the server has seen connection i close. The proxy closes it right
// after cutting the client side, so this never waits long unless the proxy failed to.
func (s *echoServer) waitClosed(t *testing.T, i int) {
	t.Helper()
	timer := time.AfterFunc(time.Minute, func() {
		s.mu.Lock()
		s.changed.Broadcast()
		s.mu.Unlock()
	})
	defer timer.Stop()
	deadline := time.Now().Add(time.Minute)
	s.mu.Lock()
	defer s.mu.Unlock()
	for !s.closed[i] {
		if time.Now().After(deadline) {
			t.Fatalf("server never saw connection %d close", i)
		}
		s.changed.Wait()
	}
}

func dial(t *testing.T, p *Proxy) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", p.Addr())
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// roundTrip writes s and reads its echo.
func roundTrip(t *testing.T, c net.Conn, s string) {
	t.Helper()
	_, err := c.Write([]byte(s))
	require.NoError(t, err)
	got := make([]byte, len(s))
	require.NoError(t, c.SetReadDeadline(time.Now().Add(time.Minute)))
	_, err = io.ReadFull(c, got)
	require.NoError(t, err)
	require.Equal(t, s, string(got))
}

// requireClosed reads until the proxy's close reaches the client.
func requireClosed(t *testing.T, c net.Conn) {
	t.Helper()
	require.NoError(t, c.SetReadDeadline(time.Now().Add(time.Minute)))
	_, err := io.Copy(io.Discard, c)
	var ne net.Error
	require.False(t, errors.As(err, &ne) && ne.Timeout(), "the connection was not closed: %v", err)
}

func TestProxy(t *testing.T) {
	setup := func(t *testing.T) (*echoServer, *Proxy) {
		s := startEcho(t)
		return s, StartProxy(t, s.ln.Addr().String())
	}

	t.Run("forwards both ways", func(t *testing.T) {
		_, p := setup(t)
		c := dial(t, p)
		roundTrip(t, c, "hello")
		roundTrip(t, c, "again")
		require.Equal(t, 1, p.Connections())
	})

	t.Run("a blackhole holds bytes until forwarding resumes", func(t *testing.T) {
		s, p := setup(t)
		c := dial(t, p)
		roundTrip(t, c, "before")
		p.Blackhole()
		_, err := c.Write([]byte("held"))
		require.NoError(t, err)
		// Nothing comes back while the proxy holds the bytes. (A slow machine can only make this
		// pass for the wrong reason, never fail for one.)
		require.NoError(t, c.SetReadDeadline(time.Now().Add(200*time.Millisecond)))
		n, err := c.Read(make([]byte, 16))
		require.Zero(t, n)
		var ne net.Error
		require.True(t, errors.As(err, &ne) && ne.Timeout(), "read while blackholed: %v", err)
		require.Equal(t, "before", s.got(0), "the server got nothing while blackholed")

		p.Forward()
		got := make([]byte, 4)
		require.NoError(t, c.SetReadDeadline(time.Now().Add(time.Minute)))
		_, err = io.ReadFull(c, got)
		require.NoError(t, err)
		require.Equal(t, "held", string(got))
		require.Equal(t, "beforeheld", s.got(0))
	})

	t.Run("CutAll closes every connection and new ones still work", func(t *testing.T) {
		s, p := setup(t)
		a, b := dial(t, p), dial(t, p)
		roundTrip(t, a, "a")
		roundTrip(t, b, "b")
		require.Equal(t, 2, p.CutAll())
		requireClosed(t, a)
		requireClosed(t, b)
		s.waitClosed(t, 0)
		s.waitClosed(t, 1)
		require.Equal(t, 0, p.Connections())
		roundTrip(t, dial(t, p), "c")
	})

	t.Run("CutAfterClientSends forwards the pattern, then cuts, once", func(t *testing.T) {
		s, p := setup(t)
		tr := p.CutAfterClientSends([]byte("COMMIT"))
		c := dial(t, p)
		// The pattern arrives in two reads: the first half is echoed before the second is sent.
		roundTrip(t, c, "abcCOM")
		_, err := c.Write([]byte("MITxyz"))
		require.NoError(t, err)
		select {
		case <-tr.Fired():
		case <-time.After(time.Minute):
			t.Fatal("trigger did not fire")
		}
		requireClosed(t, c)
		s.waitClosed(t, 0)
		require.Equal(t, "abcCOMMIT", s.got(0), "the server got the pattern and nothing after it")
		require.True(t, tr.Disarm(), "it had fired")

		roundTrip(t, dial(t, p), "COMMIT again") // one-shot: the next connection is not cut
	})

	t.Run("CutAfterClientSends: the client never hears the server's answer to the pattern", func(t *testing.T) {
		// The echo server answers the pattern at once, as MySQL answers COMMIT: the proxy must
		// have cut the client side before the server can answer, or a COMMIT meant to be of
		// unknown outcome sometimes reaches the client as committed. Many rounds, since the
		// answer slipping through is a race.
		for round := range 200 {
			s, p := setup(t)
			tr := p.CutAfterClientSends([]byte("COMMIT"))
			c := dial(t, p)
			_, err := c.Write([]byte("COMMIT"))
			require.NoError(t, err)
			<-tr.Fired()
			require.NoError(t, c.SetReadDeadline(time.Now().Add(time.Minute)))
			heard, _ := io.ReadAll(c)
			require.Empty(t, string(heard), "round %d: the client heard the server's answer", round)
			s.waitClosed(t, 0)
			require.Equal(t, "COMMIT", s.got(0), "round %d: the server got the pattern", round)
		}
	})

	t.Run("CutBeforeClientSends keeps the pattern from the server", func(t *testing.T) {
		s, p := setup(t)
		tr := p.CutBeforeClientSends(MySQLCommitPacket)
		c := dial(t, p)
		roundTrip(t, c, "SELECT 1")
		_, err := c.Write(append([]byte("xx"), MySQLCommitPacket...))
		require.NoError(t, err)
		<-tr.Fired()
		requireClosed(t, c)
		s.waitClosed(t, 0)
		require.Equal(t, "SELECT 1xx", s.got(0))
	})

	t.Run("a disarmed trigger never fires", func(t *testing.T) {
		_, p := setup(t)
		tr := p.CutAfterClientSends([]byte("COMMIT"))
		require.False(t, tr.Disarm())
		c := dial(t, p)
		roundTrip(t, c, "COMMIT")
		select {
		case <-tr.Fired():
			t.Fatal("a disarmed trigger fired")
		default:
		}
	})
}
