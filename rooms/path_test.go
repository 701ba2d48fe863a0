package rooms

import (
	"bytes"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"meshd/rooms/wire"
)

// The per-packet path, host and member, measured without sockets or
// sessions: a Sequencer multicasting into a pktSink, and a Member fed
// those packets as the daemon's data loop would feed them.

// pktSink keeps what a Sequencer multicasts.
type pktSink struct{ pkts [][]byte }

func (s *pktSink) WriteTo(b []byte, _ netip.AddrPort) error {
	s.pkts = append(s.pkts, bytes.Clone(b))
	return nil
}

// countSink counts what a Sequencer multicasts (packets and their bytes)
// and keeps nothing, so that a benchmark of the host measures the host.
type countSink struct{ n, bytes int }

func (s *countSink) WriteTo(b []byte, _ netip.AddrPort) error {
	s.n++
	s.bytes += len(b)
	return nil
}

// nullStore is a Store that keeps nothing, for the same reason.
type nullStore struct{ next uint64 }

func (s *nullStore) Append(first uint64, count int, _ []byte) error {
	s.next = first + uint64(count)
	return nil
}
func (s *nullStore) Read(uint64, func(uint64, int, []byte) bool) {}
func (s *nullStore) Oldest() uint64                              { return 0 }
func (s *nullStore) Next() uint64                                { return s.next }
func (s *nullStore) Start() uint64                               { return max(s.next, 1) }
func (s *nullStore) Reserve(uint64) error                        { return nil }
func (s *nullStore) LoadAccess() ([]byte, error)                 { return nil, nil }
func (s *nullStore) SaveAccess([]byte) error                     { return nil }
func (s *nullStore) Release()                                    {}
func (s *nullStore) Close() error                                { return nil }

// newPathHost returns a hosted room with no members whose packets go to
// sender, on a clock that stands still.
func newPathHost(tb testing.TB, sender PacketSender) *Sequencer {
	tb.Helper()
	h := NewHost(HostConfig{
		Identity:   newTestIdentity(tb),
		Boot:       1,
		Sender:     sender,
		DataGroups: testPrefix,
		DataPort:   7703,
		Nick:       "host",
		Lifetime:   30 * time.Second,
		Addrs:      func() []netip.AddrPort { return nil },
		Deliver:    func(Delivery) {},
		Stats:      new(Stats),
		Logger:     discard,
		OpenStore: func(string, [wire.RoomIDLen]byte) (Store, error) {
			return new(nullStore), nil
		},
	})
	s, err := h.Open("bench", RoomAccess{})
	if err != nil {
		tb.Fatal(err)
	}
	// A clock that stands still: after the first block the room is never
	// quiet, so a block holds exactly the lines the caller submits before
	// it flushes, however slowly this machine runs them.
	s.mu.Lock()
	s.now = func() time.Time { return time.Unix(1_000_000, 0) }
	s.mu.Unlock()
	tb.Cleanup(h.Close)
	return s
}

// newPathMember returns a member of s's room, holding its key as a
// Welcome would give it, with no session: its acks and NACKs go nowhere.
func newPathMember(tb testing.TB, s *Sequencer) *Member {
	tb.Helper()
	s.mu.Lock()
	w := &wire.Welcome{Room: s.id, Epoch: s.key.epoch, Key: s.key.key, Next: s.next, Block: s.block, Group: s.group, MACSlot: wire.NoMACSlot}
	s.mu.Unlock()
	return welcomedMember(tb, s, w)
}

// welcomedMember returns a member of s's room that took Welcome w, with no
// session.
func welcomedMember(tb testing.TB, s *Sequencer, w *wire.Welcome) *Member {
	tb.Helper()
	kn := Known{Announce: wire.Announce{Room: s.name}}
	copy(kn.HostKey[:], s.host.cfg.Identity.Pub)
	m := newMember(MemberConfig{
		Identity:  newTestIdentity(tb),
		Stats:     new(Stats),
		Logger:    discard,
		Deliver:   func(Delivery) {},
		JoinData:  func(netip.Addr) error { return nil },
		LeaveData: func(netip.Addr) {},
		Sender:    new(countSink),
		Path:      PathMulticast,
	}, kn, "bench", 0, Credential{})
	if err := m.welcome(nil, w); err != nil {
		tb.Fatal(err)
	}
	// Never run, so Close would wait for it; stopping its timers is all
	// there is to close.
	tb.Cleanup(func() {
		m.mu.Lock()
		defer m.mu.Unlock()
		m.closed = true
		m.rx.stopTimers()
	})
	return m
}

