// Package poller waits for many idle connections to have input without a
// goroutine each. A room's host keeps hundreds of sessions, most of them
// idle between a member's once-a-second acks, and a goroutine blocked
// reading costs at least a 4 KiB stack (the runtime's floor for one parked
// in the network poller): 2.7 MiB for 500 sessions, a sixth of a router's
// budget. Here an idle connection is an entry in one epoll instance
// (linux), and a goroutine reads it only while it has input.
//
// The protocol for an entry's owner: Add it (the caller owns it, as if it
// were running), read while Park reports input, and once Park has parked
// it stop touching it: ready is called, on the poller's goroutine, when
// the connection has input, or when Wake is called after the connection
// was closed on this side (which the kernel does not report). ready must
// not block: it hands the entry to a goroutine that reads and parks it
// again. Only one party owns an entry at a time, so its reads need no
// lock, and since every owner ends by parking (which looks at the
// connection again) or by removing the entry, no wake-up is lost.
//
// Where there is no epoll, or the instance cannot be made, each parked
// entry waits on a goroutine of its own in the runtime's poller (the same
// goroutine per connection as a blocking reader, on a shallow stack).
//
// It imports nothing of meshd.
package poller

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"syscall"
)

// Entry states. An entry is owned by its reader while running, by the
// poller while parked; ready is called by whoever moves it from parked to
// running.
const (
	running int32 = iota
	parked
	removed
)

// Poller watches parked entries for input. Safe for concurrent use.
type Poller struct {
	ep      *epoll         // nil: a goroutine per parked entry (fallback)
	waiters sync.WaitGroup // the fallback's, each until its connection has input or is closed

	mu      sync.Mutex
	entries map[uint64]*Entry // by id: the epoll instance reports ids, never descriptors
	nextID  uint64
}

// New returns a poller; its caller runs Run on a goroutine of its own and
// calls Close once every entry's connection is closed and Run has
// returned.
func New() (*Poller, error) {
	ep, err := newEpoll()
	if err != nil && !errors.Is(err, errors.ErrUnsupported) {
		return nil, err
	}
	return newPoller(ep), nil
}

func newPoller(ep *epoll) *Poller {
	return &Poller{ep: ep, entries: make(map[uint64]*Entry)}
}

// Run reports input on parked entries until ctx ends.
func (p *Poller) Run(ctx context.Context) error {
	if p.ep == nil {
		<-ctx.Done()
		return nil
	}
	return p.ep.run(ctx, p.fire)
}

// Close releases the epoll instance; without one, it waits for the
// goroutines that wait on parked entries, which end once their
// connections are closed.
func (p *Poller) Close() error {
	if p.ep == nil {
		p.waiters.Wait()
		return nil
	}
	return p.ep.close()
}

// fire hands the entry of id, if it is still known and parked, to its
// ready function. An entry that is running or gone is left alone: its
// owner parks it again (and so looks at the connection again) or removes
// it.
func (p *Poller) fire(id uint64) {
	p.mu.Lock()
	e := p.entries[id]
	p.mu.Unlock()
	if e != nil {
		e.take()
	}
}

// Entry is one connection known to a Poller.
type Entry struct {
	p     *Poller
	id    uint64
	rc    syscall.RawConn
	ready func()
	state atomic.Int32

	// Made once: a closure passed to RawConn.Control escapes, and these
	// run for every frame a session reads.
	peek     func(fd uintptr)
	arm      func(fd uintptr)
	input    bool // peek's finding
	peekByte [1]byte
}

// Add registers the connection rc; ready is called each time the entry,
// parked, has input or is woken. The entry starts out owned by the caller,
// not parked.
func (p *Poller) Add(rc syscall.RawConn, ready func()) (*Entry, error) {
	e := &Entry{p: p, rc: rc, ready: ready}
	e.peek = func(fd uintptr) {
		_, _, err := syscall.Recvfrom(int(fd), e.peekByte[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		e.input = err != syscall.EAGAIN && err != syscall.EINTR
	}
	p.mu.Lock()
	p.nextID++
	e.id = p.nextID
	p.entries[e.id] = e
	p.mu.Unlock()
	if p.ep != nil {
		e.arm = func(fd uintptr) {
			if p.ep.arm(int(fd), e.id) != nil {
				// Not armed (the descriptor is open, so the instance is
				// short of memory): its reader tries again.
				e.take()
			}
		}
		var err error
		if cerr := rc.Control(func(fd uintptr) { err = p.ep.add(int(fd), e.id) }); cerr != nil {
			err = cerr
		}
		if err != nil {
			e.Remove()
			return nil, err
		}
	}
	return e, nil
}

// Park gives the entry to the poller if its connection has no input, and
// reports whether it did; from then on the caller must not touch the
// entry until ready is called. If the connection has input, has ended or
// was closed, Park returns false and the caller keeps the entry: its next
// read returns the input, or the error.
func (e *Entry) Park() bool {
	if err := e.rc.Control(e.peek); err != nil || e.input {
		return false
	}
	e.state.Store(parked)
	if e.p.ep == nil {
		e.p.waiters.Go(e.wait)
		return true
	}
	// Armed after the state is set, so that input arriving at once finds
	// the entry parked; level-triggered, so that input that arrived since
	// the peek is reported at once. Once armed the entry may already be
	// another reader's: nothing here looks at it again.
	if err := e.rc.Control(e.arm); err != nil {
		// Closed since the peek: its reader finds out.
		e.take()
	}
	return true
}

// wait is the fallback's wait for input on a parked entry, in the
// runtime's poller; it ends when the connection has input or is closed.
func (e *Entry) wait() {
	var b [1]byte
	e.rc.Read(func(fd uintptr) bool {
		_, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		return err != syscall.EAGAIN
	})
	e.take()
}

// Wake calls ready if the entry is parked. Its owner calls it after
// closing the connection, which the poller does not see, so that the
// entry's reader finds the connection closed and ends.
func (e *Entry) Wake() { e.take() }

func (e *Entry) take() {
	if e.state.CompareAndSwap(parked, running) {
		e.ready()
	}
}

// Remove forgets the entry; ready is not called again. Its connection
// must be closed, or no longer parked.
func (e *Entry) Remove() {
	e.state.Store(removed)
	e.p.mu.Lock()
	delete(e.p.entries, e.id)
	e.p.mu.Unlock()
	if e.p.ep != nil {
		// A connection closed already left the instance with its
		// descriptor.
		e.rc.Control(func(fd uintptr) { e.p.ep.remove(int(fd)) })
	}
}
