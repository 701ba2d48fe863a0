package poller

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"syscall"
	"testing"
	"time"

	"meshd/internal/leaktest"
)

// backends runs a test against the epoll instance (where there is one)
// and the fallback of a goroutine per parked entry.
func backends(t *testing.T, test func(t *testing.T, p *Poller)) {
	run := func(t *testing.T, ep *epoll) {
		t.Cleanup(func() { leaktest.Check(t, "poller.(*Entry).wait", "poller.(*Poller).Run") })
		test(t, startPoller(t, ep))
	}
	t.Run("epoll", func(t *testing.T) { run(t, needEpoll(t)) })
	t.Run("fallback", func(t *testing.T) { run(t, nil) })
}

// needEpoll returns an epoll instance, skipping where there is none.
func needEpoll(tb testing.TB) *epoll {
	ep, err := newEpoll()
	if errors.Is(err, errors.ErrUnsupported) {
		tb.Skip("no epoll here")
	}
	if err != nil {
		tb.Fatal(err)
	}
	return ep
}

// startPoller runs a poller on ep (nil: the fallback) until the test
// ends, then checks that it stops cleanly.
func startPoller(tb testing.TB, ep *epoll) *Poller {
	p := newPoller(ep)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	tb.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			tb.Errorf("Run: %v", err)
		}
		if err := p.Close(); err != nil {
			tb.Errorf("Close: %v", err)
		}
	})
	return p
}

// conn is one TCP connection on loopback: the watched end and the peer.
type conn struct {
	local *net.TCPConn
	peer  net.Conn
	rc    syscall.RawConn
	ready chan struct{} // one value per call of ready
	e     *Entry
}

func newConn(t *testing.T, p *Poller) *conn {
	t.Helper()
	local, peer := tcpPair(t)
	c := &conn{local: local, peer: peer, ready: make(chan struct{}, 16)}
	var err error
	if c.rc, err = c.local.SyscallConn(); err != nil {
		t.Fatal(err)
	}
	if c.e, err = p.Add(c.rc, func() { c.ready <- struct{}{} }); err != nil {
		t.Fatal(err)
	}
	return c
}

func (c *conn) awaitReady(t *testing.T) {
	t.Helper()
	select {
	case <-c.ready:
	case <-time.After(5 * time.Second):
		t.Fatal("ready not called within 5 s")
	}
}

// notReady checks that ready has not been called (more than awaited).
func (c *conn) notReady(t *testing.T) {
	t.Helper()
	select {
	case <-c.ready:
		t.Fatal("ready called again")
	default:
	}
}

func (c *conn) send(t *testing.T, s string) {
	t.Helper()
	if _, err := c.peer.Write([]byte(s)); err != nil {
		t.Fatal(err)
	}
}

func (c *conn) recv(t *testing.T, want string) {
	t.Helper()
	b := make([]byte, len(want))
	if _, err := io.ReadFull(c.local, b); err != nil || string(b) != want {
		t.Fatalf("read %q, %v; want %q", b, err, want)
	}
}

// An idle connection parks; input hands it back through ready, once, and
// it parks again once read.
func TestParkReady(t *testing.T) {
	backends(t, func(t *testing.T, p *Poller) {
		c := newConn(t, p)
		for _, msg := range []string{"ack", "say", "fetch"} {
			if !c.e.Park() {
				t.Fatal("Park refused an idle connection")
			}
			c.send(t, msg)
			c.awaitReady(t)
			c.recv(t, msg)
			c.notReady(t)
		}
	})
}

// Input already there is the owner's to read: Park declines.
func TestParkWithInput(t *testing.T) {
	backends(t, func(t *testing.T, p *Poller) {
		c := newConn(t, p)
		c.send(t, "x")
		// The byte may take a moment to cross loopback: until it has, Park
		// parks, and ready says it came.
		if c.e.Park() {
			c.awaitReady(t)
		}
		if c.e.Park() {
			t.Fatal("Park parked a connection with input")
		}
		c.recv(t, "x")
		if !c.e.Park() {
			t.Fatal("Park refused a drained connection")
		}
	})
}

// Input that arrives between Park's look at the connection and the
// instance being armed is reported: arming is level-triggered.
func TestArmSeesInputAlreadyThere(t *testing.T) {
	p := startPoller(t, needEpoll(t))
	c := newConn(t, p)
	c.send(t, "late")
	c.recv(t, "la")
	// What Park does after a peek that found nothing.
	c.e.state.Store(parked)
	if err := c.rc.Control(c.e.arm); err != nil {
		t.Fatal(err)
	}
	c.awaitReady(t)
	c.recv(t, "te")
}

// The peer's end of the stream is input: the reader finds EOF.
func TestPeerCloses(t *testing.T) {
	backends(t, func(t *testing.T, p *Poller) {
		c := newConn(t, p)
		if !c.e.Park() {
			t.Fatal("Park refused an idle connection")
		}
		c.peer.Close()
		c.awaitReady(t)
		if _, err := c.local.Read(make([]byte, 1)); err != io.EOF {
			t.Fatalf("read %v, want EOF", err)
		}
		if c.e.Park() {
			t.Fatal("Park parked a connection at EOF")
		}
		c.e.Remove()
	})
}

