// Package memnet is an in-memory multicast network for tests.
//
// A Network connects Conns that have the method set of mcast.Conn, so code
// written against an interface satisfied by mcast.Conn runs unchanged on
// it. Delivery imitates IPv4 UDP multicast on one link: a datagram sent to
// a group reaches every Conn on the destination port that joined the group,
// the sender included (as with IP_MULTICAST_LOOP); a unicast datagram
// reaches the Conn bound to the destination address and port. Each Conn
// has a bounded receive queue that drops when full, like a socket buffer.
//
// Loss, duplication and reordering are drawn from a random source seeded
// by New, so a run is reproducible as long as the sequence of WriteTo
// calls is: draws happen inside WriteTo, in the order the receivers were
// created.
package memnet

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"sync"
)

// DefaultQueueLen is the receive queue length of a Conn when
// Network.QueueLen is zero.
const DefaultQueueLen = 256

// firstEphemeralPort is where Listen starts picking ports for port 0, as
// the IANA dynamic range does.
const firstEphemeralPort = 49152

var errClosed = fmt.Errorf("memnet: %w", net.ErrClosed)

// Network is a simulated link. Its exported fields must be set before the
// first WriteTo and not changed while Conns are in use; SetLoss may be
// called at any time. Methods are safe for concurrent use.
type Network struct {
	// Loss is the probability that a datagram is lost on its way to one
	// receiver, unless SetLoss overrides it for that receiver.
	Loss float64
	// Duplicate is the probability that a receiver gets a datagram twice.
	Duplicate float64
	// Reorder is the probability that a datagram is held back and
	// delivered right after the next datagram to the same receiver.
	// Flush releases datagrams that are still held.
	Reorder float64
	// QueueLen is the receive queue length of Conns created afterwards;
	// zero means DefaultQueueLen.
	QueueLen int

	mu       sync.Mutex
	rng      *rand.Rand
	conns    []*Conn // in Listen order, which fixes the order of random draws
	loss     map[netip.Addr]float64
	nextPort int
	stats    Stats
}

// Stats counts what a Network did to datagrams, per receiver: a datagram
// multicast to three Conns counts as three deliveries.
type Stats struct {
	Deliveries uint64 // datagrams offered to a receiver
	Lost       uint64
	Duplicated uint64
	Reordered  uint64
	Dropped    uint64 // arrived at a full queue
}

// Counters counts datagrams a Conn dropped; see mcast.Counters.
type Counters struct {
	// Filtered counts datagrams for a group the Conn left while they
	// were queued.
	Filtered uint64
	// Truncated counts datagrams longer than the buffer given to ReadFrom.
	Truncated uint64
	// Dropped counts datagrams that arrived at a full receive queue.
	Dropped uint64
}

// New returns a Network whose random draws are seeded by seed.
func New(seed uint64) *Network {
	return &Network{
		rng:      rand.New(rand.NewPCG(seed, seed)),
		loss:     make(map[netip.Addr]float64),
		nextPort: firstEphemeralPort,
	}
}

// SetLoss sets the loss probability of datagrams to Conns with address
// addr, replacing Loss for them.
func (n *Network) SetLoss(addr netip.Addr, p float64) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.loss[addr.Unmap()] = p
}

// Stats returns the counts so far.
func (n *Network) Stats() Stats {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.stats
}

// Flush delivers the datagrams that Reorder is holding back.
func (n *Network) Flush() {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, c := range n.conns {
		c.releaseLocked()
	}
}

