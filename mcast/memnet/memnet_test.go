package memnet_test

import (
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"slices"
	"testing"
	"testing/synctest"

	"meshd/mcast"
	"meshd/mcast/memnet"
)

// packetConn is what a consumer such as the room logic declares; both the
// real socket and the fake must satisfy it.
type packetConn interface {
	JoinGroup(group netip.Addr) error
	LeaveGroup(group netip.Addr) error
	WriteTo(b []byte, dst netip.AddrPort) error
	ReadFrom(b []byte) (n int, src netip.AddrPort, dst netip.Addr, err error)
	LocalAddrs() []netip.Addr
	LocalPort() int
	Close() error
}

var (
	_ packetConn = (*mcast.Conn)(nil)
	_ packetConn = (*memnet.Conn)(nil)
)

const port = 4242

var (
	group = netip.MustParseAddr("239.255.0.1")
	addrA = netip.MustParseAddr("10.0.0.1")
	addrB = netip.MustParseAddr("10.0.0.2")
	addrC = netip.MustParseAddr("10.0.0.3")
	dst   = netip.AddrPortFrom(group, port)
)

type packet struct {
	data string
	src  netip.AddrPort
	dst  netip.Addr
}

// drain reads the datagrams queued on c. It must run inside a synctest
// bubble: it stops when ReadFrom would block.
func drain(t *testing.T, c *memnet.Conn) []packet {
	t.Helper()
	var got []packet
	ch := make(chan packet)
	go func() {
		b := make([]byte, 1500)
		for {
			n, src, dst, err := c.ReadFrom(b)
			if err != nil {
				close(ch)
				return
			}
			ch <- packet{string(b[:n]), src, dst}
		}
	}()
	for {
		synctest.Wait()
		select {
		case p := <-ch:
			got = append(got, p)
			continue
		default:
		}
		c.Close()
		for p := range ch {
			got = append(got, p)
		}
		return got
	}
}

func join(t *testing.T, c *memnet.Conn, g netip.Addr) {
	t.Helper()
	if err := c.JoinGroup(g); err != nil {
		t.Fatalf("JoinGroup(%v): %v", g, err)
	}
}

func write(t *testing.T, c *memnet.Conn, b []byte, dst netip.AddrPort) {
	t.Helper()
	if err := c.WriteTo(b, dst); err != nil {
		t.Fatalf("WriteTo(%v): %v", dst, err)
	}
}

func TestDelivery(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := memnet.New(1)
		a := n.Listen(addrA, port)
		b := n.Listen(addrB, port)
		c := n.Listen(addrC, port) // did not join
		other := n.Listen(addrC, port+1)
		join(t, a, group)
		join(t, b, group)
		join(t, other, group) // joined, but on another port

		buf := []byte("multicast")
		write(t, a, buf, dst)
		copy(buf, "XXXXXXXXX") // the sender may reuse its buffer
		write(t, b, []byte("unicast"), netip.AddrPortFrom(addrC, port))

		srcA := netip.AddrPortFrom(addrA, port)
		srcB := netip.AddrPortFrom(addrB, port)
		tests := []struct {
			name string
			conn *memnet.Conn
			want []packet
		}{
			{"sender loops back", a, []packet{{"multicast", srcA, group}}},
			{"member", b, []packet{{"multicast", srcA, group}}},
			{"non-member gets unicast", c, []packet{{"unicast", srcB, addrC}}},
			{"other port", other, nil},
		}
		for _, tt := range tests {
			if got := drain(t, tt.conn); !slices.Equal(got, tt.want) {
				t.Errorf("%s: got %v, want %v", tt.name, got, tt.want)
			}
		}
	})
}