var pathLine = strings.Repeat("m", 200)

// makeBlocks has s send n blocks of lines 200-byte lines each, with the
// proactive parity that loss calls for with 16 members, and returns each
// block's packets.
func makeBlocks(tb testing.TB, s *Sequencer, sink *pktSink, n, lines int, loss float64) [][][]byte {
	tb.Helper()
	blocks := make([][][]byte, n)
	s.mu.Lock()
	defer s.mu.Unlock()
	// Proactive parity is sized for the unluckiest of the members on
	// multicast: 16 of them, as in the benchmark harness's rooms.
	for i := range 16 {
		s.members[[wire.KeyIDLen]byte{0xfe, byte(i)}] = &hostSession{loss: loss, reported: true}
	}
	defer func() {
		for i := range 16 {
			delete(s.members, [wire.KeyIDLen]byte{0xfe, byte(i)})
		}
	}()
	for i := range blocks {
		s.loss = loss
		for range lines {
			if _, err := s.submitLocked(wire.Record{Kind: wire.KindMessage, KeyID: s.keyID, Nick: "ann", Text: pathLine}); err != nil {
				tb.Fatal(err)
			}
		}
		s.flushLocked()
		s.sendBlockLocked() // a busy room would hold it for more lines
		s.sendQueuedLocked()
		blocks[i], sink.pkts = sink.pkts, nil
	}
	return blocks
}

// pathFeed feeds a member blocks, one per call, starting over (with the
// member's receive state reset to the first block) once all were fed.
type pathFeed struct {
	m      *Member
	blocks [][][]byte
	next   uint64 // the sequence number of the first block's first line
	block0 uint64 // the block before the first
	i      int
	lost   int // data shards of each block withheld (repaired from parity)
}

func newPathFeed(tb testing.TB, lines, blocks, lost int, loss float64) *pathFeed {
	return newPathFeedSlots(tb, lines, blocks, lost, loss, 0)
}

// newPathFeedSlots is newPathFeed in a room of members with slots in its
// blocks' MACs, the member fed among them: its small blocks are MACed,
// not signed (slots 0: no member has one).
func newPathFeedSlots(tb testing.TB, lines, blocks, lost int, loss float64, slots int) *pathFeed {
	sink := new(pktSink)
	s := newPathHost(tb, sink)
	var m *Member
	if slots == 0 {
		m = newPathMember(tb, s)
	} else {
		s.mu.Lock()
		for range slots - 1 {
			if _, _, err := s.slotLocked(new(hostSession)); err != nil {
				tb.Fatal(err)
			}
		}
		s.mu.Unlock()
		m, _ = slottedMember(tb, s)
	}
	f := &pathFeed{m: m, next: s.next, block0: s.block, lost: lost}
	f.blocks = makeBlocks(tb, s, sink, blocks, lines, loss)
	return f
}

// restart makes the member expect the first block again.
func (f *pathFeed) restart() {
	f.m.mu.Lock()
	f.m.rx.reset(f.next, f.block0, time.Now())
	f.m.mu.Unlock()
	f.i = 0
}

// one feeds the next block; it reports false when all have been fed.
func (f *pathFeed) one() bool {
	if f.i == len(f.blocks) {
		return false
	}
	for _, p := range f.blocks[f.i][f.lost:] {
		f.m.HandlePacket(p)
	}
	f.i++
	return true
}

