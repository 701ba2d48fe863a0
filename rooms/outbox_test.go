package rooms

import (
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"meshd/mcast/memnet"
	"meshd/rooms/wire"
)

// sendQueuedLocked writes the outbox with the room's lock held, as unlock
// does once it lets the lock go: a test that looks at what a step sent,
// before it lets the lock go, calls it first. Packets a step queued are
// sent by the time the step's caller has the lock back.
func (s *Sequencer) sendQueuedLocked() {
	for _, p := range s.outbox {
		if err := s.host.cfg.Sender.WriteTo(p.pkt, s.group); err != nil {
			panic(err)
		}
	}
	s.writtenLocked(s.outbox)
	s.outbox, s.first = s.outbox[:0], 0
}

// askLocked notes a NACK for want shards of block no, as HandleNack does
// for one that opens and names a block still kept.
func (s *Sequencer) askLocked(no uint64, want int) {
	sb := s.blocks[no%sentBlocks]
	sb.asked = max(sb.asked, want)
}

// TestRepairGoesFirst: a repair is written before the blocks that were
// waiting in the outbox when it was made, and repairs keep their order.
func TestRepairGoesFirst(t *testing.T) {
	sink := new(pktSink)
	s := newPathHost(t, sink)
	makeBlocks(t, s, sink, 2, 40, 0.05)
	s.mu.Lock()
	repaired := s.block - 1
	for range 40 {
		if _, err := s.submitLocked(wire.Record{Kind: wire.KindMessage, KeyID: s.keyID, Nick: "ann", Text: pathLine}); err != nil {
			t.Fatal(err)
		}
	}
	s.flushLocked()
	queued := len(s.outbox)
	s.askLocked(repaired, 2)
	s.askLocked(repaired+1, 1)
	s.mu.Unlock() // not unlock: the new block stays queued, unwritten
	if queued == 0 {
		t.Fatal("the new block was not queued")
	}
	s.repair()

	var got []uint64
	for _, p := range sink.pkts {
		if si, err := wire.ParseShardInfo(p); err == nil {
			got = append(got, si.Block)
		}
	}
	repairs := len(got) - queued
	if repairs < 3 {
		t.Fatalf("blocks of the shards written: %v; want 3 or more repairs before the %d shards of the new block", got, queued)
	}
	for i, no := range got {
		if (i < repairs) != (no < s.block) {
			t.Fatalf("blocks of the shards written: %v; want the repairs of blocks %d and %d first, then block %d", got, repaired, repaired+1, s.block)
		}
	}
}

// waitWritten waits until no packet of s waits in its outbox or is being
// written: a step's packets are written by whichever goroutine drains the
// outbox, which may be another's that was draining already when the step
// returned.
func waitWritten(t *testing.T, s *Sequencer) {
	t.Helper()
	waitUntil(t, "the outbox written", func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return len(s.outbox) == 0 && !s.draining
	})
}

// gatedSink is a link that carries nothing until its gate opens: the
// first write waits there, as a write to a full socket does.
type gatedSink struct {
	gate    chan struct{}
	entered chan struct{}
	mu      sync.Mutex
	pkts    [][]byte
}

func (g *gatedSink) WriteTo(b []byte, _ netip.AddrPort) error {
	select {
	case g.entered <- struct{}{}:
	default:
	}
	<-g.gate
	g.mu.Lock()
	g.pkts = append(g.pkts, slices.Clone(b))
	g.mu.Unlock()
	return nil
}