func TestEphemeralPorts(t *testing.T) {
	n := memnet.New(1)
	a, b := n.Listen(addrA, 0), n.Listen(addrA, 0)
	if a.LocalPort() == 0 || a.LocalPort() == b.LocalPort() {
		t.Errorf("ports %d and %d, want distinct non-zero ports", a.LocalPort(), b.LocalPort())
	}
	if got := a.LocalAddrs(); !slices.Equal(got, []netip.Addr{addrA}) {
		t.Errorf("LocalAddrs() = %v, want [%v]", got, addrA)
	}
	defer func() {
		if recover() == nil {
			t.Error("Listen on a taken address and port did not panic")
		}
	}()
	n.Listen(addrA, a.LocalPort())
}

// sendSeq multicasts count datagrams carrying their sequence number.
func sendSeq(t *testing.T, c *memnet.Conn, count int) {
	t.Helper()
	for i := range count {
		write(t, c, binary.BigEndian.AppendUint32(nil, uint32(i)), dst)
	}
}

func seqs(ps []packet) []uint32 {
	var out []uint32
	for _, p := range ps {
		out = append(out, binary.BigEndian.Uint32([]byte(p.data)))
	}
	return out
}

// within reports whether got is within tol of want.
func within(got, want, tol float64) bool { return got >= want-tol && got <= want+tol }

func TestImpairments(t *testing.T) {
	const count = 10000
	tests := []struct {
		name                     string
		loss, duplicate, reorder float64
		wantRecv                 float64 // expected fraction of count received
	}{
		{"none", 0, 0, 0, 1},
		{"loss", 0.2, 0, 0, 0.8},
		{"duplicate", 0, 0.1, 0, 1.1},
		{"reorder", 0, 0, 0.1, 1},
		{"all", 0.1, 0.1, 0.1, 0.9 * 1.1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				n := memnet.New(42)
				n.Loss, n.Duplicate, n.Reorder = tt.loss, tt.duplicate, tt.reorder
				n.QueueLen = 2 * count
				tx := n.Listen(addrA, port)
				rx := n.Listen(addrB, port)
				join(t, rx, group)
				sendSeq(t, tx, count)
				n.Flush()
				got := seqs(drain(t, rx))

				// 3 standard deviations of a binomial at these rates is
				// about 120; the seed is fixed, so this never flakes.
				if !within(float64(len(got)), tt.wantRecv*count, 150) {
					t.Errorf("received %d of %d, want about %.0f", len(got), count, tt.wantRecv*count)
				}
				s := n.Stats()
				if s.Deliveries != count {
					t.Errorf("Stats().Deliveries = %d, want %d", s.Deliveries, count)
				}
				if want := s.Deliveries - s.Lost + s.Duplicated - s.Dropped; uint64(len(got)) != want {
					t.Errorf("received %d, want deliveries-lost+duplicated-dropped = %d (%+v)", len(got), want, s)
				}
				if !within(float64(s.Lost), tt.loss*count, 150) {
					t.Errorf("Stats().Lost = %d, want about %.0f", s.Lost, tt.loss*count)
				}
				// A packet follows a held one instead of being held
				// itself, so the rate is p/(1+p) of those not lost.
				wantReordered := tt.reorder / (1 + tt.reorder) * (1 - tt.loss) * (1 + tt.duplicate) * count
				if !within(float64(s.Reordered), wantReordered, 150) {
					t.Errorf("Stats().Reordered = %d, want about %.0f", s.Reordered, wantReordered)
				}
				// Each reordered datagram shows up as a descent, except
				// when it swaps with its own duplicate.
				descents := 0
				for i := 1; i < len(got); i++ {
					if got[i] < got[i-1] {
						descents++
					}
				}
				if descents > int(s.Reordered) || float64(descents) < 0.9*float64(s.Reordered) {
					t.Errorf("%d descents in the received order, want about Stats().Reordered = %d", descents, s.Reordered)
				}
			})
		})
	}
}

func TestDeterministic(t *testing.T) {
	run := func() []uint32 {
		var got []uint32
		synctest.Test(t, func(t *testing.T) {
			n := memnet.New(7)
			n.Loss, n.Duplicate, n.Reorder = 0.2, 0.2, 0.2
			tx := n.Listen(addrA, port)
			rx := n.Listen(addrB, port)
			join(t, rx, group)
			sendSeq(t, tx, 100)
			n.Flush()
			got = seqs(drain(t, rx))
		})
		return got
	}
	if a, b := run(), run(); !slices.Equal(a, b) {
		t.Errorf("two runs with the same seed differ:\n%v\n%v", a, b)
	}
}

