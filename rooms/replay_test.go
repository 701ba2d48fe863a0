package rooms

import (
	"bytes"
	"net/netip"
	"testing"
	"time"

	"meshd/mcast/memnet"
	"meshd/rooms/wire"
)

func TestReplayWindow(t *testing.T) {
	type step struct {
		counter uint64
		want    bool
	}
	const w = replayWindowSize
	tests := []struct {
		name  string
		steps []step
	}{
		{"in order", []step{{1, true}, {2, true}, {3, true}}},
		{"zero", []step{{0, false}, {1, true}, {0, false}}},
		{"duplicate", []step{{1, true}, {1, false}, {2, true}, {1, false}, {2, false}}},
		{"out of order within window", []step{{5, true}, {3, true}, {4, true}, {1, true}, {2, true}, {3, false}, {6, true}, {5, false}}},
		{"out of order across blocks", []step{{200, true}, {63, true}, {64, true}, {65, true}, {128, true}, {64, false}, {199, true}, {200, false}}},
		{"oldest in window", []step{{w + 10, true}, {10, true}, {10, false}}},
		{"too old", []step{{w + 10, true}, {9, false}, {1, false}}},
		{"too old after a slide", []step{{1, true}, {2, true}, {w + 3, true}, {2, false}, {3, true}, {3, false}}},
		{"far jump", []step{{1, true}, {2, true}, {1 << 40, true}, {1<<40 - 1, true}, {2, false}, {1<<40 - w, true}, {1<<40 - w - 1, false}, {1 << 40, false}}},
		// A jump by less than the ring, but into blocks used by counters
		// the window held before: their bits must have been cleared.
		// 1124 and 1025 are in the ring slots of 100 and 1.
		{"slide clears reused blocks", []step{{1, true}, {100, true}, {1100, true}, {1100, false}, {100 + 1024, true}, {1 + 1024, true}, {1124 - w, true}, {1124 - w - 1, false}}},
		{"every counter once", func() []step {
			var s []step
			for c := uint64(1); c <= 3*w; c++ {
				s = append(s, step{c, true})
			}
			return append(s, step{3 * w, false}, step{2 * w, false}, step{2*w - 1, false})
		}()},
		{"reverse within window", func() []step {
			var s []step
			for c := uint64(w + 1); c >= 1; c-- {
				s = append(s, step{c, true})
			}
			return s
		}()},
		{"max counter", []step{{^uint64(0), true}, {^uint64(0), false}, {^uint64(0) - 1, true}, {^uint64(0) - w - 1, false}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var rw replayWindow
			for i, s := range tt.steps {
				if got := rw.accept(s.counter); got != s.want {
					t.Fatalf("step %d: accept(%d) = %v, want %v", i, s.counter, got, s.want)
				}
			}
		})
	}
}