// TestBlockedLinkDoesNotStallTheRoom: while the host's link carries
// nothing, the room goes on sequencing lines, holding the rest in its
// outbox, until the outbox is full; then says wait for the link (and are
// counted), not for the room's lock. Once the link drains, every line is
// answered and every block goes out whole, in order.
func TestBlockedLinkDoesNotStallTheRoom(t *testing.T) {
	sink := &gatedSink{gate: make(chan struct{}), entered: make(chan struct{}, 1)}
	s := newPathHost(t, sink)
	stats := s.host.cfg.Stats
	type said struct {
		seq uint64
		err error
	}
	results := make(chan said, 64)
	say := func(text string) {
		seq, err := s.Say(text)
		results <- said{seq, err}
	}
	go say("first") // the room's first block: its sayer writes it, and waits at the gate
	select {
	case <-sink.entered:
	case <-time.After(10 * time.Second):
		t.Fatal("the first line was never written")
	}
	// Lines of 16 KiB, 13 shards each: the outbox fills in a few.
	long := strings.Repeat("x", wire.MaxText)
	const says = 20
	for range says {
		go say(long)
	}
	waitUntil(t, "a say waiting for the link", func() bool { return stats.SaysWaited.Load() > 0 })
	s.mu.Lock()
	queued, seq := len(s.outbox), s.next-1
	s.mu.Unlock()
	if queued < outboxLimit {
		t.Errorf("a say waits with %d packets queued, want at least %d", queued, outboxLimit)
	}
	if seq < 3 {
		t.Errorf("with the link blocked, the room sequenced up to %d, want lines after the first", seq)
	}
	// The says that came before the outbox filled were logged and
	// answered, while the first is still writing.
	waitUntil(t, "a say answered while the link is blocked", func() bool { return len(results) > 0 })

	close(sink.gate)
	seen := make(map[uint64]bool)
	for range says + 1 {
		select {
		case r := <-results:
			if r.err != nil || seen[r.seq] {
				t.Fatalf("say answered %d, %v; want a new sequence number", r.seq, r.err)
			}
			seen[r.seq] = true
		case <-time.After(20 * time.Second):
			t.Fatalf("%d says answered once the link drained, want %d", len(seen), says+1)
		}
	}
	// Every block went out whole and in order.
	waitWritten(t, s)
	s.mu.Lock()
	last := s.block
	s.mu.Unlock()
	sink.mu.Lock()
	defer sink.mu.Unlock()
	shards := make(map[uint64]int)
	var prev uint64
	for _, p := range sink.pkts {
		si, err := wire.ParseShardInfo(p)
		if err != nil {
			continue // a heartbeat
		}
		if si.Block < prev {
			t.Fatalf("block %d written after block %d", si.Block, prev)
		}
		prev = si.Block
		shards[si.Block]++
	}
	for no := uint64(1); no <= last; no++ {
		sb := s.blocks[no%sentBlocks]
		if sb != nil && sb.no == no && shards[no] != sb.sent {
			t.Errorf("block %d: %d shards written, want %d", no, shards[no], sb.sent)
		}
		if shards[no] == 0 {
			t.Errorf("block %d never written", no)
		}
	}
}

// TestNackForQueuedShards: a NACK for a block whose shards are still in
// the outbox asks for what is on its way, and gets no repair; once the
// block is written, the same NACK does.
func TestNackForQueuedShards(t *testing.T) {
	sink := new(pktSink)
	s := newPathHost(t, sink)
	makeBlocks(t, s, sink, 1, 40, 0.05)
	sink.pkts = nil
	s.mu.Lock()
	for range 40 {
		if _, err := s.submitLocked(wire.Record{Kind: wire.KindMessage, KeyID: s.keyID, Nick: "ann", Text: pathLine}); err != nil {
			t.Fatal(err)
		}
	}
	s.flushLocked()
	no := s.block
	sb := s.blocks[no%sentBlocks]
	sent := sb.sent
	if sb.unsent != sent {
		t.Errorf("block %d: %d shards unsent, want all %d queued", no, sb.unsent, sent)
	}
	s.askLocked(no, 3)
	s.mu.Unlock() // not unlock: the block stays queued
	s.repair()
	if got := len(sink.pkts); got != sent {
		t.Fatalf("a NACK for 3 shards of a block still queued: %d shards written, want the block's %d alone", got, sent)
	}
	s.mu.Lock()
	unsent := sb.unsent
	s.askLocked(no, 3)
	s.mu.Unlock()
	if unsent != 0 {
		t.Fatalf("block %d written, %d shards still counted unsent", no, unsent)
	}
	s.repair()
	if got := len(sink.pkts) - sent; got < 3 {
		t.Fatalf("a NACK for 3 shards of a block written: %d repairs, want 3 or more", got)
	}
}