// BenchmarkMemberReceive is a member's whole receive path per block of
// lines 200-byte lines: open each shard, rebuild the block, verify the
// host's signature or the member's MAC, deliver in order (to a Deliver
// that does nothing). ns/line is what a line costs a member.
func BenchmarkMemberReceive(b *testing.B) {
	for _, tt := range []struct {
		lines, lost int
		loss        float64
		slots       int // members with MAC slots, the one measured among them
	}{
		{1, 0, 0, 0}, {8, 0, 0, 0}, {32, 0, 0, 0},
		// At 5 % loss the host sends proactive parity, and the first
		// data shard is lost: the block is rebuilt from parity.
		{1, 1, 0.05, 0}, {32, 1, 0.05, 0},
		// A room of 16 members with slots: blocks of up to macBlockMax
		// bytes carry 16 MACs rather than a signature.
		{1, 0, 0, 16}, {8, 0, 0, 16}, {1, 1, 0.05, 16},
	} {
		name := fmt.Sprintf("lines=%d", tt.lines)
		if tt.lost > 0 {
			name += "/repaired"
		}
		if tt.slots > 0 {
			name += fmt.Sprintf("/macs=%d", tt.slots)
		}
		b.Run(name, func(b *testing.B) {
			f := newPathFeedSlots(b, tt.lines, 128, tt.lost, tt.loss, tt.slots)
			b.SetBytes(int64(tt.lines * len(pathLine)))
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				if !f.one() {
					b.StopTimer()
					f.restart()
					b.StartTimer()
					f.one()
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*tt.lines), "ns/line")
			// A block the member cannot rebuild would make this measure
			// nothing.
			if got := f.m.cfg.Stats.DataDelivered.Load(); got < int64(min(b.N, len(f.blocks))*tt.lines) {
				b.Fatalf("%d lines delivered in %d blocks of %d", got, b.N, tt.lines)
			}
		})
	}
}

// BenchmarkSequencer is the host's path per block of lines 200-byte lines:
// sequence each line, then sign, log (to a store that keeps nothing),
// encode and seal the block and hand its packets to the socket.
func BenchmarkSequencer(b *testing.B) {
	for _, lines := range []int{1, 8, 32} {
		b.Run(fmt.Sprintf("lines=%d", lines), func(b *testing.B) {
			sink := new(countSink)
			s := newPathHost(b, sink)
			rec := wire.Record{Kind: wire.KindMessage, KeyID: s.keyID, Nick: "ann", Text: pathLine}
			b.SetBytes(int64(lines * len(pathLine)))
			b.ReportAllocs()
			for b.Loop() {
				s.mu.Lock()
				for range lines {
					if _, err := s.submitLocked(rec); err != nil {
						b.Fatal(err)
					}
				}
				s.flushLocked()
				s.unlock()
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*lines), "ns/line")
			// UDP payload per payload byte, no parity (no members): the
			// framing's share of the overhead.
			b.ReportMetric(float64(sink.bytes)/float64(b.N*lines*len(pathLine)), "wire-B/B")
		})
	}
}

// TestReceiveAllocs: a block that arrives whole costs a member one
// allocation per line (its text, which the member hands on) and, if it is
// signed, the one inside Ed25519's verification, however many shards and
// lines it has: nothing per packet, nothing for its MACs. A block rebuilt
// from parity adds reedsolomon's few of its own.
func TestReceiveAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates on its own account")
	}
	for _, tt := range []struct{ lines, slots int }{{1, 0}, {8, 0}, {32, 0}, {1, 16}, {8, 16}} {
		f := newPathFeedSlots(t, tt.lines, 120, 0, 0, tt.slots)
		f.one() // the first block sizes the scratch space
		got := testing.AllocsPerRun(100, func() {
			if !f.one() {
				t.Fatal("out of blocks")
			}
		})
		if want := float64(tt.lines + 1); got > want {
			t.Errorf("%d lines a block, %d MAC slots: %v allocations per block, want at most %v", tt.lines, tt.slots, got, want)
		}
		if d := f.m.cfg.Stats.DataDelivered.Load(); d != int64(102*tt.lines) {
			t.Errorf("%d lines a block, %d MAC slots: %d lines delivered, want %d", tt.lines, tt.slots, d, 102*tt.lines)
		}
	}
}

