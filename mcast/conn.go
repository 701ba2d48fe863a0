// Package mcast is the socket code of meshd: one UDP port, joined to
// multicast groups on every chosen interface.
//
// A Conn is a single IPv4 UDP socket bound to 0.0.0.0:port. Groups are
// joined per interface, because a join without an interface only covers
// the one the routing table picks, and multicast sends go out once per
// interface for the same reason.
//
// Multicast loopback stays on so that several daemons on one host (and
// tests) hear each other; callers recognise and drop their own packets.
// The socket sets SO_REUSEADDR so those daemons can share the port. On
// Linux a socket bound to the wildcard address would also receive groups
// that other sockets on the same port joined; the socket disables
// IP_MULTICAST_ALL against that and ReadFrom also filters on the
// destination address, which covers other systems and datagrams still
// queued when a group is left.
//
// The package targets Linux; other Unix systems build and work, with an
// allocation per received packet.
package mcast

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"

	"golang.org/x/net/ipv4"
	"golang.org/x/sys/unix"
)

// ErrNoInterfaces is returned by Listen when no interface qualifies for
// multicast: none was named and none is up with an IPv4 address.
var ErrNoInterfaces = errors.New("mcast: no usable multicast interface")

// errNotIPv4 reports a non-IPv4 address given to an IPv4-only Conn.
var errNotIPv4 = errors.New("not an IPv4 address")

// errNotMulticast reports a group address outside 224.0.0.0/4.
var errNotMulticast = errors.New("not an IPv4 multicast address")

// oobSize holds the control messages ReadFrom asks for on every supported
// system: one in_pktinfo on Linux, a destination address and a link-layer
// address on the BSDs.
const oobSize = 128

// Config configures Listen.
type Config struct {
	// Port is the UDP port to bind on 0.0.0.0; 0 picks an ephemeral port.
	Port int

	// Interfaces names the interfaces to join and send on. Empty means
	// every interface that is up, multicast-capable and has an IPv4
	// address, other than loopback; loopback is used only if nothing
	// else qualifies or if it is named.
	Interfaces []string

	// TTL is the IP multicast TTL of sent packets; 0 means 1, which keeps
	// the traffic on the local link.
	TTL int

	// Logger receives the failures that do not fail an operation, such
	// as a join that failed on one of several interfaces. Nil discards.
	Logger *slog.Logger
}

// Counters counts datagrams that ReadFrom received but did not return.
type Counters struct {
	// Filtered counts datagrams sent to a multicast group the Conn has
	// not joined.
	Filtered uint64
	// Truncated counts datagrams longer than the buffer given to
	// ReadFrom; a truncated datagram is never valid, so it is dropped
	// rather than returned cut short.
	Truncated uint64
}

// Conn is a UDP socket joined to multicast groups on a fixed set of
// interfaces. It is safe for concurrent use.
type Conn struct {
	uc     *net.UDPConn
	pc     *ipv4.PacketConn
	ifaces []iface // fixed by Listen
	port   int
	log    *slog.Logger

	mu     sync.Mutex                      // serializes JoinGroup and LeaveGroup
	joined map[netip.Addr][]*net.Interface // guarded by mu; interfaces each group is joined on

	// groups is a copy-on-write snapshot of the keys of joined, so the
	// read path filters without taking mu.
	groups atomic.Pointer[map[netip.Addr]struct{}]

	filtered  atomic.Uint64
	truncated atomic.Uint64
	closeOnce sync.Once
	closeErr  error
}

type iface struct {
	ifi *net.Interface
	oob []byte // control message that sends a datagram out of ifi
}

// Listen opens the socket described by cfg. It joins no group.
func Listen(cfg Config) (*Conn, error) {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("component", "mcast")

	if cfg.Port < 0 || cfg.Port > 65535 {
		return nil, fmt.Errorf("mcast: invalid port %d", cfg.Port)
	}
	ttl := cfg.TTL
	if ttl == 0 {
		ttl = 1
	}
	if ttl < 0 || ttl > 255 {
		return nil, fmt.Errorf("mcast: invalid TTL %d", cfg.TTL)
	}
	ifis, err := chooseInterfaces(cfg.Interfaces, log)
	if err != nil {
		return nil, err
	}

	lc := net.ListenConfig{Control: control}
	addr := net.JoinHostPort("0.0.0.0", strconv.Itoa(cfg.Port))
	pconn, err := lc.ListenPacket(context.Background(), "udp4", addr)
	if err != nil {
		return nil, fmt.Errorf("mcast: %w", err)
	}
	uc := pconn.(*net.UDPConn)
	c := &Conn{
		uc:     uc,
		pc:     ipv4.NewPacketConn(uc),
		port:   uc.LocalAddr().(*net.UDPAddr).Port,
		log:    log,
		joined: make(map[netip.Addr][]*net.Interface),
	}
	c.groups.Store(new(map[netip.Addr]struct{}))
	for _, ifi := range ifis {
		cm := ipv4.ControlMessage{IfIndex: ifi.Index}
		c.ifaces = append(c.ifaces, iface{ifi: ifi, oob: cm.Marshal()})
	}
	if err := c.setOptions(ttl); err != nil {
		uc.Close()
		return nil, err
	}
	return c, nil
}

