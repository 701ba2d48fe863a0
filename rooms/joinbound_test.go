package rooms

import (
	"context"
	"fmt"
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
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, byte(src>>8)+1, byte(src))}}
		c, err := d.Dial("tcp", tr.kn.Addrs[0].String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	join := func(ctx context.Context, nick string) (err error) {
		raw := dial()
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
