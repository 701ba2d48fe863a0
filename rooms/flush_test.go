package rooms

import (
	"net/netip"
	"sync"
	"testing"
	"time"

	"meshd/mcast/memnet"
	"meshd/rooms/wire"
)

// blockSink keeps the block number of every shard a Sequencer sends and
// signals each send.
type blockSink struct {
	mu     sync.Mutex
	blocks []uint64
	sent   chan struct{}
}

func (s *blockSink) WriteTo(b []byte, _ netip.AddrPort) error {
	si, err := wire.ParseShardInfo(b)
	if err != nil {
		return nil // a heartbeat
	}
	s.mu.Lock()
	s.blocks = append(s.blocks, si.Block)
	s.mu.Unlock()
	select {
	case s.sent <- struct{}{}:
	default:
	}
	return nil
}

func (s *blockSink) sentBlocks() []uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]uint64(nil), s.blocks...)
}

// TestLoneLineIsNotHeldBack: a line that finds the room quiet is queued
// for the link before Say returns (and written by its goroutine, or by the
// one writing the room's outbox already), with no flush timer armed,
// while the lines of a
// burst that follows it wait for the timer and share one block. The
// Sequencer's clock is the test's, so "quiet" does not depend on how fast
// this machine runs the test.
func TestLoneLineIsNotHeldBack(t *testing.T) {
	sink := &blockSink{sent: make(chan struct{}, 1)}
	s := newPathHost(t, sink)
	clock := time.Unix(1_000_000, 0)
	s.mu.Lock()
	s.now = func() time.Time { return clock }
	s.mu.Unlock()

	state := func() (armed bool, pending int) {
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.flushArmed, len(s.pending)
	}

	// say submits lines holding the Sequencer's lock, as Say does, and
	// reports, before it lets the lock go, the blocks sent, whether the
	// flush timer is armed and the lines pending: with the lock held the
	// timer cannot have sent anything, so those blocks went out at once.
	// The lines of one call are one burst: the lock is not let go between
	// them, nor before the test looks, since a test paused for FlushDelay
	// in between would see the timer send them.
	say := func(texts ...string) (blocks []uint64, armed bool, pending int) {
		s.mu.Lock()
		defer s.mu.Unlock()
		for _, text := range texts {
			if _, err := s.submitLocked(wire.Record{Kind: wire.KindMessage, KeyID: s.keyID, Nick: "host", Text: text}); err != nil {
				t.Fatal(err)
			}
		}
		s.sendQueuedLocked()
		return sink.sentBlocks(), s.flushArmed, len(s.pending)
	}

	got, armed, pending := say("alone")
	if len(got) != 1 || got[0] != 1 {
		t.Fatalf("a lone line: shards of blocks %v sent at once, want one of block 1", got)
	}
	if armed || pending != 0 {
		t.Fatalf("after a lone line: flush timer armed %v, %d lines pending; want nothing waiting", armed, pending)
	}
	<-sink.sent // the lone line's

	// A burst at the same instant: the room just sent a block, so these
	// wait for the timer.
	got, armed, pending = say("burst 1", "burst 2", "burst 3")
	if len(got) != 1 {
		t.Fatalf("during a burst, shards of blocks %v were sent, want only block 1's", got)
	}
	if !armed || pending != 3 {
		t.Fatalf("during a burst: flush timer armed %v, %d lines pending; want armed, 3", armed, pending)
	}
	select {
	case <-sink.sent:
	case <-time.After(10 * time.Second):
		t.Fatal("the flush timer never sent the burst")
	}
	if got := sink.sentBlocks(); len(got) != 2 || got[1] != 2 {
		t.Fatalf("after the flush timer, shards of blocks %v were sent, want block 1's, then one of block 2 (the burst's 3 lines in 1 shard)", got)
	}
	if armed, pending := state(); armed || pending != 0 {
		t.Fatalf("after the flush timer: armed %v, %d lines pending; want nothing waiting", armed, pending)
	}

	// Once the room has been quiet for FlushDelay, a line goes at once
	// again, and Say returns with it logged.
	s.mu.Lock()
	clock = clock.Add(FlushDelay)
	s.mu.Unlock()
	if got, _, _ := say("later"); len(got) != 3 || got[2] != 3 {
		t.Fatalf("after a quiet FlushDelay, shards of blocks %v were sent, want a third block at once", got)
	}
	s.mu.Lock()
	clock = clock.Add(FlushDelay)
	s.mu.Unlock()
	if _, err := s.Say("and later"); err != nil {
		t.Fatal(err)
	}
	waitWritten(t, s)
	if got := sink.sentBlocks(); len(got) != 4 || got[3] != 4 {
		t.Fatalf("after Say in a quiet room, shards of blocks %v were sent, want a fourth block", got)
	}
}