func (c *Conn) setOptions(ttl int) error {
	if err := c.pc.SetMulticastTTL(ttl); err != nil {
		return fmt.Errorf("mcast: set multicast TTL: %w", err)
	}
	if err := c.pc.SetMulticastLoopback(true); err != nil {
		return fmt.Errorf("mcast: set multicast loopback: %w", err)
	}
	if err := c.pc.SetControlMessage(ipv4.FlagDst|ipv4.FlagInterface, true); err != nil {
		return fmt.Errorf("mcast: enable control messages: %w", err)
	}
	return nil
}

// chooseInterfaces resolves names, or picks the default set if names is
// empty.
func chooseInterfaces(names []string, log *slog.Logger) ([]*net.Interface, error) {
	if len(names) > 0 {
		var ifis []*net.Interface
		seen := make(map[int]bool)
		for _, name := range names {
			ifi, err := net.InterfaceByName(name)
			if err != nil {
				return nil, fmt.Errorf("mcast: interface %q: %w", name, err)
			}
			if seen[ifi.Index] {
				continue
			}
			seen[ifi.Index] = true
			// A named interface is kept even if it is not ready yet: joins
			// on it fail and are reported then, with the reason.
			if ifi.Flags&net.FlagUp == 0 || ifi.Flags&net.FlagMulticast == 0 {
				log.Warn("interface not up or not multicast-capable", "interface", name, "flags", ifi.Flags)
			}
			ifis = append(ifis, ifi)
		}
		return ifis, nil
	}

	all, err := net.Interfaces()
	if err != nil {
		return nil, fmt.Errorf("mcast: list interfaces: %w", err)
	}
	var ifis, loopbacks []*net.Interface
	for i := range all {
		ifi := &all[i]
		if ifi.Flags&net.FlagUp == 0 || len(ipv4Addrs(ifi)) == 0 {
			continue
		}
		switch {
		case ifi.Flags&net.FlagLoopback != 0:
			loopbacks = append(loopbacks, ifi)
		case ifi.Flags&net.FlagMulticast != 0:
			ifis = append(ifis, ifi)
		}
	}
	if len(ifis) == 0 {
		ifis = loopbacks
	}
	if len(ifis) == 0 {
		return nil, ErrNoInterfaces
	}
	return ifis, nil
}

// ipv4Addrs returns the IPv4 addresses currently assigned to ifi.
func ipv4Addrs(ifi *net.Interface) []netip.Addr {
	addrs, err := ifi.Addrs()
	if err != nil {
		return nil
	}
	var out []netip.Addr
	for _, a := range addrs {
		ipn, ok := a.(*net.IPNet)
		if !ok {
			continue
		}
		if ip, ok := netip.AddrFromSlice(ipn.IP); ok && ip.Unmap().Is4() {
			out = append(out, ip.Unmap())
		}
	}
	return out
}

