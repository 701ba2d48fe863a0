package rooms

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"meshd/mcast/memnet"
	"meshd/rooms/secure"
	"meshd/rooms/wire"
)

// TestJoinsBounded: at most maxJoining joins are in their handshake at
// once. Admitted members hold no slot (more than maxJoining join, one
// after another, and stay); with maxJoining handshakes stalled, a member's
// handshake is not answered; once one stalled peer leaves, a member joins.
func TestJoinsBounded(t *testing.T) {
	tr := newTestRoom(t, memnet.New(1), "general")
	// Each from its own loopback address: one address may open only
	// joinBurst joins at once.
	src := 0
	dial := func() net.Conn {
		t.Helper()
		src++
		return dialFrom(t, tr, net.IPv4(127, 0, byte(src>>8)+1, byte(src)))
	}
	join := func(ctx context.Context, nick string) (err error) {
		return joinOver(ctx, t, tr, dial(), nick)
	}

	const members = maxJoining + 8
	for i := range members {
		if err := join(context.Background(), fmt.Sprintf("m%d", i)); err != nil {
			t.Fatalf("member %d of %d: %v", i, members, err)
		}
	}
	awaitMembers(t, tr, members)

	// Peers that open a connection and say nothing: each holds a slot
	// until handshakeTimeout.
	stalled := make([]net.Conn, maxJoining)
	for i := range stalled {
		stalled[i] = dial()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	if err := join(ctx, "late"); err == nil {
		t.Fatalf("a member joined while %d handshakes stalled", maxJoining)
	}
	stalled[0].Close()
	if err := join(context.Background(), "later"); err != nil {
		t.Fatalf("no member joins once a stalled peer has left: %v", err)
	}
	awaitMembers(t, tr, members+1)
}

// dialFrom opens a TCP connection to tr's host from ip, a loopback
// address: the host limits each source address's joins.
func dialFrom(t *testing.T, tr *testRoom, ip net.IP) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: ip}}
	c, err := d.Dial("tcp", tr.kn.Addrs[0].String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// joinOver joins tr's room as nick over raw, closing raw if it fails.
func joinOver(ctx context.Context, t *testing.T, tr *testRoom, raw net.Conn, nick string) (err error) {
	defer func() {
		if err != nil {
			raw.Close()
		}
	}()
	conn, err := secure.Client(ctx, raw, secure.Config{Static: newTestIdentity(t).static}, tr.kn.Key())
	if err != nil {
		return err
	}
	b, err := wire.AppendFrame(nil, &wire.Hello{Room: "general", Nick: nick})
	if err != nil {
		return err
	}
	if _, err := conn.Write(b); err != nil {
		return err
	}
	f, _, err := wire.ReadFrame(conn, nil)
	if err != nil {
		return err
	}
	if _, ok := f.(*wire.Welcome); !ok {
		return fmt.Errorf("host answered %T, want a welcome", f)
	}
	return nil
}

// TestSourceJoinsBounded: one address holds at most maxSourceJoining
// joins in progress: with that many of its handshakes stalled, its next
// connection is closed at once, even once its rate allows one, while
// another address joins; once its stalled peers leave, it joins again.
func TestSourceJoinsBounded(t *testing.T) {
	tr := newTestRoom(t, memnet.New(1), "general")
	a, b := net.IPv4(127, 0, 3, 1), net.IPv4(127, 0, 3, 2)
	stalled := make([]net.Conn, maxSourceJoining)
	for i := range stalled {
		stalled[i] = dialFrom(t, tr, a)
	}
	// Its rate (joinRate a second, after a burst of joinBurst) allows
	// another join after 1/joinRate.
	time.Sleep(time.Second/joinRate + 100*time.Millisecond)
	limited := tr.stats.JoinsLimited.Load()
	c := dialFrom(t, tr, a)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Fatalf("a connection beyond %d stalled joins from one address: read %v, want the host to close it", maxSourceJoining, err)
	}
	if got := tr.stats.JoinsLimited.Load() - limited; got != 1 {
		t.Errorf("joins_limited rose by %d, want 1", got)
	}
	if err := joinOver(context.Background(), t, tr, dialFrom(t, tr, b), "other"); err != nil {
		t.Fatalf("another address cannot join: %v", err)
	}
	for _, s := range stalled {
		s.Close()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for {
		// The host sees the stalled peers leave as it reads their
		// handshakes; until then, its joins are refused.
		err := joinOver(ctx, t, tr, dialFrom(t, tr, a), "back")
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("the address cannot join once its stalled peers left: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	awaitMembers(t, tr, 2)
}
