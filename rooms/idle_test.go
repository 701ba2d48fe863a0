package rooms

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"meshd/internal/leaktest"
	"meshd/mcast/memnet"
	"meshd/rooms/wire"
)

// noSessionGoroutines waits until no goroutine serves a session: none
// reads one (nor waits to, in the fallback's poller), none writes one,
// none is still joining one. It fails after 5 s.
func noSessionGoroutines(t *testing.T) {
	t.Helper()
	leaktest.Check(t, "meshd/rooms.(*hostSession)", "meshd/rooms.(*Sequencer).serve", "meshd/rooms.(*Host).join", "meshd/rooms/poller.(*Entry).wait")
}

// awaitMembers waits until the room has n members besides its host.
func awaitMembers(t *testing.T, tr *testRoom, n int) {
	t.Helper()
	deadline := time.Now().Add(memberIdle + 5*time.Second)
	for len(tr.seq.Members()) != 1+n {
		if time.Now().After(deadline) {
			t.Fatalf("%d members, want %d", len(tr.seq.Members())-1, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestIdleSessionsHaveNoReader: sessions with nothing to read have no
// goroutine at all; each frame a member sends is read and answered all the
// same, a member that hangs up leaves, and the host ending the sessions
// (Serve's end, at the test's cleanup) finds the parked ones.
func TestIdleSessionsHaveNoReader(t *testing.T) {
	tr := newTestRoom(t, memnet.New(11), "general")
	var rss []*rawSession
	for i := range 5 {
		rss = append(rss, dialRaw(t, tr, fmt.Sprintf("m%d", i)))
	}
	awaitMembers(t, tr, 5)
	noSessionGoroutines(t)
	for round := range 3 {
		for i, rs := range rss[:4] {
			id := uint32(100*round + i)
			rs.write(t, &wire.Say{ID: id, Text: fmt.Sprintf("line %d from m%d", round, i)})
			for {
				f, _, err := wire.ReadFrame(rs.conn, nil)
				if err != nil {
					t.Fatal(err)
				}
				if said, ok := f.(*wire.Said); ok {
					if said.ID != id || said.Error != "" {
						t.Fatalf("Said %+v for say %d", said, id)
					}
					break
				}
			}
		}
		noSessionGoroutines(t)
	}
	rss[4].conn.Close()
	awaitMembers(t, tr, 4)
	noSessionGoroutines(t)
}

// TestSilentSessionEnds: a member that sends nothing, not even an ack, is
// taken for gone after memberIdle although no read waits on its session,
// and its part is sequenced; a member that acks stays.
func TestSilentSessionEnds(t *testing.T) {
	t.Parallel()
	tr := newTestRoom(t, memnet.New(12), "general")
	dialRaw(t, tr, "silent")
	live := dialRaw(t, tr, "live")
	live.keepAlive(t)
	awaitMembers(t, tr, 2)
	start := time.Now()
	awaitMembers(t, tr, 1)
	if took := time.Since(start); took < memberIdle-time.Second {
		t.Fatalf("silent session ended after %v, before memberIdle (%v)", took, memberIdle)
	}
	if m := tr.seq.Members(); m[1].Nick != "live" {
		t.Fatalf("members %+v: the live one left", m)
	}
}

// failingListener's Accept fails, once fail is called, with an error other
// than the listener being closed.
type failingListener struct {
	net.Listener
	failed atomic.Bool
}

var errAcceptFailed = errors.New("accept failed")

func (l *failingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil && l.failed.Load() {
		return nil, errAcceptFailed
	}
	return c, err
}

func (l *failingListener) fail() {
	l.failed.Store(true)
	l.Listener.Close()
}

// TestServeEndsItsSessions: a Serve that returns because its listener
// failed, not because its context ended, still ends the sessions it
// admitted, parked as they are, and waits for them; those of another
// Serve of the same host stay.
func TestServeEndsItsSessions(t *testing.T) {
	tr := newTestRoom(t, memnet.New(13), "general")
	stay := dialRaw(t, tr, "stay")
	stay.keepAlive(t)

	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := &failingListener{Listener: inner}
	done := make(chan error, 1)
	go func() { done <- tr.host.Serve(context.Background(), ln) }()
	other := *tr
	other.kn.Addrs = []netip.AddrPort{netip.MustParseAddrPort(inner.Addr().String())}
	leaving := dialRaw(t, &other, "leaving")
	awaitMembers(t, tr, 2)
	noSessionGoroutines(t)

	ln.fail()
	select {
	case err := <-done:
		if !errors.Is(err, errAcceptFailed) {
			t.Fatalf("Serve returned %v, want the accept error", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return within 10 s of its listener failing")
	}
	if _, _, err := wire.ReadFrame(leaving.conn, nil); err == nil {
		// Frames queued before the close may still arrive: read on until
		// the end.
		for err == nil {
			_, _, err = wire.ReadFrame(leaving.conn, nil)
		}
	}
	awaitMembers(t, tr, 1)
	if m := tr.seq.Members(); m[1].Nick != "stay" {
		t.Fatalf("members %+v: the other server's member left", m)
	}
}
