package daemon

import (
	"context"
	"sync"

	"meshd/ctl"
	"meshd/ctl/ctlserver"
	"meshd/rooms"
	"meshd/rooms/wire"
)

// Bounds of the event hub. A room keeps its newest events so that a
// front end that attaches late (meshctl tail) starts with the current
// state; a subscriber that falls further behind than its queue is cut off
// with an overflow event rather than silently skipped.
const (
	roomBacklog     = 1000
	subscriberQueue = 4096
)

// hub fans events out to control API subscribers. Safe for concurrent use;
// publish never blocks.
type hub struct {
	mu      sync.Mutex
	backlog map[string]*ring // by room ref: sequenced events
	subs    map[*subscriber]struct{}
	// held counts hold calls not yet released: while above 0, events the
	// subscribers' streams take wait for release to be sent.
	held int
	// offered is the event being offered to the streams: handing them a
	// pointer to publish's own copy would move that copy to the heap, an
	// allocation per line.
	offered ctl.Event
}

// offer returns ev in h.offered, for ctlserver.Direct.Take, which keeps
// no reference to it. The caller holds h.mu.
func (h *hub) offer(ev ctl.Event) *ctl.Event {
	h.offered = ev
	return &h.offered
}

// ring holds a room's newest roomBacklog events. It is a ring, not a
// slice shifted down, because a busy room publishes thousands of events a
// second and each shift copied the whole backlog.
type ring struct {
	evs   []ctl.Event // grows to roomBacklog, then wraps
	start int         // index of the oldest event once full
}

func (r *ring) add(ev ctl.Event) {
	if len(r.evs) < roomBacklog {
		r.evs = append(r.evs, ev)
		return
	}
	r.evs[r.start] = ev
	r.start = (r.start + 1) % roomBacklog
}

// oldest returns the oldest event held; the zero Event if none.
func (r *ring) oldest() ctl.Event {
	if len(r.evs) == 0 {
		return ctl.Event{}
	}
	return r.evs[r.start]
}

// each calls f on the events, oldest first.
func (r *ring) each(f func(ctl.Event)) {
	for i := range r.evs {
		f(r.evs[(r.start+i)%len(r.evs)])
	}
}

type subscriber struct {
	room string // "" for every room
	ch   chan ctl.Event
	// direct, if not nil, is offered each event before ch: the event
	// stream writing it on the publisher's goroutine.
	direct ctlserver.Direct
	// unsent: direct took events it has not been told to send (held).
	unsent bool
}

func newHub() *hub {
	return &hub{backlog: make(map[string]*ring), subs: make(map[*subscriber]struct{})}
}

// publish records a sequenced event in its room's backlog (when keep) and
// hands it to every subscriber that wants it. The hub's lock orders
// publishers, so each subscriber sees events in one order whichever way
// they reach it.
func (h *hub) publish(ev ctl.Event, keep bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if keep {
		r := h.backlog[ev.Room]
		if r == nil {
			r = &ring{}
			h.backlog[ev.Room] = r
		}
		r.add(ev)
	}
	for s := range h.subs {
		if s.room != "" && s.room != ev.Room {
			continue
		}
		if s.direct != nil && s.direct.Take(h.offer(ev)) {
			if h.held > 0 {
				s.unsent = true
			} else {
				s.direct.Send()
			}
			continue
		}
		select {
		case s.ch <- ev:
		default:
			// Cut the subscriber off: the server tells it why.
			delete(h.subs, s)
			close(s.ch)
		}
	}
}

// hold makes events published until release go to the event streams in
// one write per stream, not one per event: the data path holds the hub
// while it handles a packet, which may deliver a whole block of lines.
func (h *hub) hold() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.held++
}

// release ends a hold; the last one sends what the streams took meanwhile.
func (h *hub) release() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.held--; h.held > 0 {
		return
	}
	for s := range h.subs {
		if s.unsent {
			s.unsent = false
			s.direct.Send()
		}
	}
}

// forget drops a room's backlog, when this daemon leaves it.
func (h *hub) forget(room string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.backlog, room)
}

// subscribe returns the room's held events after since (when initial) and
// a channel of live events, closed when ctx ends or the subscriber falls
// behind. The snapshot and the subscription are taken under one lock, so
// no event falls between them. direct, if not nil, is offered each live
// event first, under the hub's lock; an event it takes does not go on the
// channel.
func (h *hub) subscribe(ctx context.Context, room string, since uint64, initial bool, direct ctlserver.Direct) ([]ctl.Event, <-chan ctl.Event) {
	s := &subscriber{room: room, ch: make(chan ctl.Event, subscriberQueue), direct: direct}
	h.mu.Lock()
	var snap []ctl.Event
	if r := h.backlog[room]; initial && r != nil {
		// A reader resuming from an event the ring no longer holds is told
		// which it missed: skipping them silently would look like a room
		// that lost nothing.
		if oldest := r.oldest(); since > 0 && oldest.Seq > since+1 {
			snap = append(snap, ctl.Event{Kind: ctl.EventMissed, Room: oldest.Room, Seq: since + 1, Through: oldest.Seq - 1})
		}
		r.each(func(ev ctl.Event) {
			if ev.Seq > since {
				snap = append(snap, ev)
			}
		})
	}
	h.subs[s] = struct{}{}
	h.mu.Unlock()
	context.AfterFunc(ctx, func() {
		h.mu.Lock()
		defer h.mu.Unlock()
		if _, ok := h.subs[s]; ok {
			delete(h.subs, s)
			close(s.ch)
		}
	})
	return snap, s.ch
}

// maxFingerprints bounds the fingerprints cache: rooms with more senders
// than this start it afresh.
const maxFingerprints = 1024

// fingerprints caches rooms.KeyIDFingerprint for the events of delivered
// lines: a room's lines come from a few senders, and encoding the
// fingerprint of each line's cost an allocation and a base32 encoding.
type fingerprints struct {
	mu sync.Mutex
	m  map[[wire.KeyIDLen]byte]string
}

func (f *fingerprints) get(id [wire.KeyIDLen]byte) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if fp, ok := f.m[id]; ok {
		return fp
	}
	if f.m == nil || len(f.m) >= maxFingerprints {
		f.m = make(map[[wire.KeyIDLen]byte]string)
	}
	fp := rooms.KeyIDFingerprint(id)
	f.m[id] = fp
	return fp
}
