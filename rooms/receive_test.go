package rooms

import (
	"testing"

	"meshd/rooms/wire"
)

// TestBlockLostWholeIsNotGivenUp: a member that lost a block whole, while
// the bigger block after it is still arriving, keeps waiting for it when
// the block before it completes with no sequence number known to be
// missing; the lost block's repair, arriving late, fills the gap. (A
// member that took "nothing known missing" to mean the unseen block held
// nothing gave it up, and only a fetch over its session could bring its
// line.)
func TestBlockLostWholeIsNotGivenUp(t *testing.T) {
	sink := new(pktSink)
	s := newPathHost(t, sink)
	m := newPathMember(t, s)
	var blocks [3][][]byte
	s.mu.Lock()
	for i, lines := range []int{1, 1, 20} {
		for range lines {
			if _, err := s.submitLocked(wire.Record{Kind: wire.KindMessage, KeyID: s.keyID, Nick: "ann", Text: pathLine}); err != nil {
				s.mu.Unlock()
				t.Fatal(err)
			}
		}
		s.flushLocked()
		blocks[i], sink.pkts = sink.pkts, nil
	}
	last := s.next - 1
	s.mu.Unlock()
	if len(blocks[2]) < 2 {
		t.Fatalf("the third block has %d shards, want several", len(blocks[2]))
	}

	state := func() (next, doneBelow uint64) {
		m.mu.Lock()
		defer m.mu.Unlock()
		return m.rx.next, m.rx.doneBelow
	}
	// The third block arrives but for one shard; the second is lost
	// whole; then the first arrives and completes.
	for _, p := range blocks[2][1:] {
		m.HandlePacket(p)
	}
	for _, p := range blocks[0] {
		m.HandlePacket(p)
	}
	if _, doneBelow := state(); doneBelow > 2 {
		t.Fatalf("after the first block, blocks below %d are resolved: the second, lost whole, was given up", doneBelow)
	}
	m.HandlePacket(blocks[2][0])
	for _, p := range blocks[1] {
		m.HandlePacket(p)
	}
	if next, _ := state(); next != last+1 {
		t.Fatalf("after every block arrived, the member delivered up to %d, want %d", next-1, last)
	}
}
