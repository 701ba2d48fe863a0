package daemon

import (
	"context"
	"sync"

	"meshd/ctl"
	"meshd/ctl/ctlserver"
	"meshd/rooms"
	"meshd/rooms/wire"
)

// Bounds of the event hub. A joined room keeps its newest events so that
// a front end that attaches late (meshctl tail) starts with the current
// state; a subscriber that falls further behind than its queue is cut off
// with an overflow event rather than silently skipped.
const (
	roomBacklog = 1000
	// roomBacklogText bounds the bytes of text of those events, beyond
	// the newest's: 1000 lines of 200 bytes fit, but 1000 of 16 KB
	// (wire.MaxText), which any member may say, would keep 16 MB a
	// joined room on a router whose budget is 16 MB in all.
	roomBacklogText = 256 << 10
	subscriberQueue = 4096
	// quietTail is how many slots a hosted room's ring keeps once its
	// log has caught up with it: a quiet room's one line at a time, not
	// the burst it last held.
	quietTail = 8
)

// hub fans events out to control API subscribers. Safe for concurrent use;
// publish never blocks.
//
// A joined room's snapshot comes from its backlog, a ring of its newest
// events. A hosted room's comes from its log (history), which holds those
// records anyway: a ring of them too was a second copy, 340 KB a busy room
// (ctl.Event and its text for each of 1000 lines), 3.4 MB for 10 busy
// rooms on a router whose budget is 16 MB in all. Its ring holds only the
// events published but maybe not yet in the log: the host delivers a
// record to its own user when it takes it, and logs it when the batch is
// flushed, up to busyFlushDelay later.
type hub struct {
	mu      sync.Mutex
	backlog map[string]*ring   // by room ref: sequenced events; a hosted room's not yet logged
	hosted  map[string]history // by room ref: hosted rooms' logs
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

// ring holds a room's newest events, at most roomBacklog of them and
// roomBacklogText bytes of their text. It is a ring, not a slice shifted
// down, because a busy room publishes thousands of events a second and
// each shift copied the whole backlog.
type ring struct {
	evs   []ctl.Event // slots: grown to roomBacklog at most, then reused
	start int         // the oldest event's slot
	n     int         // events held
	text  int         // bytes of their texts
}

func (r *ring) add(ev ctl.Event) {
	for r.n > 0 && (r.n == roomBacklog || r.text+len(ev.Text) > roomBacklogText) {
		r.dropOldest()
	}
	if r.n == len(r.evs) {
		r.resize(min(max(2*r.n, quietTail), roomBacklog))
	}
	r.evs[(r.start+r.n)%len(r.evs)] = ev
	r.n++
	r.text += len(ev.Text)
}

func (r *ring) dropOldest() {
	r.text -= len(r.evs[r.start].Text)
	r.evs[r.start] = ctl.Event{} // its text
	r.start = (r.start + 1) % len(r.evs)
	r.n--
}

// resize moves the events to size slots, oldest first.
func (r *ring) resize(size int) {
	evs := make([]ctl.Event, size)
	for i := range r.n {
		evs[i] = r.evs[(r.start+i)%len(r.evs)]
	}
	r.evs, r.start = evs, 0
}

// dropBefore lets go of the events before sequence number seq, and once
// none is left, of the slots a burst grew.
func (r *ring) dropBefore(seq uint64) {
	for r.n > 0 && r.evs[r.start].Seq < seq {
		r.dropOldest()
	}
	if r.n == 0 && len(r.evs) > quietTail {
		r.evs, r.start = nil, 0
	}
}

// oldest returns the oldest event held; the zero Event if none.
func (r *ring) oldest() ctl.Event {
	if r == nil || r.n == 0 {
		return ctl.Event{}
	}
	return r.evs[r.start]
}

// each calls f on the events, oldest first.
func (r *ring) each(f func(ctl.Event)) {
	if r == nil {
		return
	}
	for i := range r.n {
		f(r.evs[(r.start+i)%len(r.evs)])
	}
}

// history is a hosted room's log, read as events.
type history interface {
	// Oldest is the lowest sequence number held, 0 if none.
	Oldest() uint64
	// Next is one past the highest sequence number logged.
	Next() uint64
	// events calls f with the events of the records from..to-1 held,
	// oldest first.
	events(from, to uint64, f func(ctl.Event))
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
	return &hub{backlog: make(map[string]*ring), hosted: make(map[string]history), subs: make(map[*subscriber]struct{})}
}

// host makes room's snapshots come from its log, hs: the room is hosted
// here, and every event kept for it is of a record hs will hold.
func (h *hub) host(room string, hs history) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.hosted[room] = hs
	delete(h.backlog, room)
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
		if hs := h.hosted[ev.Room]; hs != nil {
			r.dropBefore(hs.Next())
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
		if s.direct != nil && s.direct.Full() {
			delete(h.subs, s)
			close(s.ch)
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

// forget drops a room's backlog, when this daemon leaves it or fails to
// host it.
func (h *hub) forget(room string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.backlog, room)
	delete(h.hosted, room)
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
	r, hs := h.backlog[room], h.hosted[room]
	// The oldest event held, and for a hosted room the end of what its
	// log holds of those published: before the ring's oldest (those not in
	// the ring were dropped once logged), or, with none in the ring, the
	// log's end now. The log is read after the lock: events published
	// meanwhile are live ones, and those it logs meanwhile are the ring's.
	oldest := r.oldest().Seq
	var logged uint64
	if initial && hs != nil {
		logged = hs.Next()
		if oldest != 0 {
			logged = oldest
		}
	}
	if initial {
		r.each(func(ev ctl.Event) {
			if ev.Seq > since {
				snap = append(snap, ev)
			}
		})
	}
	h.subs[s] = struct{}{}
	h.mu.Unlock()
	switch {
	case initial && hs != nil:
		snap = append(hostedSnapshot(hs, room, since, logged, oldest), snap...)
	case initial && since > 0 && oldest > since+1:
		snap = append([]ctl.Event{missed(room, since, oldest)}, snap...)
	}
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

// missed tells a reader resuming after since that the events before
// oldest, the oldest held, are no longer held: skipping them silently
// would look like a room that lost nothing.
func missed(room string, since, oldest uint64) ctl.Event {
	return ctl.Event{Kind: ctl.EventMissed, Room: room, Seq: since + 1, Through: oldest - 1}
}

// hostedSnapshot returns the events of hosted room's log after since and
// before logged, at most those of its newest roomBacklog records (as a
// joined room's ring holds; a log may keep a million), after a missed
// event if that no longer reaches back to since (or, logging nothing, the
// ring's oldest event, tail, does not).
func hostedSnapshot(hs history, room string, since, logged, tail uint64) []ctl.Event {
	var evs []ctl.Event
	var oldest uint64
	// The log lets its oldest segment go as it grows: a read it overtook
	// would stop short, so it is read again if its oldest moved meanwhile.
	for range 3 {
		logOldest := hs.Oldest()
		oldest = max(logOldest, logged-min(logged, roomBacklog))
		if logOldest == 0 || logOldest >= logged {
			oldest = tail
		}
		// The newest roomBacklogText bytes of text, as a ring keeps: the
		// events before them are let go as the read goes on.
		evs = evs[:0]
		first, text := 0, 0
		hs.events(max(since+1, oldest), logged, func(ev ctl.Event) {
			evs = append(evs, ev)
			text += len(ev.Text)
			for text > roomBacklogText && first < len(evs)-1 {
				text -= len(evs[first].Text)
				evs[first] = ctl.Event{}
				first++
			}
		})
		if first > 0 {
			oldest = evs[first].Seq
		}
		evs = evs[first:]
		if hs.Oldest() == logOldest {
			break
		}
	}
	if since > 0 && oldest > since+1 {
		return append([]ctl.Event{missed(room, since, oldest)}, evs...)
	}
	return evs
}

// logHistory reads a hosted room's store as the events its records made
// when they were delivered (Daemon.deliver).
type logHistory struct {
	// The store's log (roomStore, roomlog.Log).
	log interface {
		Read(from uint64, yield func(first uint64, count int, batch []byte) bool)
		Oldest() uint64
		Next() uint64
	}
	room string // ref
	fps  *fingerprints
}

func (l *logHistory) Oldest() uint64 { return l.log.Oldest() }
func (l *logHistory) Next() uint64   { return l.log.Next() }

func (l *logHistory) events(from, to uint64, f func(ctl.Event)) {
	var recs []wire.Record
	l.log.Read(from, func(first uint64, count int, batch []byte) bool {
		if first >= to {
			return false
		}
		// The log holds what this host signed: a batch it cannot parse
		// is one Open did not check, and is skipped.
		bt, err := wire.ParseBatch(batch, recs[:0])
		if err != nil {
			return true
		}
		recs = bt.Records
		for i := range recs {
			seq := first + uint64(i)
			if seq >= to {
				return false
			}
			if seq < from {
				continue
			}
			if ev, ok := recordEvent(l.room, seq, &recs[i], l.fps); ok {
				f(ev)
			}
		}
		return true
	})
}

// recordEvent is the event of a delivered record; false for a kind the
// API does not show.
func recordEvent(room string, seq uint64, rec *wire.Record, fps *fingerprints) (ctl.Event, bool) {
	ev := ctl.Event{Room: room, Seq: seq, Nick: rec.Nick, Text: rec.Text}
	switch rec.Kind {
	case wire.KindMessage:
		ev.Kind = ctl.EventMessage
	case wire.KindJoin:
		ev.Kind = ctl.EventJoin
	case wire.KindPart:
		ev.Kind = ctl.EventPart
	default:
		return ev, false
	}
	ev.Fingerprint = fps.get(rec.KeyID)
	return ev, true
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