// A room is busy from the line that makes its window busyLines long, not
// from the window's end: a room that burst into full rate sent its first
// window's blocks as its batches came.
func TestBusyFromTheWindowsBusyLine(t *testing.T) {
	s := newPathHost(t, &blockSink{sent: make(chan struct{}, 1)})
	clock := time.Unix(1_000_000, 0)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.now = func() time.Time { return clock }
	for i := 1; i <= busyLines; i++ {
		if _, err := s.submitLocked(wire.Record{Kind: wire.KindMessage, KeyID: s.keyID, Nick: "host", Text: "line"}); err != nil {
			t.Fatal(err)
		}
		if want := i == busyLines; s.busy != want {
			t.Fatalf("after %d lines within %v: busy %v, want %v", i, busyWindow, s.busy, want)
		}
	}
}

// TestBusyRoomWaitsLonger: in a room that took busyLines lines in the last
// busyWindow, a line waits for the burst to end (burstGap, up to
// busyFlushDelay while lines keep coming), even after a pause of
// FlushDelay, so that a busy room's blocks grow; once a window is slow
// again, a lone line goes at once after FlushDelay.
func TestBusyRoomWaitsLonger(t *testing.T) {
	sink := &blockSink{sent: make(chan struct{}, 1)}
	s := newPathHost(t, sink)
	clock := time.Unix(1_000_000, 0)
	advance := func(d time.Duration) {
		s.mu.Lock()
		clock = clock.Add(d)
		s.mu.Unlock()
	}
	s.mu.Lock()
	s.now = func() time.Time { return clock }
	s.mu.Unlock()
	say := func(n int) (blocks int, armed bool) {
		s.mu.Lock()
		defer s.mu.Unlock()
		for range n {
			if _, err := s.submitLocked(wire.Record{Kind: wire.KindMessage, KeyID: s.keyID, Nick: "host", Text: "line"}); err != nil {
				t.Fatal(err)
			}
		}
		s.sendQueuedLocked()
		return len(sink.sentBlocks()), s.flushArmed
	}
	waitBlocks := func(n int) {
		t.Helper()
		for len(sink.sentBlocks()) < n {
			select {
			case <-sink.sent:
			case <-time.After(10 * time.Second):
				t.Fatalf("blocks %v sent, want %d", sink.sentBlocks(), n)
			}
		}
	}

	// A window of busyLines - 1 lines (a lone line at once, the rest on
	// the timer) is not busy: after it, FlushDelay of quiet will do.
	if blocks, armed := say(busyLines - 1); blocks != 1 || !armed {
		t.Fatalf("a burst: %d blocks sent at once, timer armed %v; want 1, armed", blocks, armed)
	}
	waitBlocks(2)
	advance(busyWindow)
	if blocks, armed := say(1); blocks != 3 || armed {
		t.Fatalf("a line after a window of %d lines: %d blocks sent at once, timer armed %v; want 3, not armed", busyLines-1, blocks, armed)
	}
	// A window of busyLines is busy: a line FlushDelay after a block
	// waits for the burst to end (burstGap without a line), where a quiet
	// room's would go at once.
	say(busyLines - 1)
	waitBlocks(4)
	advance(busyWindow)
	if blocks, armed := say(1); blocks != 5 || armed {
		t.Fatalf("a line %v after the last block: %d blocks sent at once, timer armed %v; want 5, not armed", busyWindow, blocks, armed)
	}
	advance(FlushDelay)
	start := time.Now()
	if blocks, armed := say(1); blocks != 5 || !armed {
		t.Fatalf("a line FlushDelay after a block in a busy room: %d blocks sent at once, timer armed %v; want 5, armed", blocks, armed)
	}
	waitBlocks(6)
	if waited := time.Since(start); waited < burstGap {
		t.Errorf("the line in a busy room went out after %v, want ≥ burstGap %v", waited, burstGap)
	}
	// A slow window again: a lone line goes at once.
	advance(busyWindow)
	if blocks, armed := say(1); blocks != 7 || armed {
		t.Fatalf("a lone line after a slow window: %d blocks sent at once, timer armed %v; want 7, not armed", blocks, armed)
	}
}

// TestQuietRoomLetsBlocksGo: the blocks a room keeps for repairs are let
// go once it has been quiet for quietBlocks, not before, and the next
// line is sent and kept as usual.
func TestQuietRoomLetsBlocksGo(t *testing.T) {
	tr := newTestRoom(t, memnet.New(1), "general")
	kept := func() (n int) {
		tr.seq.mu.Lock()
		defer tr.seq.mu.Unlock()
		for _, sb := range tr.seq.blocks {
			if sb != nil {
				n++
			}
		}
		return n
	}
	if _, err := tr.seq.Say("one"); err != nil {
		t.Fatal(err)
	}
	if kept() != 1 {
		t.Fatalf("%d blocks kept after a line, want 1", kept())
	}
	tr.host.Tick(time.Now().Add(quietBlocks / 2))
	if kept() != 1 {
		t.Fatalf("%d blocks kept after %v of quiet, want 1", kept(), quietBlocks/2)
	}
	tr.host.Tick(time.Now().Add(quietBlocks + time.Second))
	if kept() != 0 {
		t.Fatalf("%d blocks kept after %v of quiet, want none", kept(), quietBlocks+time.Second)
	}

	before := tr.stats.PacketsSent.Load()
	if _, err := tr.seq.Say("two"); err != nil {
		t.Fatal(err)
	}
	// Another goroutine (a tick's heartbeat) may be writing the outbox.
	waitWritten(t, tr.seq)
	if kept() != 1 || tr.stats.PacketsSent.Load() == before {
		t.Fatalf("after the next line: %d blocks kept, %d packets sent; want 1 kept and the block sent", kept(), tr.stats.PacketsSent.Load()-before)
	}
}

