package daemon

import (
	"context"
	"slices"
	"testing"

	"meshd/ctl"
	"meshd/rooms"
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
}

func (f *fakeDirect) Take(ev *ctl.Event) bool {
	if ev.Seq%3 == 0 {
		return false
	}
	f.took = append(f.took, ev.Seq)
	return true
}

func (f *fakeDirect) Send() { f.sent = append(f.sent, f.took[len(f.took)-1]) }

// TestHubDirect: an event the subscriber's stream takes does not go on
// its channel; one it declines does, and later events keep their order.
// Outside a hold each taken event is sent at once; in one, all of them at
// the end.
func TestHubDirect(t *testing.T) {
	h := newHub()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	d := &fakeDirect{}
	_, live := h.subscribe(ctx, "r", 0, false, d)
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
