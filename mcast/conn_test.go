package mcast

import (
	"bytes"
	"errors"
	"net"
	"net/netip"
	"runtime"
	"syscall"
	"testing"
	"time"
)

var (
	groupA = netip.MustParseAddr("239.255.41.1")
	groupB = netip.MustParseAddr("239.255.41.2")
	groupC = netip.MustParseAddr("239.255.41.3")
)

// listenLoopback opens a Conn on the loopback interface joined to groups,
// or skips the test if this host cannot do multicast on loopback.
func listenLoopback(t testing.TB, port int, groups ...netip.Addr) *Conn {
	t.Helper()
	c, err := Listen(Config{Port: port, Interfaces: []string{"lo"}})
	if err != nil {
		var nerr *net.OpError
		if errors.As(err, &nerr) && nerr.Op == "route" {
			t.Skipf("no interface named lo: %v", err)
		}
		t.Fatalf("Listen: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	for _, g := range groups {
		if err := c.JoinGroup(g); err != nil {
			if errors.Is(err, syscall.EPERM) || errors.Is(err, syscall.ENODEV) ||
				errors.Is(err, syscall.EADDRNOTAVAIL) || errors.Is(err, syscall.ENOPROTOOPT) {
				t.Skipf("cannot join multicast groups on lo: %v", err)
			}
			t.Fatalf("JoinGroup(%v): %v", g, err)
		}
	}
	return c
}

type packet struct {
	data []byte
	src  netip.AddrPort
	dst  netip.Addr
}

// read reads one datagram, failing the test rather than hanging if none
// arrives. If multicast on lo cannot work because lo lacks the MULTICAST
// flag, it skips instead.
func read(t *testing.T, c *Conn) packet {
	t.Helper()
	return readInto(t, c, make([]byte, 1500))
}

func readInto(t *testing.T, c *Conn, b []byte) packet {
	t.Helper()
	c.uc.SetReadDeadline(time.Now().Add(2 * time.Second))
	n, src, dst, err := c.ReadFrom(b)
	if err != nil {
		if lo, lerr := net.InterfaceByName("lo"); lerr == nil && lo.Flags&net.FlagMulticast == 0 {
			t.Skipf("lo lacks the MULTICAST flag and delivered nothing (%v); try: ip link set lo multicast on", err)
		}
		t.Fatalf("ReadFrom: %v", err)
	}
	return packet{b[:n], src, dst}
}

func write(t *testing.T, c *Conn, b []byte, dst netip.AddrPort) {
	t.Helper()
	if err := c.WriteTo(b, dst); err != nil {
		t.Fatalf("WriteTo(%v): %v", dst, err)
	}
}

func TestLoopbackMulticast(t *testing.T) {
	a := listenLoopback(t, 0, groupA)
	port := uint16(a.LocalPort())
	// b shares the port, as a second daemon on the same host would.
	b := listenLoopback(t, int(port), groupB)

	write(t, b, []byte("to A"), netip.AddrPortFrom(groupA, port))
	got := read(t, a)
	if string(got.data) != "to A" || got.dst != groupA || got.src.Port() != port {
		t.Errorf("a read %q from %v to %v, want %q from port %d to %v", got.data, got.src, got.dst, "to A", port, groupA)
	}

	// Loopback is on: the sender hears its own group traffic.
	write(t, b, []byte("to B"), netip.AddrPortFrom(groupB, port))
	if got := read(t, b); string(got.data) != "to B" || got.dst != groupB {
		t.Errorf("b read %q to %v, want %q to %v", got.data, got.dst, "to B", groupB)
	}
	// a shares the port but did not join B. Loopback preserves order, so
	// if a got the B datagram it would read it before this marker.
	write(t, b, []byte("marker"), netip.AddrPortFrom(groupA, port))
	if got := read(t, a); string(got.data) != "marker" {
		t.Errorf("a read %q to %v, want the marker: a datagram for a group it did not join got through", got.data, got.dst)
	}
}

func TestFilterLeftGroup(t *testing.T) {
	c := listenLoopback(t, 0, groupA, groupC)
	port := uint16(c.LocalPort())

	// The datagram to C is queued before the leave; ReadFrom must drop it.
	write(t, c, []byte("to C"), netip.AddrPortFrom(groupC, port))
	write(t, c, []byte("to A"), netip.AddrPortFrom(groupA, port))
	time.Sleep(10 * time.Millisecond) // let loopback queue both
	if err := c.LeaveGroup(groupC); err != nil {
		t.Fatalf("LeaveGroup: %v", err)
	}
	if got := read(t, c); string(got.data) != "to A" {
		t.Errorf("read %q to %v, want %q", got.data, got.dst, "to A")
	}
	if got := c.Counters().Filtered; got != 1 {
		t.Errorf("Counters().Filtered = %d, want 1", got)
	}
}

func TestTruncated(t *testing.T) {
	c := listenLoopback(t, 0, groupA)
	dst := netip.AddrPortFrom(groupA, uint16(c.LocalPort()))
	write(t, c, bytes.Repeat([]byte("x"), 100), dst)
	write(t, c, []byte("short"), dst)

	if got := readInto(t, c, make([]byte, 10)); string(got.data) != "short" {
		t.Errorf("read %q, want %q", got.data, "short")
	}
	if got := c.Counters().Truncated; got != 1 {
		t.Errorf("Counters().Truncated = %d, want 1", got)
	}
}

func TestUnicast(t *testing.T) {
	a := listenLoopback(t, 0)
	b := listenLoopback(t, 0)
	loopback := netip.MustParseAddr("127.0.0.1")
	write(t, a, []byte("hello"), netip.AddrPortFrom(loopback, uint16(b.LocalPort())))
	got := read(t, b)
	if string(got.data) != "hello" || got.dst != loopback || got.src.Port() != uint16(a.LocalPort()) {
		t.Errorf("read %q from %v to %v, want %q from port %d to %v", got.data, got.src, got.dst, "hello", a.LocalPort(), loopback)
	}
	if addrs := b.LocalAddrs(); len(addrs) == 0 || addrs[0] != loopback {
		t.Errorf("LocalAddrs() = %v, want [%v]", addrs, loopback)
	}
}

func TestJoinLeaveIdempotent(t *testing.T) {
	c := listenLoopback(t, 0, groupA)
	if err := c.JoinGroup(groupA); err != nil {
		t.Errorf("second JoinGroup: %v", err)
	}
	if err := c.LeaveGroup(groupB); err != nil {
		t.Errorf("LeaveGroup of a group not joined: %v", err)
	}
	if err := c.LeaveGroup(groupA); err != nil {
		t.Errorf("LeaveGroup: %v", err)
	}
	if err := c.LeaveGroup(groupA); err != nil {
		t.Errorf("second LeaveGroup: %v", err)
	}
	if err := c.JoinGroup(netip.MustParseAddr("10.0.0.1")); err == nil {
		t.Error("JoinGroup(10.0.0.1) succeeded, want an error for a unicast address")
	}
	if err := c.WriteTo(nil, netip.MustParseAddrPort("[ff02::1]:1")); err == nil {
		t.Error("WriteTo an IPv6 address succeeded, want an error")
	}
}

func TestListenErrors(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
	}{
		{"unknown interface", Config{Interfaces: []string{"meshd-no-such-if0"}}},
		{"bad port", Config{Port: 70000}},
		{"bad TTL", Config{TTL: 256}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if c, err := Listen(tt.cfg); err == nil {
				c.Close()
				t.Errorf("Listen(%+v) succeeded, want an error", tt.cfg)
			}
		})
	}
}