// A NACK copied off the link and sent again opens fine, but the host
// drops every copy as replayed before the member's rate limit, so the
// member's own next NACK is still acted on; a NACK naming another
// session of the member is dropped the same way.
func TestNackReplayDropped(t *testing.T) {
	n := memnet.New(11)
	tr := newTestRoom(t, n, "general")
	tm, err := tr.join("10.0.0.2", "alice", tr.kn)
	if err != nil {
		t.Fatal(err)
	}
	// An eavesdropper on the room's group keeps the NACKs it hears.
	spy := n.Listen(netip.MustParseAddr("10.0.0.9"), 7703)
	if err := spy.JoinGroup(tr.seq.Group().Addr()); err != nil {
		t.Fatal(err)
	}
	heard := make(chan []byte, 64)
	spyDone := make(chan struct{})
	go func() {
		defer close(spyDone)
		buf := make([]byte, 2048)
		for {
			nb, _, _, err := spy.ReadFrom(buf)
			if err != nil {
				return
			}
			if typ, _ := wire.PacketType(buf[:nb]); typ == wire.TypeNack {
				select {
				case heard <- bytes.Clone(buf[:nb]):
				default:
				}
			}
		}
	}()
	t.Cleanup(func() { spy.Close(); <-spyDone })

	// lose makes alice miss every shard of a line, so that she NACKs it
	// once the host's heartbeat names its block, and waits until the
	// host has acted on more NACKs than before.
	alice := netip.MustParseAddr("10.0.0.2")
	lose := func(text string) {
		t.Helper()
		before := tr.stats.NacksReceived.Load()
		n.SetLoss(alice, 1)
		seq, err := tr.seq.Say(text)
		if err != nil {
			t.Fatal(err)
		}
		tr.seq.flush()
		// Another goroutine may be writing the room's outbox, and
		// write the line's shards after this one returns.
		waitWritten(t, tr.seq)
		n.SetLoss(alice, 0)
		tm.rec.waitFor(t, text, func(d []Delivery) bool { return len(d) > 0 && d[len(d)-1].Seq >= seq })
		waitUntil(t, "the host to act on alice's NACK", func() bool { return tr.stats.NacksReceived.Load() > before })
	}
	lose("first")
	var pkt []byte
	select {
	case pkt = <-heard:
	case <-time.After(20 * time.Second):
		t.Fatal("heard no NACK from alice")
	}

	received, limited, replayed := tr.stats.NacksReceived.Load(), tr.stats.NackLimited.Load(), tr.stats.NackReplayed.Load()
	const copies = 1000 // 50 times the member's burst
	for range copies {
		tr.seq.HandleNack(pkt)
	}
	if got := tr.stats.NackReplayed.Load() - replayed; got != copies {
		t.Errorf("nack_replayed rose by %d over %d copies, want %d", got, copies, copies)
	}
	if got := tr.stats.NacksReceived.Load() - received; got != 0 {
		t.Errorf("the host acted on %d copies, want none", got)
	}
	if got := tr.stats.NackLimited.Load() - limited; got != 0 {
		t.Errorf("nack_limited rose by %d over the copies, want 0: they were charged to alice's rate", got)
	}

	// Alice's next NACK, right after the copies, is acted on: they did
	// not use up her budget. It is sealed here as she would seal it, since
	// hers would come only after her bucket refilled.
	tm.m.mu.Lock()
	session, counter := tm.m.nackSession, tm.m.nackCounter
	tm.m.mu.Unlock()
	forge := func(session, counter uint64) []byte {
		t.Helper()
		body, err := wire.AppendNackBody(nil, &wire.Nack{KeyID: tm.m.keyID, Session: session, Counter: counter, Entries: []wire.NackEntry{{Block: 1, Missing: 1}}})
		if err != nil {
			t.Fatal(err)
		}
		tr.seq.mu.Lock()
		defer tr.seq.mu.Unlock()
		pkt, err := sealNack(nil, tr.seq.key, tr.seq.id, body)
		if err != nil {
			t.Fatal(err)
		}
		return pkt
	}
	tr.seq.HandleNack(forge(session, counter+1))
	if got := tr.stats.NacksReceived.Load() - received; got != 1 {
		t.Errorf("the host acted on %d NACKs since the copies began, want 1: alice's next", got)
	}

	// And so is the one her own code sends next.
	lose("second")
	if got := tr.stats.NackLimited.Load() - limited; got != 0 {
		t.Errorf("nack_limited rose by %d, want 0", got)
	}

	// A NACK sealed under the room's key (as any member can) for alice's
	// key id, but naming a session other than her current one.
	tm.m.mu.Lock()
	session, counter = tm.m.nackSession, tm.m.nackCounter
	tm.m.mu.Unlock()
	replayed = tr.stats.NackReplayed.Load()
	tr.seq.HandleNack(forge(session^1, counter+1))
	if got := tr.stats.NackReplayed.Load() - replayed; got != 1 {
		t.Errorf("nack_replayed rose by %d for another session's NACK, want 1", got)
	}
}