// Listen returns a Conn bound to addr and port; port 0 picks an unused
// port. It panics if addr is not IPv4 unicast or addr and port are taken, which
// is a bug in the test.
func (n *Network) Listen(addr netip.Addr, port int) *Conn {
	addr = addr.Unmap()
	if !addr.Is4() || addr.IsMulticast() {
		panic(fmt.Sprintf("memnet: Listen on %v: not an IPv4 unicast address", addr))
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if port == 0 {
		for n.boundLocked(addr, n.nextPort) {
			n.nextPort++
		}
		port = n.nextPort
		n.nextPort++
	}
	if port < 0 || port > 65535 || n.boundLocked(addr, port) {
		panic(fmt.Sprintf("memnet: Listen on %v: port %d invalid or in use", addr, port))
	}
	queueLen := n.QueueLen
	if queueLen == 0 {
		queueLen = DefaultQueueLen
	}
	c := &Conn{
		net:    n,
		addr:   addr,
		port:   port,
		queue:  make(chan packet, queueLen),
		done:   make(chan struct{}),
		groups: make(map[netip.Addr]bool),
	}
	n.conns = append(n.conns, c)
	return c
}

func (n *Network) boundLocked(addr netip.Addr, port int) bool {
	return slices.ContainsFunc(n.conns, func(c *Conn) bool { return c.addr == addr && c.port == port })
}

// deliverLocked offers p to c, applying loss, duplication and reordering.
func (n *Network) deliverLocked(c *Conn, p packet) {
	n.stats.Deliveries++
	loss, ok := n.loss[c.addr]
	if !ok {
		loss = n.Loss
	}
	if n.rng.Float64() < loss {
		n.stats.Lost++
		return
	}
	copies := 1
	if n.rng.Float64() < n.Duplicate {
		n.stats.Duplicated++
		copies = 2
	}
	for range copies {
		if c.held == nil && n.rng.Float64() < n.Reorder {
			n.stats.Reordered++
			c.held = &p
			continue
		}
		c.enqueueLocked(p)
		c.releaseLocked()
	}
}

type packet struct {
	data []byte // shared by all receivers, never modified
	src  netip.AddrPort
	dst  netip.Addr
}

// Conn is one endpoint on a Network, with the method set of mcast.Conn.
// It is safe for concurrent use.
type Conn struct {
	net   *Network
	addr  netip.Addr
	port  int
	queue chan packet
	done  chan struct{} // closed by Close

	// Guarded by net.mu.
	groups   map[netip.Addr]bool
	held     *packet // held back by Reorder
	closed   bool
	counters Counters
}

// JoinGroup joins group. Joining a group twice is a no-op.
func (c *Conn) JoinGroup(group netip.Addr) error {
	group = group.Unmap()
	if !group.Is4() || !group.IsMulticast() {
		return fmt.Errorf("memnet: join %v: not an IPv4 multicast address", group)
	}
	c.net.mu.Lock()
	defer c.net.mu.Unlock()
	if c.closed {
		return errClosed
	}
	c.groups[group] = true
	return nil
}

// LeaveGroup leaves group. Leaving a group that is not joined is a no-op.
func (c *Conn) LeaveGroup(group netip.Addr) error {
	c.net.mu.Lock()
	defer c.net.mu.Unlock()
	if c.closed {
		return errClosed
	}
	delete(c.groups, group.Unmap())
	return nil
}

// WriteTo sends a copy of b to dst.
func (c *Conn) WriteTo(b []byte, dst netip.AddrPort) error {
	ip := dst.Addr().Unmap()
	if !ip.Is4() {
		return fmt.Errorf("memnet: write to %v: not an IPv4 address", dst)
	}
	n := c.net
	n.mu.Lock()
	defer n.mu.Unlock()
	if c.closed {
		return errClosed
	}
	p := packet{data: bytes.Clone(b), src: netip.AddrPortFrom(c.addr, uint16(c.port)), dst: ip}
	for _, r := range n.conns {
		if r.port != int(dst.Port()) {
			continue
		}
		if ip.IsMulticast() && r.groups[ip] || r.addr == ip {
			n.deliverLocked(r, p)
		}
	}
	return nil
}

// ReadFrom blocks until a datagram arrives and copies it into b. Like
// mcast.Conn.ReadFrom, it skips datagrams longer than b and datagrams for
// groups left since they were queued. After Close it returns an error
// wrapping net.ErrClosed.
func (c *Conn) ReadFrom(b []byte) (n int, src netip.AddrPort, dst netip.Addr, err error) {
	for {
		// Checked first because select picks randomly among ready cases.
		select {
		case <-c.done:
			return 0, netip.AddrPort{}, netip.Addr{}, errClosed
		default:
		}
		select {
		case p := <-c.queue:
			if c.skip(p, len(b)) {
				continue
			}
			return copy(b, p.data), p.src, p.dst, nil
		case <-c.done:
			return 0, netip.AddrPort{}, netip.Addr{}, errClosed
		}
	}
}

// skip reports whether ReadFrom drops p, counting it if so.
func (c *Conn) skip(p packet, bufLen int) bool {
	c.net.mu.Lock()
	defer c.net.mu.Unlock()
	switch {
	case len(p.data) > bufLen:
		c.counters.Truncated++
	case p.dst.IsMulticast() && !c.groups[p.dst]:
		c.counters.Filtered++
	default:
		return false
	}
	return true
}

func (c *Conn) enqueueLocked(p packet) {
	select {
	case c.queue <- p:
	default:
		c.counters.Dropped++
		c.net.stats.Dropped++
	}
}

func (c *Conn) releaseLocked() {
	if c.held != nil {
		c.enqueueLocked(*c.held)
		c.held = nil
	}
}

// LocalAddrs returns the address c is bound to.
func (c *Conn) LocalAddrs() []netip.Addr { return []netip.Addr{c.addr} }

// LocalPort returns the port c is bound to.
func (c *Conn) LocalPort() int { return c.port }

// Counters returns the counts of datagrams c dropped.
func (c *Conn) Counters() Counters {
	c.net.mu.Lock()
	defer c.net.mu.Unlock()
	return c.counters
}

// Close detaches c from the network and makes pending and future ReadFrom
// calls return. Close is idempotent.
func (c *Conn) Close() error {
	n := c.net
	n.mu.Lock()
	defer n.mu.Unlock()
	if c.closed {
		return nil
	}
	c.closed = true
	c.held = nil
	n.conns = slices.DeleteFunc(n.conns, func(x *Conn) bool { return x == c })
	close(c.done)
	return nil
}