func TestCloseUnblocksRead(t *testing.T) {
	c := listenLoopback(t, 0, groupA)
	errc := make(chan error, 1)
	go func() {
		_, _, _, err := c.ReadFrom(make([]byte, 100))
		errc <- err
	}()
	time.Sleep(10 * time.Millisecond) // let ReadFrom block
	if err := c.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	select {
	case err := <-errc:
		if !errors.Is(err, net.ErrClosed) {
			t.Errorf("ReadFrom after Close = %v, want net.ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("ReadFrom still blocked 5s after Close")
	}
	if err := c.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, _, _, err := c.ReadFrom(make([]byte, 100)); !errors.Is(err, net.ErrClosed) {
		t.Errorf("ReadFrom on closed Conn = %v, want net.ErrClosed", err)
	}
}

func TestRoundTripDoesNotAllocate(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	c := listenLoopback(t, 0, groupA)
	dst := netip.AddrPortFrom(groupA, uint16(c.LocalPort()))
	out, in := make([]byte, 1200), make([]byte, 1500)
	c.uc.SetReadDeadline(time.Now().Add(10 * time.Second))
	write(t, c, out, dst)
	read(t, c) // skips if loopback multicast does not work here
	allocs := testing.AllocsPerRun(100, func() {
		if err := c.WriteTo(out, dst); err != nil {
			t.Fatal(err)
		}
		if _, _, _, err := c.ReadFrom(in); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("WriteTo+ReadFrom allocated %v times per round trip, want 0", allocs)
	}
}

// BenchmarkLoopbackRoundTrip sends a multicast datagram to itself over lo
// and reads it back.
func BenchmarkLoopbackRoundTrip(b *testing.B) {
	c := listenLoopback(b, 0, groupA)
	dst := netip.AddrPortFrom(groupA, uint16(c.LocalPort()))
	out, in := make([]byte, 1200), make([]byte, 1500)
	c.uc.SetReadDeadline(time.Now().Add(time.Minute))
	b.ReportAllocs()
	b.SetBytes(int64(len(out)))
	for b.Loop() {
		if err := c.WriteTo(out, dst); err != nil {
			b.Fatal(err)
		}
		if _, _, _, err := c.ReadFrom(in); err != nil {
			b.Fatal(err)
		}
	}
}

// WriteToTTL sets the TTL of one datagram, which ReadMsg reports with the
// arrival interface; the next datagram has the socket's TTL again.
func TestTTLPerDatagram(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("a TTL per datagram is Linux only")
	}
	c := listenLoopback(t, 0, groupA)
	dst := netip.AddrPortFrom(groupA, uint16(c.LocalPort()))
	lo, err := net.InterfaceByName("lo")
	if err != nil {
		t.Fatal(err)
	}
	for _, ttl := range []int{7, 0, 32} {
		if err := c.WriteToTTL([]byte("x"), dst, ttl, lo.Index); err != nil {
			t.Fatalf("WriteToTTL(ttl %d): %v", ttl, err)
		}
		c.uc.SetReadDeadline(time.Now().Add(2 * time.Second))
		m, err := c.ReadMsg(make([]byte, 100))
		if err != nil {
			t.Fatalf("ReadMsg: %v", err)
		}
		want := ttl
		if ttl == 0 {
			want = 1 // Config.TTL 0 means 1
		}
		if m.TTL != want || m.IfIndex != lo.Index || m.Dst != groupA || !c.IsLocal(m.Src) {
			t.Errorf("ReadMsg = %+v (local %v), want TTL %d on interface %d to %v from a local address", m, c.IsLocal(m.Src), want, lo.Index, groupA)
		}
	}
	if err := c.WriteToTTL([]byte("x"), dst, 1, 9999); err == nil {
		t.Error("WriteToTTL on an interface not chosen = nil error")
	}
	if got := c.Interfaces(); len(got) != 1 || got[0] != lo.Index {
		t.Errorf("Interfaces() = %v, want [%d]", got, lo.Index)
	}
}

func TestExcludeAndRescan(t *testing.T) {
	if _, err := Listen(Config{Interfaces: []string{"lo"}, Exclude: []string{"lo"}}); !errors.Is(err, ErrNoInterfaces) {
		t.Fatalf("Listen with lo both named and excluded = %v, want ErrNoInterfaces", err)
	}
	c := listenLoopback(t, 0, groupA)
	added, removed, err := c.Rescan()
	if err != nil || len(added) != 0 || len(removed) != 0 {
		t.Fatalf("Rescan with nothing changed = %v, %v, %v", added, removed, err)
	}
	// Excluding lo now makes the rescan drop it and leave the group there.
	c.cfg.Exclude = []string{"lo"}
	if _, _, err := c.Rescan(); !errors.Is(err, ErrNoInterfaces) {
		t.Fatalf("Rescan with every interface excluded = %v, want ErrNoInterfaces", err)
	}
	c.cfg.Exclude = nil
	c.cfg.Interfaces = []string{"lo", "no-such-interface"}
	if added, removed, err := c.Rescan(); err != nil || len(added) != 0 || len(removed) != 0 {
		t.Fatalf("Rescan naming a missing interface = %v, %v, %v; want it skipped", added, removed, err)
	}
	write(t, c, []byte("still"), netip.AddrPortFrom(groupA, uint16(c.LocalPort())))
	if got := read(t, c); string(got.data) != "still" {
		t.Fatalf("read %q after rescans", got.data)
	}
}