// TestFlushAllocs: once its ring of blocks kept for repair is full, the
// host sends a block with a fixed handful of allocations, however many
// lines it holds: the batch (kept by the log and members' sessions), three
// inside each of Ed25519's two signings (the batch's, for the log and the
// sessions; the block's, for multicast), one inside reedsolomon's encoding.
func TestFlushAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates on its own account")
	}
	s := newPathHost(t, new(countSink))
	var per [3]float64
	for i, lines := range []int{1, 8, 32} {
		rec := wire.Record{Kind: wire.KindMessage, KeyID: s.keyID, Nick: "ann", Text: pathLine}
		flush := func() {
			s.mu.Lock()
			defer s.unlock()
			for range lines {
				if _, err := s.submitLocked(rec); err != nil {
					t.Fatal(err)
				}
			}
			s.flushLocked()
		}
		for range sentBlocks {
			flush() // fills the ring with blocks of this size
		}
		per[i] = testing.AllocsPerRun(100, flush)
	}
	if per[0] > 8 || per[1] > per[0] || per[2] > per[0] {
		t.Errorf("allocations per block of 1, 8, 32 lines = %v, want at most 8, the same for all", per)
	}
}

// TestFetchOnlyAStuckGap: a member fetches over its session only what has
// been missing for fetchAfter, not a run of gaps that NACK repairs keep
// closing (a busy lossy room nearly always has one).
func TestFetchOnlyAStuckGap(t *testing.T) {
	m := newPathMember(t, newPathHost(t, new(countSink)))
	m.mu.Lock()
	defer m.mu.Unlock()
	rx := &m.rx
	t0 := time.Now()
	rx.next, rx.highest = 10, 20
	m.sequenceStateLocked(t0)
	// The gap at 10 closes 3/4 of fetchAfter on, one opens at 12: its age
	// counts from then.
	opened := t0.Add(fetchAfter * 3 / 4)
	rx.next = 12
	m.sequenceStateLocked(opened)
	if f := m.fetchLocked(opened.Add(fetchAfter / 2)); f != nil {
		t.Errorf("fetch %+v for a gap %v old, want none before %v", f, fetchAfter/2, fetchAfter)
	}
	m.sequenceStateLocked(opened.Add(fetchAfter * 3 / 4))
	f := m.fetchLocked(opened.Add(fetchAfter))
	if f == nil || f.From != 12 || f.Count != 8 {
		t.Fatalf("fetch = %+v for 12 missing %v, 20 the newest; want From 12, Count 8", f, fetchAfter)
	}
	if f := m.fetchLocked(opened.Add(fetchAfter + 100*time.Millisecond)); f != nil {
		t.Errorf("fetch %+v again 100 ms later, want none before %v", f, fetchRetry)
	}
}

// TestFetchWaitsForSlowRepairs: where blocks that lose shards take long to
// complete (a slow link), a gap waits three times that for repairs
// before it is fetched over the session; with no such block seen, or
// fast ones, fetchAfter.
func TestFetchWaitsForSlowRepairs(t *testing.T) {
	m := newPathMember(t, newPathHost(t, new(countSink)))
	m.mu.Lock()
	defer m.mu.Unlock()
	rx := &m.rx
	if got := rx.fetchAfter(); got != fetchAfter {
		t.Errorf("with no block repaired yet: fetch after %v, want %v", got, fetchAfter)
	}
	rx.sampleRepairTime(50 * time.Millisecond)
	if got := rx.fetchAfter(); got != fetchAfter {
		t.Errorf("blocks repaired in 50 ms: fetch after %v, want %v", got, fetchAfter)
	}
	for range 40 {
		rx.sampleRepairTime(time.Second)
	}
	t0 := time.Now()
	rx.next, rx.highest = 10, 20
	m.sequenceStateLocked(t0)
	if f := m.fetchLocked(t0.Add(time.Second)); f != nil {
		t.Errorf("blocks repaired in 1 s: fetch %+v for a gap 1 s old, want none yet", f)
	}
	if f := m.fetchLocked(t0.Add(3 * time.Second)); f == nil {
		t.Errorf("blocks repaired in 1 s: no fetch for a gap 3 s old")
	}
	for range 40 {
		rx.sampleRepairTime(time.Minute)
	}
	if got := rx.fetchAfter(); got != maxFetchAfter {
		t.Errorf("blocks repaired in a minute: fetch after %v, want at most %v", got, maxFetchAfter)
	}
}