// JoinGroup joins group on every chosen interface. It fails only if the
// join failed on all of them; failures on some are logged. Joining a
// group twice is a no-op.
func (c *Conn) JoinGroup(group netip.Addr) error {
	group = group.Unmap()
	if !group.Is4() || !group.IsMulticast() {
		return fmt.Errorf("mcast: join %v: %w", group, errNotMulticast)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.joined[group]; ok {
		return nil
	}
	gaddr := &net.UDPAddr{IP: group.AsSlice()}
	var on []*net.Interface
	var errs []error
	for _, ifc := range c.ifaces {
		if err := c.pc.JoinGroup(ifc.ifi, gaddr); err != nil {
			errs = append(errs, fmt.Errorf("on %s: %w", ifc.ifi.Name, err))
			continue
		}
		on = append(on, ifc.ifi)
	}
	if len(on) == 0 {
		return fmt.Errorf("mcast: join %v: %w", group, errors.Join(errs...))
	}
	for _, err := range errs {
		c.log.Warn("join failed on one interface", "group", group, "err", err)
	}
	c.joined[group] = on
	c.publishLocked()
	return nil
}

// LeaveGroup leaves group on the interfaces JoinGroup joined it on.
// Leaving a group that is not joined is a no-op.
func (c *Conn) LeaveGroup(group netip.Addr) error {
	group = group.Unmap()
	c.mu.Lock()
	defer c.mu.Unlock()
	on, ok := c.joined[group]
	if !ok {
		return nil
	}
	// Unpublish first, so that datagrams for the group that are already
	// queued are filtered too.
	delete(c.joined, group)
	c.publishLocked()
	gaddr := &net.UDPAddr{IP: group.AsSlice()}
	var errs []error
	for _, ifi := range on {
		if err := c.pc.LeaveGroup(ifi, gaddr); err != nil {
			errs = append(errs, fmt.Errorf("mcast: leave %v on %s: %w", group, ifi.Name, err))
		}
	}
	return errors.Join(errs...)
}

func (c *Conn) publishLocked() {
	groups := make(map[netip.Addr]struct{}, len(c.joined))
	for g := range c.joined {
		groups[g] = struct{}{}
	}
	c.groups.Store(&groups)
}

// WriteTo sends b to dst. A multicast datagram goes out once on every
// chosen interface, and WriteTo fails only if it failed on all of them;
// a unicast one is routed as usual.
func (c *Conn) WriteTo(b []byte, dst netip.AddrPort) error {
	ip := dst.Addr().Unmap()
	if !ip.Is4() {
		return fmt.Errorf("mcast: write to %v: %w", dst, errNotIPv4)
	}
	dst = netip.AddrPortFrom(ip, dst.Port())
	if !ip.IsMulticast() {
		if _, err := c.uc.WriteToUDPAddrPort(b, dst); err != nil {
			return fmt.Errorf("mcast: %w", err)
		}
		return nil
	}
	var errs []error
	for _, ifc := range c.ifaces {
		_, _, err := c.uc.WriteMsgUDPAddrPort(b, ifc.oob, dst)
		if err != nil {
			errs = append(errs, fmt.Errorf("mcast: write to %v on %s: %w", dst, ifc.ifi.Name, err))
		}
	}
	if len(errs) == len(c.ifaces) {
		return errors.Join(errs...)
	}
	for _, err := range errs {
		// Debug, because this repeats for every packet while an
		// interface is down.
		c.log.Debug("send failed on one interface", "err", err)
	}
	return nil
}

// ReadFrom reads the next datagram into b. It returns the source address
// and the destination address, which is the group for multicast; dst is
// the zero Addr if the system did not report it. ReadFrom skips, and
// counts in Counters, datagrams sent to groups the Conn has not joined
// and datagrams longer than b. After Close it returns an error wrapping
// net.ErrClosed.
func (c *Conn) ReadFrom(b []byte) (n int, src netip.AddrPort, dst netip.Addr, err error) {
	// On the stack, so reads neither allocate nor share a buffer.
	var oob [oobSize]byte
	for {
		n, oobn, flags, src, err := c.uc.ReadMsgUDPAddrPort(b, oob[:])
		if err != nil {
			return 0, netip.AddrPort{}, netip.Addr{}, fmt.Errorf("mcast: %w", err)
		}
		if flags&unix.MSG_TRUNC != 0 {
			c.truncated.Add(1)
			continue
		}
		dst := parseDst(oob[:oobn])
		if dst.IsMulticast() {
			if _, ok := (*c.groups.Load())[dst]; !ok {
				c.filtered.Add(1)
				continue
			}
		}
		return n, src, dst, nil
	}
}

// LocalAddrs returns the IPv4 addresses the chosen interfaces have now,
// which peers can use to reach this Conn by unicast.
func (c *Conn) LocalAddrs() []netip.Addr {
	var addrs []netip.Addr
	for _, ifc := range c.ifaces {
		addrs = append(addrs, ipv4Addrs(ifc.ifi)...)
	}
	return addrs
}

// LocalPort returns the bound UDP port, which Listen picked if
// Config.Port was 0.
func (c *Conn) LocalPort() int { return c.port }

// Counters returns the counts of datagrams ReadFrom dropped.
func (c *Conn) Counters() Counters {
	return Counters{Filtered: c.filtered.Load(), Truncated: c.truncated.Load()}
}

// Close closes the socket, which leaves every group and makes pending
// and future ReadFrom calls return. Close is idempotent.
func (c *Conn) Close() error {
	c.closeOnce.Do(func() {
		if err := c.uc.Close(); err != nil {
			c.closeErr = fmt.Errorf("mcast: %w", err)
		}
	})
	return c.closeErr
}