func TestPerReceiverLoss(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := memnet.New(1)
		a := n.Listen(addrA, port)
		b := n.Listen(addrB, port)
		join(t, a, group)
		join(t, b, group)
		n.SetLoss(addrB, 1)
		sendSeq(t, a, 10)
		if got := len(drain(t, a)); got != 10 {
			t.Errorf("a received %d, want 10", got)
		}
		if got := len(drain(t, b)); got != 0 {
			t.Errorf("b received %d with loss 1, want 0", got)
		}
	})
}

func TestQueueFull(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := memnet.New(1)
		n.QueueLen = 4
		c := n.Listen(addrA, port)
		join(t, c, group)
		sendSeq(t, c, 10)
		if got := seqs(drain(t, c)); !slices.Equal(got, []uint32{0, 1, 2, 3}) {
			t.Errorf("received %v, want the first 4", got)
		}
		if got := c.Counters().Dropped; got != 6 {
			t.Errorf("Counters().Dropped = %d, want 6", got)
		}
	})
}

func TestReadSkips(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := memnet.New(1)
		c := n.Listen(addrA, port)
		join(t, c, group)
		g2 := netip.MustParseAddr("239.255.0.2")
		join(t, c, g2)
		write(t, c, []byte("left"), netip.AddrPortFrom(g2, port))
		write(t, c, []byte("too long for the buffer"), dst)
		write(t, c, []byte("fits"), dst)
		if err := c.LeaveGroup(g2); err != nil {
			t.Fatal(err)
		}
		b := make([]byte, 8)
		nr, _, _, err := c.ReadFrom(b)
		if err != nil || string(b[:nr]) != "fits" {
			t.Errorf("ReadFrom = %q, %v, want %q", b[:nr], err, "fits")
		}
		if got, want := c.Counters(), (memnet.Counters{Filtered: 1, Truncated: 1}); got != want {
			t.Errorf("Counters() = %+v, want %+v", got, want)
		}
		c.Close()
	})
}

func TestClose(t *testing.T) {
	// synctest.Test fails if a goroutine is still blocked when it ends,
	// which makes it the leak check too.
	synctest.Test(t, func(t *testing.T) {
		n := memnet.New(1)
		a := n.Listen(addrA, port)
		b := n.Listen(addrB, port)
		join(t, b, group)

		errc := make(chan error)
		go func() {
			_, _, _, err := a.ReadFrom(make([]byte, 100))
			errc <- err
		}()
		synctest.Wait()
		write(t, b, []byte("queued"), dst) // queued on b, never read
		if err := a.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
		if err := <-errc; !errors.Is(err, net.ErrClosed) {
			t.Errorf("pending ReadFrom after Close = %v, want net.ErrClosed", err)
		}
		if err := a.Close(); err != nil {
			t.Errorf("second Close = %v, want nil", err)
		}
		if _, _, _, err := a.ReadFrom(make([]byte, 100)); !errors.Is(err, net.ErrClosed) {
			t.Errorf("ReadFrom after Close = %v, want net.ErrClosed", err)
		}
		if err := a.WriteTo([]byte("x"), dst); !errors.Is(err, net.ErrClosed) {
			t.Errorf("WriteTo after Close = %v, want net.ErrClosed", err)
		}
		if err := a.JoinGroup(group); !errors.Is(err, net.ErrClosed) {
			t.Errorf("JoinGroup after Close = %v, want net.ErrClosed", err)
		}
		// b is unaffected.
		write(t, b, []byte("after"), dst)
		if got := len(drain(t, b)); got != 2 {
			t.Errorf("b received %d, want 2", got)
		}
		// a's address and port are free again.
		n.Listen(addrA, port).Close()
	})
}