// TestBlockWaitsOutSaysWaiting: the block timer does not take says
// waiting for the link for a pause of the room's: it holds the block on,
// up to blockHold, and sends it once nobody waits.
func TestBlockWaitsOutSaysWaiting(t *testing.T) {
	sink := new(pktSink)
	s := newPathHost(t, sink)
	makeBlocks(t, s, sink, 1, 1, 0) // a quiet room's first line, a block of its own
	s.mu.Lock()
	s.busy = true
	for i := range 16 {
		s.members[[wire.KeyIDLen]byte{0xfe, byte(i)}] = &hostSession{loss: 0.05, reported: true}
	}
	for range 10 {
		if _, err := s.submitLocked(wire.Record{Kind: wire.KindMessage, KeyID: s.keyID, Nick: "ann", Text: pathLine}); err != nil {
			t.Fatal(err)
		}
	}
	s.flushLocked()
	before := s.block
	if s.openRecs != 10 || !s.blockArmed {
		t.Fatalf("a busy lossy room's batch: %d records open, timer armed %v; want 10, armed", s.openRecs, s.blockArmed)
	}
	s.sayWaiting = 1
	s.mu.Unlock()
	s.sendBlock() // as the timer does
	s.mu.Lock()
	if s.block != before || !s.blockArmed {
		t.Errorf("with a say waiting: block %d (was %d), timer armed %v; want the block held, the timer armed again", s.block, before, s.blockArmed)
	}
	s.sayWaiting = 0
	s.mu.Unlock()
	s.sendBlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.block != before+1 || s.openRecs != 0 {
		t.Errorf("with nobody waiting: block %d, %d records open; want block %d sent", s.block, s.openRecs, before+1)
	}
}

// TestQuietRoomLetsBuffersGo: the packet buffers of a burst are kept for
// the next while the room is busy, and let go once it has been quiet for
// a Heartbeat.
func TestQuietRoomLetsBuffersGo(t *testing.T) {
	tr := newTestRoom(t, memnet.New(1), "general")
	free := func() int {
		tr.seq.mu.Lock()
		defer tr.seq.mu.Unlock()
		return len(tr.seq.free)
	}
	if _, err := tr.seq.Say(strings.Repeat("x", wire.MaxText)); err != nil {
		t.Fatal(err)
	}
	waitWritten(t, tr.seq)
	if n := free(); n < 10 {
		t.Fatalf("%d packet buffers kept after a 16 KiB line, want its shards' (over 10)", n)
	}
	tr.host.Tick(time.Now().Add(Heartbeat / 2))
	if n := free(); n < 10 {
		t.Fatalf("%d packet buffers kept after %v, want them all still", n, Heartbeat/2)
	}
	tr.host.Tick(time.Now().Add(2 * Heartbeat))
	waitWritten(t, tr.seq)
	if n := free(); n > 1 {
		t.Errorf("%d packet buffers kept after %v of quiet, want at most the heartbeat's", n, 2*Heartbeat)
	}
}

