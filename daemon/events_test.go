package daemon

import (
	"cmp"
	"context"
	"slices"
	"strings"
	"testing"

	"meshd/ctl"
	"meshd/rooms"
	"meshd/rooms/roomlog"
	"meshd/rooms/wire"
)

// TestHubBacklog: a room keeps its newest roomBacklog events, oldest
// first, and a subscriber gets those after since, then live events.
func TestHubBacklog(t *testing.T) {
	h := newHub()
	const n = roomBacklog + 250
	for seq := uint64(1); seq <= n; seq++ {
		h.publish(ctl.Event{Kind: ctl.EventMessage, Room: "r", Seq: seq}, true)
		h.publish(ctl.Event{Kind: ctl.EventMessage, Room: "other", Seq: seq}, seq%2 == 0)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for _, since := range []uint64{0, n - roomBacklog, n - 10, n} {
		snap, _ := h.subscribe(ctx, "r", since, true, nil)
		want := min(uint64(roomBacklog), n-since)
		if uint64(len(snap)) != want {
			t.Fatalf("since %d: %d events, want %d", since, len(snap), want)
		}
		for i, ev := range snap {
			if ev.Seq != n-want+1+uint64(i) || ev.Room != "r" {
				t.Fatalf("since %d: event %d is %s #%d, want r #%d", since, i, ev.Room, ev.Seq, n-want+1+uint64(i))
			}
		}
	}
	// A reader resuming from before the backlog is told what it missed.
	const oldest = n - roomBacklog + 1
	for _, since := range []uint64{1, oldest - 2} {
		snap, _ := h.subscribe(ctx, "r", since, true, nil)
		if len(snap) != roomBacklog+1 {
			t.Fatalf("since %d: %d events, want the missed marker and %d", since, len(snap), roomBacklog)
		}
		want := ctl.Event{Kind: ctl.EventMissed, Room: "r", Seq: since + 1, Through: oldest - 1}
		if snap[0] != want {
			t.Errorf("since %d: first event %+v, want %+v", since, snap[0], want)
		}
		if snap[1].Seq != oldest {
			t.Errorf("since %d: then #%d, want #%d", since, snap[1].Seq, oldest)
		}
	}
	if snap, _ := h.subscribe(ctx, "r", 0, false, nil); snap != nil {
		t.Errorf("without initial: %d events", len(snap))
	}
	_, live := h.subscribe(ctx, "r", 0, false, nil)
	h.publish(ctl.Event{Kind: ctl.EventReceipt, Room: "other"}, false)
	h.publish(ctl.Event{Kind: ctl.EventReceipt, Room: "r", Seq: 7}, false)
	if ev := <-live; ev.Seq != 7 || ev.Room != "r" {
		t.Errorf("live event %+v, want r's receipt #7", ev)
	}
	h.forget("r")
	if snap, _ := h.subscribe(ctx, "r", 0, true, nil); len(snap) != 0 {
		t.Errorf("after forget: %d events", len(snap))
	}
}

// TestHubOverflow: a subscriber that falls a whole queue behind is cut
// off (its channel closed), never blocking publish.
func TestHubOverflow(t *testing.T) {
	h := newHub()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	_, live := h.subscribe(ctx, "", 0, false, nil)
	for seq := uint64(1); seq <= subscriberQueue+1; seq++ {
		h.publish(ctl.Event{Kind: ctl.EventMessage, Room: "r", Seq: seq}, true)
	}
	got := 0
	for range live {
		got++
	}
	if got != subscriberQueue {
		t.Errorf("%d events before the cut, want %d", got, subscriberQueue)
	}
}

// fakeDirect takes the events whose seq is not a multiple of 3 and
// records what it took and when it was told to send.
type fakeDirect struct {
	took, sent []uint64
	full       bool // what Full reports
}

func (f *fakeDirect) Take(ev *ctl.Event) bool {
	if ev.Seq%3 == 0 {
		return false
	}
	f.took = append(f.took, ev.Seq)
	return true
}

func (f *fakeDirect) Send() { f.sent = append(f.sent, f.took[len(f.took)-1]) }

func (f *fakeDirect) Full() bool { return f.full }

// directSubscriber returns a hub and the fakeDirect and channel of a live
// subscription to room "r", ended with the test.
func directSubscriber(t *testing.T) (*hub, *fakeDirect, <-chan ctl.Event) {
	h := newHub()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	d := &fakeDirect{}
	_, live := h.subscribe(ctx, "r", 0, false, d)
	return h, d, live
}

// TestHubDirectFull: once the events a stream declined hold all the text
// it may keep waiting (Full), the next one it declines ends its
// subscription as fallen behind, rather than joins the queue.
func TestHubDirectFull(t *testing.T) {
	h, d, live := directSubscriber(t)
	h.publish(ctl.Event{Kind: ctl.EventMessage, Room: "r", Seq: 3}, true)
	d.full = true
	h.publish(ctl.Event{Kind: ctl.EventMessage, Room: "r", Seq: 4}, true) // taken: still live
	h.publish(ctl.Event{Kind: ctl.EventMessage, Room: "r", Seq: 6}, true)
	if ev, ok := <-live; !ok || ev.Seq != 3 {
		t.Fatalf("first queued event %+v (%v), want #3", ev, ok)
	}
	if ev, ok := <-live; ok {
		t.Errorf("after the stream was full, %+v queued, want the subscription ended", ev)
	}
}

// TestHubDirect: an event the subscriber's stream takes does not go on
// its channel; one it declines does, and later events keep their order.
// Outside a hold each taken event is sent at once; in one, all of them at
// the end.
func TestHubDirect(t *testing.T) {
	h, d, live := directSubscriber(t)
	for seq := uint64(1); seq <= 4; seq++ {
		h.publish(ctl.Event{Kind: ctl.EventMessage, Room: "r", Seq: seq}, true)
	}
	h.hold()
	for seq := uint64(5); seq <= 9; seq++ {
		h.publish(ctl.Event{Kind: ctl.EventMessage, Room: "r", Seq: seq}, true)
	}
	h.publish(ctl.Event{Kind: ctl.EventMessage, Room: "other", Seq: 10}, true)
	if want := []uint64{1, 2, 4}; !slices.Equal(d.sent, want) {
		t.Errorf("sent after %v during a hold, want %v", d.sent, want)
	}
	h.release()
	if want := []uint64{1, 2, 4, 5, 7, 8}; !slices.Equal(d.took, want) {
		t.Errorf("took %v, want %v", d.took, want)
	}
	if want := []uint64{1, 2, 4, 8}; !slices.Equal(d.sent, want) {
		t.Errorf("sent after %v, want %v", d.sent, want)
	}
	for _, want := range []uint64{3, 6, 9} {
		if ev := <-live; ev.Seq != want {
			t.Errorf("queued #%d, want #%d", ev.Seq, want)
		}
	}
	if len(live) != 0 {
		t.Errorf("%d more events queued", len(live))
	}
}

// TestFingerprints: the cache answers as rooms.KeyIDFingerprint does,
// stays within its bound, and makes no allocation for a known sender.
func TestFingerprints(t *testing.T) {
	var f fingerprints
	for i := range maxFingerprints + 10 {
		id := [wire.KeyIDLen]byte{byte(i), byte(i >> 8), 7}
		if got, want := f.get(id), rooms.KeyIDFingerprint(id); got != want {
			t.Fatalf("fingerprint of %x = %q, want %q", id, got, want)
		}
		if len(f.m) > maxFingerprints {
			t.Fatalf("%d fingerprints cached, bound %d", len(f.m), maxFingerprints)
		}
	}
	id := [wire.KeyIDLen]byte{1, 2, 3}
	f.get(id)
	if n := testing.AllocsPerRun(100, func() { f.get(id) }); n != 0 {
		t.Errorf("a known sender's fingerprint: %v allocations, want 0", n)
	}
}

func BenchmarkHubPublish(b *testing.B) {
	h := newHub()
	ev := ctl.Event{Kind: ctl.EventMessage, Room: "general@abcd", Nick: "alice", Text: "hello"}
	for i := range b.N {
		ev.Seq = uint64(i)
		h.publish(ev, true)
	}
}

// fakeHistory is a hosted room's log of message events: seqs
// oldest..next-1, all of them messages. onRead, if set, runs before
// each read.
type fakeHistory struct {
	oldest, next uint64
	text         string // of each record's event; "" for "logged"
	onRead       func()
	reads        int
}

func (f *fakeHistory) Oldest() uint64 { return f.oldest }
func (f *fakeHistory) Next() uint64   { return f.next }

func (f *fakeHistory) events(from, to uint64, yield func(ctl.Event)) {
	f.reads++
	if f.onRead != nil {
		f.onRead()
	}
	text := cmp.Or(f.text, "logged")
	for seq := max(from, f.oldest); seq < min(to, f.next); seq++ {
		yield(ctl.Event{Kind: ctl.EventMessage, Room: "r", Seq: seq, Text: text})
	}
}

func seqs(evs []ctl.Event) []uint64 {
	var s []uint64
	for _, ev := range evs {
		s = append(s, ev.Seq)
	}
	return s
}

// TestHubBacklogText: a room's backlog holds its newest events up to
// roomBacklogText bytes of their text, as a ring for a joined room and as
// a snapshot of its log for a hosted one, and a reader from before them
// is told what it missed: 1000 lines of 16 KB, which any member may say,
// would have kept 16 MB a room.
func TestHubBacklogText(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	long := strings.Repeat("x", wire.MaxText)
	const fit = roomBacklogText / wire.MaxText
	check := func(what string, h *hub, last uint64) {
		t.Helper()
		snap, _ := h.subscribe(ctx, "r", 0, true, nil)
		if len(snap) != fit || snap[0].Seq != last-fit+1 || snap[fit-1].Seq != last {
			t.Errorf("%s, since 0: %v, want the newest %d, to #%d", what, seqs(snap), fit, last)
		}
		snap, _ = h.subscribe(ctx, "r", 1, true, nil)
		if want := (ctl.Event{Kind: ctl.EventMissed, Room: "r", Seq: 2, Through: last - fit}); len(snap) != fit+1 || snap[0] != want {
			t.Errorf("%s, since 1: first of %d events %+v, want %+v", what, len(snap), snap[0], want)
		}
	}

	joined := newHub()
	for seq := uint64(1); seq <= 100; seq++ {
		joined.publish(ctl.Event{Kind: ctl.EventMessage, Room: "r", Seq: seq, Text: long}, true)
	}
	check("a joined room's 100 lines of 16 KB", joined, 100)
	if r := joined.backlog["r"]; r.text > roomBacklogText {
		t.Errorf("ring holds %d bytes of text, want at most %d", r.text, roomBacklogText)
	}
	// Short lines after long ones take their places one for one and
	// more: the ring is bound by its count again.
	for seq := uint64(101); seq <= 100+2*roomBacklog; seq++ {
		joined.publish(ctl.Event{Kind: ctl.EventMessage, Room: "r", Seq: seq, Text: "hi"}, true)
	}
	if snap, _ := joined.subscribe(ctx, "r", 0, true, nil); len(snap) != roomBacklog {
		t.Errorf("after short lines: %d events, want %d", len(snap), roomBacklog)
	}

	hosted := newHub()
	hosted.host("r", &fakeHistory{oldest: 1, next: 101, text: long})
	check("a hosted room's log of 100 lines of 16 KB", hosted, 100)
}

// TestHubHosted: a hosted room's ring holds only the events its log may
// not hold yet, and lets go of a burst's slots once the log has caught
// up; a snapshot is the log's events and then the ring's, each sequence
// number once, with a missed event where the log no longer reaches.
func TestHubHosted(t *testing.T) {
	h := newHub()
	fh := &fakeHistory{oldest: 1, next: 1}
	h.host("r", fh)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pub := func(from, to uint64) {
		for seq := from; seq <= to; seq++ {
			h.publish(ctl.Event{Kind: ctl.EventMessage, Room: "r", Seq: seq, Text: "live"}, true)
		}
	}
	ring := func() *ring {
		h.mu.Lock()
		defer h.mu.Unlock()
		return h.backlog["r"]
	}
	pub(1, 40)
	fh.next = 38 // 1..37 logged
	pub(41, 41)
	if r := ring(); r.n != 4 || r.oldest().Seq != 38 {
		t.Fatalf("ring holds %d events from #%d, want 4 from #38: the logged ones are the log's", r.n, r.oldest().Seq)
	}
	snap, _ := h.subscribe(ctx, "r", 0, true, nil)
	if len(snap) != 41 {
		t.Fatalf("snapshot %v, want 1..41", seqs(snap))
	}
	for i, ev := range snap {
		text := "logged"
		if ev.Seq >= 38 {
			text = "live"
		}
		if ev.Seq != uint64(i+1) || ev.Text != text {
			t.Fatalf("snapshot event %d is #%d %q, want #%d %q", i, ev.Seq, ev.Text, i+1, text)
		}
	}
	if snap, _ := h.subscribe(ctx, "r", 39, true, nil); !slices.Equal(seqs(snap), []uint64{40, 41}) {
		t.Errorf("since 39: %v, want [40 41]", seqs(snap))
	}

	// The log catches up: the next event leaves the ring alone, in a
	// quiet room's few slots.
	fh.next = 42
	pub(42, 42)
	if r := ring(); r.n != 1 || len(r.evs) > quietTail {
		t.Errorf("after the log caught up: %d events in %d slots, want 1 in at most %d", r.n, len(r.evs), quietTail)
	}
	// With the ring's events all logged, the snapshot reads the log up to
	// its end, and the ring's from there.
	fh.next = 43
	if snap, _ := h.subscribe(ctx, "r", 40, true, nil); !slices.Equal(seqs(snap), []uint64{41, 42}) || snap[1].Text != "live" {
		t.Errorf("since 40 with the ring logged: %v, want [41 42], #42 from the ring", seqs(snap))
	}

	// The log let its oldest go: a reader from before is told.
	fh.oldest = 30
	snap, _ = h.subscribe(ctx, "r", 10, true, nil)
	if len(snap) != 14 || snap[0] != (ctl.Event{Kind: ctl.EventMissed, Room: "r", Seq: 11, Through: 29}) || snap[1].Seq != 30 {
		t.Errorf("since 10, log from 30: %v (first %+v), want missed 11..29 then 30..42", seqs(snap), snap[0])
	}
	if snap, _ := h.subscribe(ctx, "r", 29, true, nil); len(snap) != 13 || snap[0].Seq != 30 {
		t.Errorf("since 29, log from 30: %v, want 30..42 and no missed", seqs(snap))
	}

	// The log lets its oldest go while it is read: read again.
	fh.reads = 0
	fh.onRead = func() {
		if fh.reads == 1 {
			fh.oldest = 35
		}
	}
	snap, _ = h.subscribe(ctx, "r", 31, true, nil)
	if fh.reads != 2 || snap[0] != (ctl.Event{Kind: ctl.EventMissed, Room: "r", Seq: 32, Through: 34}) || snap[1].Seq != 35 || len(snap) != 9 {
		t.Errorf("log trimmed during the read (%d reads): %v (first %+v), want missed 32..34, then 35..42 read again", fh.reads, seqs(snap), snap[0])
	}
	fh.onRead = nil

	// A long log gives its newest roomBacklog records' events, as a ring
	// would, and a reader from before them is told.
	long := newHub()
	long.host("r", &fakeHistory{oldest: 1, next: 5001})
	if snap, _ := long.subscribe(ctx, "r", 0, true, nil); len(snap) != roomBacklog || snap[0].Seq != 4001 {
		t.Errorf("log of 5000, since 0: %d events from #%d, want %d from #4001", len(snap), snap[0].Seq, roomBacklog)
	}
	if snap, _ := long.subscribe(ctx, "r", 10, true, nil); len(snap) != roomBacklog+1 || snap[0] != (ctl.Event{Kind: ctl.EventMissed, Room: "r", Seq: 11, Through: 4000}) || snap[1].Seq != 4001 {
		t.Errorf("log of 5000, since 10: %d events, first %+v, want missed 11..4000 then %d from #4001", len(snap), snap[0], roomBacklog)
	}
	if snap, _ := long.subscribe(ctx, "r", 4500, true, nil); len(snap) != 500 || snap[0].Seq != 4501 {
		t.Errorf("log of 5000, since 4500: %d events from #%d, want 500 from #4501", len(snap), snap[0].Seq)
	}

	// Nothing logged (a log that did not survive), events in the ring: the
	// ring's oldest is the oldest held.
	h2 := newHub()
	h2.host("r", &fakeHistory{})
	h2.publish(ctl.Event{Kind: ctl.EventMessage, Room: "r", Seq: 1025}, true)
	if snap, _ := h2.subscribe(ctx, "r", 1000, true, nil); len(snap) != 2 || snap[0] != (ctl.Event{Kind: ctl.EventMissed, Room: "r", Seq: 1001, Through: 1024}) || snap[1].Seq != 1025 {
		t.Errorf("empty log, #1025 in the ring, since 1000: %+v", snap)
	}

	// A failed hosting forgets the log.
	h.forget("r")
	if snap, _ := h.subscribe(ctx, "r", 0, true, nil); len(snap) != 0 {
		t.Errorf("after forget: %d events", len(snap))
	}
}

// TestLogHistory: a hosted room's log read back gives the events its
// records made when delivered, from..to-1 only, without kinds the API does
// not show.
func TestLogHistory(t *testing.T) {
	l, err := roomlog.Open(roomlog.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	alice, bob := [wire.KeyIDLen]byte{1}, [wire.KeyIDLen]byte{2}
	batches := [][]wire.Record{
		{{Kind: wire.KindJoin, KeyID: bob, Nick: "bob"}, {Kind: wire.KindMessage, KeyID: alice, Nick: "alice", Text: "hi"}},
		{{Kind: wire.MaxKind, KeyID: bob, Nick: "bob", Text: "a kind to come"}},
		{{Kind: wire.KindMessage, KeyID: bob, Nick: "bob", Text: "hello"}, {Kind: wire.KindPart, KeyID: bob, Nick: "bob"}, {Kind: wire.KindMessage, KeyID: alice, Nick: "alice", Text: "bye"}},
	}
	var fps fingerprints
	var want []ctl.Event
	seq := uint64(10)
	for _, recs := range batches {
		b, err := wire.AppendBatchBody(nil, seq, recs)
		if err != nil {
			t.Fatal(err)
		}
		if err := l.Append(seq, len(recs), append(b, make([]byte, wire.SigLen)...)); err != nil {
			t.Fatal(err)
		}
		for i := range recs {
			d := rooms.Delivery{Room: "r@x", Seq: seq, Record: recs[i]}
			if ev, ok := recordEvent(d.Room, d.Seq, &d.Record, &fps); ok {
				want = append(want, ev)
			}
			seq++
		}
	}
	if len(want) != 5 || want[0].Kind != ctl.EventJoin || want[0].Fingerprint != rooms.KeyIDFingerprint(bob) || want[4].Text != "bye" {
		t.Fatalf("delivered events %+v", want)
	}
	hs := &logHistory{log: l, room: "r@x", fps: &fps}
	for _, c := range []struct{ from, to uint64 }{{1, 100}, {10, 16}, {11, 15}, {13, 14}, {16, 20}} {
		var got []ctl.Event
		hs.events(c.from, c.to, func(ev ctl.Event) { got = append(got, ev) })
		var w []ctl.Event
		for _, ev := range want {
			if ev.Seq >= c.from && ev.Seq < c.to {
				w = append(w, ev)
			}
		}
		if !slices.Equal(got, w) {
			t.Errorf("events %d..%d: %+v, want %+v", c.from, c.to-1, got, w)
		}
	}
}

// TestHubHostedNoAllocs: in a hosted room whose log keeps up, publishing
// an event allocates nothing: the ring reuses its few slots.
func TestHubHostedNoAllocs(t *testing.T) {
	h := newHub()
	fh := &fakeHistory{oldest: 1, next: 1}
	h.host("r", fh)
	seq := uint64(1)
	publish := func() {
		h.publish(ctl.Event{Kind: ctl.EventMessage, Room: "r", Seq: seq, Text: "hi"}, true)
		seq++
		fh.next = seq // logged
	}
	publish()
	if n := testing.AllocsPerRun(100, publish); n != 0 {
		t.Errorf("%.1f allocations an event", n)
	}
}