// TestBusyRoomBlockSpansBatches: a busy room's batches share one block
// when members report loss (with none, each batch is its block, at
// once), sent once no batch came for blockIdle, or at once when the next
// batch would not fit; the block verifies and its batches follow each
// other in sequence.
func TestBusyRoomBlockSpansBatches(t *testing.T) {
	sink := &blockSink{sent: make(chan struct{}, 1)}
	s := newPathHost(t, sink)
	line := func() {
		t.Helper()
		if _, err := s.submitLocked(wire.Record{Kind: wire.KindMessage, KeyID: s.keyID, Nick: "host", Text: pathLine}); err != nil {
			t.Fatal(err)
		}
	}
	s.mu.Lock()
	line() // a quiet room's lone line: block 1, at once
	s.sendQueuedLocked()
	if got := sink.sentBlocks(); len(got) != 1 {
		s.mu.Unlock()
		t.Fatalf("a lone line: shards of blocks %v sent, want one of block 1", got)
	}
	<-sink.sent
	// The standing clock never ends the window: the room is busy because
	// the test says so. With no loss reported, a batch is its block.
	s.busy = true
	for range 10 {
		line()
	}
	s.flushLocked()
	s.sendQueuedLocked()
	if got := sink.sentBlocks(); got[len(got)-1] != 2 || s.openRecs != 0 {
		s.mu.Unlock()
		t.Fatalf("a busy room's batch with no loss reported: shards of blocks %v sent, %d records held; want block 2 sent at once", got, s.openRecs)
	}
	<-sink.sent
	// Members that lose shards: the block waits for more batches.
	for i := range 16 {
		s.members[[wire.KeyIDLen]byte{0xfe, byte(i)}] = &hostSession{loss: 0.05, reported: true}
	}
	sent := len(sink.sentBlocks())
	for range 3 {
		for range 10 {
			line()
		}
		s.flushLocked() // as the burst's flush timer does
	}
	s.sendQueuedLocked()
	open, armed, now := s.openRecs, s.blockArmed, sink.sentBlocks()
	s.mu.Unlock()
	if open != 30 || !armed || len(now) != sent {
		t.Fatalf("three batches in a busy lossy room: %d records in the open block, block timer armed %v, shards of blocks %v sent; want 30, armed, no more than before", open, armed, now)
	}
	select {
	case <-sink.sent:
	case <-time.After(10 * time.Second):
		t.Fatal("the block timer never sent the block")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	sb := s.blocks[3%sentBlocks]
	if sb == nil || sb.no != 3 {
		t.Fatalf("block 3 not kept for repairs: %+v", sb)
	}
	payload, err := decodeBlock(sb.shards, sb.k, nil)
	if err != nil {
		t.Fatal(err)
	}
	payload, err = verifyBlock(s.host.cfg.Identity.Pub, s.bopts, &s.id, nil, newBlockDigester(), payload)
	if err != nil {
		t.Fatal(err)
	}
	next := uint64(12)
	batches := 0
	for len(payload) > 0 {
		b, rest, err := wire.NextBlockBatch(payload)
		if err != nil {
			t.Fatalf("block 3, batch %d: %v", batches, err)
		}
		bt, err := wire.ParseBlockBatch(b, nil, nil)
		if err != nil {
			t.Fatalf("block 3, batch %d: %v", batches, err)
		}
		if bt.First != next || len(bt.Records) != 10 {
			t.Errorf("block 3, batch %d: %d records from %d, want 10 from %d", batches, len(bt.Records), bt.First, next)
		}
		next += uint64(len(bt.Records))
		batches++
		payload = rest
	}
	if batches != 3 {
		t.Errorf("block 3 holds %d batches, want 3", batches)
	}

	// Lines until the open block is full: the batch is cut where the
	// next line would not fit, and the block goes, full to the shard;
	// the burst's other lines start the next.
	before, sent := s.block, 0
	for s.block == before {
		for range 40 {
			line()
			sent++
		}
		s.flushLocked()
	}
	if sb := s.blocks[s.block%sentBlocks]; sb.k != wire.MaxBlockShards {
		t.Errorf("a full block has k = %d, want %d", sb.k, wire.MaxBlockShards)
	}
	if s.openRecs == 0 || s.openRecs >= 40 || (sent-s.openRecs)%40 == 0 {
		t.Errorf("after a full block, %d records open, want the rest of the burst that filled it", s.openRecs)
	}
}