// TestSaysWaitForMembersBehind: says wait while a member on multicast
// that acks is more than aheadLimit lines behind, go on once its ack
// shows it caught up, and are not held back by a member whose acks
// stopped for ackStale.
func TestSaysWaitForMembersBehind(t *testing.T) {
	s := newPathHost(t, new(countSink))
	stats := s.host.cfg.Stats
	clock := time.Unix(1_000_000, 0)
	slow := &hostSession{keyID: [wire.KeyIDLen]byte{0xfe, 1}, closed: true}
	s.mu.Lock()
	s.now = func() time.Time { return clock }
	s.members[slow.keyID] = slow
	slow.acked, slow.ackedAt = s.next-1, clock
	for range aheadLimit + 10 {
		if _, err := s.submitLocked(wire.Record{Kind: wire.KindMessage, KeyID: s.keyID, Nick: "ann", Text: "line"}); err != nil {
			t.Fatal(err)
		}
	}
	s.flushLocked()
	s.unlock()

	said := make(chan error, 1)
	say := func() {
		go func() {
			_, err := s.Say("one more")
			said <- err
		}()
	}
	say()
	waitUntil(t, "a say waiting for the slow member", func() bool { return stats.SaysWaited.Load() == 1 })
	s.mu.Lock()
	next := s.next
	s.mu.Unlock()
	s.ack(slow, &wire.Ack{Seq: next - 1})
	if err := <-said; err != nil {
		t.Fatal(err)
	}

	// Behind again; then its acks stop.
	s.mu.Lock()
	slow.acked, slow.ackedAt = 1, clock
	s.mu.Unlock()
	say()
	waitUntil(t, "a say waiting for the slow member again", func() bool { return stats.SaysWaited.Load() == 2 })
	s.mu.Lock()
	clock = clock.Add(ackStale)
	s.mu.Unlock()
	s.tick(clock)
	if err := <-said; err != nil {
		t.Fatal(err)
	}
}

// TestBlockHeldWhileSaysWait: while says wait for the link, a batch's
// block is held for the batches after it even before any member reports
// loss; with the link free and no loss, it goes at once.
func TestBlockHeldWhileSaysWait(t *testing.T) {
	s := newPathHost(t, new(countSink))
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range 16 {
		s.members[[wire.KeyIDLen]byte{0xfe, byte(i)}] = &hostSession{}
	}
	batch := func() {
		t.Helper()
		for range 10 {
			if _, err := s.submitLocked(wire.Record{Kind: wire.KindMessage, KeyID: s.keyID, Nick: "ann", Text: pathLine}); err != nil {
				t.Fatal(err)
			}
		}
		s.flushLocked()
	}
	s.busy = true
	before := s.block
	batch()
	if s.block == before || s.openRecs != 0 {
		t.Fatalf("no loss, nobody waiting: block %d, %d records open; want the lines sent", s.block, s.openRecs)
	}
	s.sayWaiting = 1
	before = s.block
	batch()
	if s.block != before || s.openRecs != 10 || !s.blockArmed {
		t.Errorf("a say waiting: block %d (was %d), %d records open, timer armed %v; want the block held, the timer armed", s.block, before, s.openRecs, s.blockArmed)
	}
	s.sayWaiting = 0
	s.sendBlockLocked()
}

// TestBlockHeldWhileTheLinkIsBusy: past blockHold, a block is held while
// the outbox holds a chunk or more for the link (it could go no sooner
// than that drains), and not once it holds less.
func TestBlockHeldWhileTheLinkIsBusy(t *testing.T) {
	s := newPathHost(t, new(countSink))
	clock := time.Unix(1_000_000, 0)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.now = func() time.Time { return clock }
	s.open = append(s.open, 1)
	s.openSince = clock
	if got := s.holdLocked(clock); got != blockIdle {
		t.Errorf("a block just opened: hold %v, want blockIdle %v", got, blockIdle)
	}
	late := clock.Add(blockHold + time.Millisecond)
	if got := s.holdLocked(late); got > 0 {
		t.Errorf("past blockHold, the outbox empty: hold %v, want none", got)
	}
	for range drainChunk {
		s.outbox = append(s.outbox, outPacket{})
	}
	if got := s.holdLocked(late); got != blockIdle {
		t.Errorf("past blockHold, a chunk in the outbox: hold %v, want blockIdle %v", got, blockIdle)
	}
	s.outbox = s.outbox[:drainChunk-1]
	if got := s.holdLocked(late); got > 0 {
		t.Errorf("past blockHold, less than a chunk in the outbox: hold %v, want none", got)
	}
	s.outbox, s.open = s.outbox[:0], s.open[:0]
}
