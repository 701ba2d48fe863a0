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
// The set of interfaces is not fixed: Rescan (which the daemon calls every
// few seconds) joins the groups on interfaces that came up, retries joins
// that failed, and forgets interfaces that went away.
//
// The package targets Linux; other Unix systems build and work, with an
// allocation per received packet and without a TTL per datagram
// (WriteToTTL sends with the socket's TTL there).
package mcast

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"

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

	// Exclude names interfaces never to use, even if Interfaces names
	// them.
	Exclude []string

	// TTL is the IP multicast TTL of sent packets; 0 means 1, which keeps
	// the traffic on the local link.
	TTL int

	// SendBuffer, if not 0, sets the socket's send buffer, in bytes (the
	// system doubles it, and counts each datagram's bookkeeping too).
	// Datagrams sent count against it until the interface has sent
	// them, so it bounds how long the interface's queue may hold this
	// socket's datagrams.
	SendBuffer int

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

// Conn is a UDP socket joined to multicast groups on a set of interfaces
// that Rescan keeps current. It is safe for concurrent use.
type Conn struct {
	uc   *net.UDPConn
	raw  syscall.RawConn // uc's, for recvMsg
	recv *receiver
	pc   *ipv4.PacketConn
	cfg  Config
	port int
	log  *slog.Logger

	mu     sync.Mutex                  // serializes JoinGroup, LeaveGroup and Rescan
	joined map[netip.Addr]map[int]bool // guarded by mu; interfaces (by index) each group is joined on

	// Copy-on-write snapshots, so the send and read paths take no lock:
	// the interfaces, the keys of joined, and the addresses of the
	// interfaces.
	ifaces atomic.Pointer[[]iface]
	groups atomic.Pointer[map[netip.Addr]struct{}]
	local  atomic.Pointer[map[netip.Addr]struct{}]

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
	ifis, err := chooseInterfaces(cfg.Interfaces, cfg.Exclude, true, log)
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
	raw, err := uc.SyscallConn()
	if err != nil {
		uc.Close()
		return nil, fmt.Errorf("mcast: %w", err)
	}
	c := &Conn{
		uc:     uc,
		raw:    raw,
		recv:   newReceiver(),
		pc:     ipv4.NewPacketConn(uc),
		cfg:    cfg,
		port:   uc.LocalAddr().(*net.UDPAddr).Port,
		log:    log,
		joined: make(map[netip.Addr]map[int]bool),
	}
	c.groups.Store(new(map[netip.Addr]struct{}))
	c.setIfaces(ifis)
	if err := c.setOptions(ttl); err != nil {
		uc.Close()
		return nil, err
	}
	if cfg.SendBuffer > 0 {
		if err := uc.SetWriteBuffer(cfg.SendBuffer); err != nil {
			uc.Close()
			return nil, fmt.Errorf("mcast: set send buffer: %w", err)
		}
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
	if err := c.pc.SetControlMessage(ipv4.FlagDst|ipv4.FlagInterface|ipv4.FlagTTL, true); err != nil {
		return fmt.Errorf("mcast: enable control messages: %w", err)
	}
	return nil
}

// chooseInterfaces resolves names, or picks the default set if names is
// empty, leaving out those named in exclude. strict makes a named
// interface that does not exist an error (at start) rather than skipped
// (on a rescan, when it may come back).
func chooseInterfaces(names, exclude []string, strict bool, log *slog.Logger) ([]*net.Interface, error) {
	if len(names) > 0 {
		var ifis []*net.Interface
		seen := make(map[int]bool)
		for _, name := range names {
			if slices.Contains(exclude, name) {
				continue
			}
			ifi, err := net.InterfaceByName(name)
			if err != nil {
				if strict {
					return nil, fmt.Errorf("mcast: interface %q: %w", name, err)
				}
				continue
			}
			if seen[ifi.Index] {
				continue
			}
			seen[ifi.Index] = true
			// A named interface is kept even if it is not ready yet: joins
			// on it fail and are reported then, with the reason, and are
			// retried by Rescan.
			if strict && (ifi.Flags&net.FlagUp == 0 || ifi.Flags&net.FlagMulticast == 0) {
				log.Warn("interface not up or not multicast-capable", "interface", name, "flags", ifi.Flags)
			}
			ifis = append(ifis, ifi)
		}
		if len(ifis) == 0 {
			return nil, ErrNoInterfaces
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
		if ifi.Flags&net.FlagUp == 0 || len(ipv4Addrs(ifi)) == 0 || slices.Contains(exclude, ifi.Name) {
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
	on := make(map[int]bool)
	var errs []error
	for _, ifc := range *c.ifaces.Load() {
		if err := c.pc.JoinGroup(ifc.ifi, gaddr); err != nil {
			errs = append(errs, fmt.Errorf("on %s: %w", ifc.ifi.Name, err))
			continue
		}
		on[ifc.ifi.Index] = true
	}
	if len(on) == 0 {
		return fmt.Errorf("mcast: join %v: %w", group, errors.Join(errs...))
	}
	for _, err := range errs {
		c.log.Warn("join failed on one interface; retried on each rescan", "group", group, "err", err)
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
	for index := range on {
		ifi := &net.Interface{Index: index}
		if err := c.pc.LeaveGroup(ifi, gaddr); err != nil {
			errs = append(errs, fmt.Errorf("mcast: leave %v on interface %d: %w", group, index, err))
		}
	}
	return errors.Join(errs...)
}

// setIfaces publishes the interfaces to send on, and the host's
// addresses: those of every interface, since the kernel may pick any of
// them as the source of a multicast datagram.
func (c *Conn) setIfaces(ifis []*net.Interface) {
	list := make([]iface, 0, len(ifis))
	for _, ifi := range ifis {
		cm := ipv4.ControlMessage{IfIndex: ifi.Index}
		list = append(list, iface{ifi: ifi, oob: cm.Marshal()})
	}
	local := make(map[netip.Addr]struct{})
	if addrs, err := net.InterfaceAddrs(); err == nil {
		for _, a := range addrs {
			if ipn, ok := a.(*net.IPNet); ok {
				if ip, ok := netip.AddrFromSlice(ipn.IP); ok {
					local[ip.Unmap()] = struct{}{}
				}
			}
		}
	}
	c.ifaces.Store(&list)
	c.local.Store(&local)
}

// Rescan brings the interfaces up to date: it picks them again as Listen
// did (a named interface that is missing is skipped rather than an
// error), joins every joined group on the new ones and on those where a
// join failed before, and leaves the groups on interfaces that are gone
// or no longer chosen. It returns the names of the interfaces added and
// removed.
func (c *Conn) Rescan() (added, removed []string, err error) {
	ifis, err := chooseInterfaces(c.cfg.Interfaces, c.cfg.Exclude, false, c.log)
	if err != nil {
		return nil, nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	old := make(map[int]string)
	for _, ifc := range *c.ifaces.Load() {
		old[ifc.ifi.Index] = ifc.ifi.Name
	}
	now := make(map[int]bool)
	for _, ifi := range ifis {
		now[ifi.Index] = true
		if _, ok := old[ifi.Index]; !ok {
			added = append(added, ifi.Name)
		}
	}
	for index, name := range old {
		if !now[index] {
			removed = append(removed, name)
		}
	}
	for group, on := range c.joined {
		gaddr := &net.UDPAddr{IP: group.AsSlice()}
		for index := range on {
			if !now[index] {
				// The interface may be gone, and its memberships with it.
				c.pc.LeaveGroup(&net.Interface{Index: index}, gaddr)
				delete(on, index)
			}
		}
		for _, ifi := range ifis {
			if on[ifi.Index] {
				continue
			}
			if err := c.pc.JoinGroup(ifi, gaddr); err != nil {
				// Debug: this repeats every rescan while the link is down.
				c.log.Debug("join failed", "group", group, "interface", ifi.Name, "err", err)
				continue
			}
			on[ifi.Index] = true
		}
	}
	c.setIfaces(ifis)
	return added, removed, nil
}

// Interfaces returns the indexes of the interfaces multicast goes out on.
func (c *Conn) Interfaces() []int {
	ifaces := *c.ifaces.Load()
	out := make([]int, len(ifaces))
	for i, ifc := range ifaces {
		out[i] = ifc.ifi.Index
	}
	return out
}

// IsLocal reports whether ap is this Conn's own port on one of its
// interfaces' addresses: a datagram from there is one this Conn (or
// another socket sharing its port on this host) multicast, looped back.
func (c *Conn) IsLocal(ap netip.AddrPort) bool {
	if int(ap.Port()) != c.port {
		return false
	}
	_, ok := (*c.local.Load())[ap.Addr().Unmap()]
	return ok
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
	return c.WriteToTTL(b, dst, 0, 0)
}

// WriteToTTL is WriteTo with an IP TTL for this datagram alone (0: the
// socket's TTL; Linux only, elsewhere the socket's TTL is used), and, for
// multicast, out of the interface with index ifindex alone (0: every
// chosen interface).
func (c *Conn) WriteToTTL(b []byte, dst netip.AddrPort, ttl, ifindex int) error {
	if ttl < 0 || ttl > 255 {
		return fmt.Errorf("mcast: invalid TTL %d", ttl)
	}
	ip := dst.Addr().Unmap()
	if !ip.Is4() {
		return fmt.Errorf("mcast: write to %v: %w", dst, errNotIPv4)
	}
	dst = netip.AddrPortFrom(ip, dst.Port())
	if !ip.IsMulticast() {
		if _, _, err := c.uc.WriteMsgUDPAddrPort(b, ttlControl(nil, ttl), dst); err != nil {
			return fmt.Errorf("mcast: %w", err)
		}
		return nil
	}
	var errs []error
	tried := 0
	for _, ifc := range *c.ifaces.Load() {
		if ifindex != 0 && ifc.ifi.Index != ifindex {
			continue
		}
		tried++
		oob := ifc.oob
		if ttl != 0 {
			oob = ttlControl(slices.Clip(oob), ttl)
		}
		_, _, err := c.uc.WriteMsgUDPAddrPort(b, oob, dst)
		if err != nil {
			errs = append(errs, fmt.Errorf("mcast: write to %v on %s: %w", dst, ifc.ifi.Name, err))
		}
	}
	if tried == 0 {
		return fmt.Errorf("mcast: write to %v: no interface %d", dst, ifindex)
	}
	if len(errs) == tried {
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
	m, err := c.ReadMsg(b)
	return m.N, m.Src, m.Dst, err
}

// Msg describes a datagram ReadMsg read.
type Msg struct {
	N       int            // bytes read into the buffer
	Src     netip.AddrPort // sender
	Dst     netip.Addr     // destination: the group for multicast; zero if not reported
	IfIndex int            // arrival interface; 0 if not reported
	TTL     int            // IP TTL left on arrival; 0 if not reported
}

// ReadMsg is ReadFrom that also reports the arrival interface and TTL.
func (c *Conn) ReadMsg(b []byte) (Msg, error) {
	// On the stack, so reads neither allocate nor share a buffer.
	var oob [oobSize]byte
	for {
		n, oobn, flags, src, err := c.recvMsg(b, oob[:])
		if err != nil {
			return Msg{}, fmt.Errorf("mcast: %w", err)
		}
		if flags&unix.MSG_TRUNC != 0 {
			c.truncated.Add(1)
			continue
		}
		m := parseControl(oob[:oobn])
		if m.Dst.IsMulticast() {
			if _, ok := (*c.groups.Load())[m.Dst]; !ok {
				c.filtered.Add(1)
				continue
			}
		}
		m.N, m.Src = n, src
		return m, nil
	}
}

// LocalAddrs returns the IPv4 addresses the chosen interfaces have now,
// which peers can use to reach this Conn by unicast.
func (c *Conn) LocalAddrs() []netip.Addr {
	var addrs []netip.Addr
	for _, ifc := range *c.ifaces.Load() {
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