// A connection closed on this side is not reported by the kernel: Wake
// hands it to its reader, whose read fails; a running entry is not handed
// twice.
func TestCloseWake(t *testing.T) {
	backends(t, func(t *testing.T, p *Poller) {
		c := newConn(t, p)
		c.e.Wake() // running: nothing to do
		c.notReady(t)
		if !c.e.Park() {
			t.Fatal("Park refused an idle connection")
		}
		c.local.Close()
		c.e.Wake()
		c.awaitReady(t)
		if c.e.Park() {
			t.Fatal("Park parked a closed connection")
		}
		if _, err := c.local.Read(make([]byte, 1)); !errors.Is(err, net.ErrClosed) {
			t.Fatalf("read %v, want ErrClosed", err)
		}
		c.e.Remove()
		c.e.Wake()
		c.notReady(t)
		p.mu.Lock()
		defer p.mu.Unlock()
		if len(p.entries) != 0 {
			t.Fatalf("%d entries left after Remove", len(p.entries))
		}
	})
}

// A close racing with the owner's Park: whichever way it goes, the
// connection is handed to a reader exactly once (Park keeps it, or ready
// is called, by Wake or by Park finding it closed), and never lost.
func TestCloseRacesPark(t *testing.T) {
	backends(t, func(t *testing.T, p *Poller) {
		for range 50 {
			c := newConn(t, p)
			var wg sync.WaitGroup
			wg.Go(func() {
				c.local.Close()
				c.e.Wake()
			})
			kept := !c.e.Park()
			wg.Wait()
			if !kept {
				c.awaitReady(t)
			}
			c.notReady(t)
			c.e.Remove()
		}
	})
}

// Many entries: each gets its own input, and only those written to are
// handed back.
func TestManyEntries(t *testing.T) {
	backends(t, func(t *testing.T, p *Poller) {
		const n = 100
		cs := make([]*conn, n)
		for i := range cs {
			cs[i] = newConn(t, p)
			if !cs[i].e.Park() {
				t.Fatal("Park refused an idle connection")
			}
		}
		for i := 0; i < n; i += 3 {
			cs[i].send(t, "m")
		}
		for i := 0; i < n; i += 3 {
			cs[i].awaitReady(t)
			cs[i].recv(t, "m")
		}
		// The others, written to now, are handed back too: none was lost
		// or misrouted to another entry.
		for i, c := range cs {
			if i%3 != 0 {
				c.notReady(t)
				c.send(t, "n")
			}
		}
		for i, c := range cs {
			if i%3 != 0 {
				c.awaitReady(t)
				c.recv(t, "n")
			}
			c.notReady(t)
		}
	})
}

// Parking and reading again allocate nothing: a session parks after each
// burst of frames.
func TestParkAllocs(t *testing.T) {
	p := startPoller(t, needEpoll(t))
	c := newConn(t, p)
	b := []byte{1}
	allocs := testing.AllocsPerRun(100, func() {
		if !c.e.Park() {
			t.Fatal("Park refused an idle connection")
		}
		c.peer.Write(b)
		<-c.ready
		c.local.Read(b)
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per park and wake-up, want 0", allocs)
	}
}

// BenchmarkWakeUp is one frame's round through an idle connection: the
// peer writes a byte, the connection's reader reads it and waits again.
// "poller": the reader is a goroutine started by ready, which parks the
// entry and ends (a host session's reader); "goroutine": one goroutine
// blocked in Read throughout (what a session was before the poller).
func BenchmarkWakeUp(b *testing.B) {
	b.Run("poller", func(b *testing.B) {
		p := startPoller(b, needEpoll(b))
		local, peer := tcpPair(b)
		rc, err := local.SyscallConn()
		if err != nil {
			b.Fatal(err)
		}
		got := make(chan struct{}, 1)
		var e *Entry
		buf := make([]byte, 1)
		read := func() {
			for {
				local.Read(buf)
				got <- struct{}{}
				if e.Park() {
					return
				}
			}
		}
		if e, err = p.Add(rc, func() { go read() }); err != nil {
			b.Fatal(err)
		}
		e.Park()
		msg := []byte{1}
		b.ReportAllocs()
		for b.Loop() {
			peer.Write(msg)
			<-got
		}
	})
	b.Run("goroutine", func(b *testing.B) {
		local, peer := tcpPair(b)
		got := make(chan struct{}, 1)
		go func() {
			buf := make([]byte, 1)
			for {
				if _, err := local.Read(buf); err != nil {
					return
				}
				got <- struct{}{}
			}
		}()
		msg := []byte{1}
		b.ReportAllocs()
		for b.Loop() {
			peer.Write(msg)
			<-got
		}
	})
}

// tcpPair is a connection on loopback: the reader's end and the peer's.
func tcpPair(tb testing.TB) (*net.TCPConn, net.Conn) {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer ln.Close()
	peer, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		tb.Fatal(err)
	}
	local, err := ln.Accept()
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { local.Close(); peer.Close() })
	return local.(*net.TCPConn), peer
}
