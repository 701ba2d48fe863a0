package rooms

import (
	"testing"
	"time"

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
		s.sendQueuedLocked()
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

// TestForgedBlockIsDropped: a member holds the room's key, so it can seal
// shards that open; a block it signs itself, batches and all, is counted
// as badly signed and none of its lines is delivered.
func TestForgedBlockIsDropped(t *testing.T) {
	s := newPathHost(t, new(pktSink))
	m := newPathMember(t, s)
	forger := newTestIdentity(t)
	s.mu.Lock()
	key, room, next, block := s.key, s.id, s.next, s.block
	s.mu.Unlock()
	batch, err := signBatch(nil, forger, batchOpts(room), next, []wire.Record{{Kind: wire.KindMessage, KeyID: KeyID(forger.Pub), Nick: "host", Text: "forged"}})
	if err != nil {
		t.Fatal(err)
	}
	payload, err := signBlock(wire.AppendBlockBatch(nil, batch[:len(batch)-wire.SigLen]), forger, blockOpts(room))
	if err != nil {
		t.Fatal(err)
	}
	for _, pkt := range sealBlock(t, key, room, block+1, payload) {
		m.HandlePacket(pkt)
	}
	st := m.cfg.Stats
	if st.DataBadSig.Load() != 1 || st.DataDelivered.Load() != 0 {
		t.Errorf("a block signed by a member: data_bad_sig %d, %d lines delivered; want 1, none", st.DataBadSig.Load(), st.DataDelivered.Load())
	}
}

// sealBlock codes a block's payload and seals its data shards as block no
// under key, as anyone holding the room's key can.
func sealBlock(t *testing.T, key *epochKey, room [wire.RoomIDLen]byte, no uint64, payload []byte) [][]byte {
	t.Helper()
	shards, k, err := encodeBlockTo(nil, payload)
	if err != nil {
		t.Fatal(err)
	}
	var nb nonceBuf
	pkts := make([][]byte, k)
	for i := range k {
		if pkts[i], err = sealShard(nil, &nb, key, wire.TagOf(room), wire.ShardInfo{Block: no, Index: uint8(i), K: uint8(k), Sent: uint8(k)}, shards[i]); err != nil {
			t.Fatal(err)
		}
	}
	return pkts
}

// TestShardSetCountBelow: a block's received indexes are counted below
// any bound, across the words of the set.
func TestShardSetCountBelow(t *testing.T) {
	var s shardSet
	for _, i := range []uint8{0, 5, 63, 64, 65, 100, 127} {
		s.add(i)
	}
	s.add(5) // twice: a set
	for _, tt := range []struct{ n, want int }{
		{0, 0}, {1, 1}, {6, 2}, {63, 2}, {64, 3}, {65, 4}, {66, 5}, {101, 6}, {127, 6}, {128, 7}, {200, 7},
	} {
		if got := s.countBelow(tt.n); got != tt.want {
			t.Errorf("countBelow(%d) = %d, want %d", tt.n, got, tt.want)
		}
	}
}

// TestNackWaitsForTheBlocksEnd: a member that stopped getting a block's
// shards asks for the rest only once the block's first transmission is
// known to have been written (its last shard, or a later block's, came),
// or once nothing of the room came for nackRetry: until then the shards
// it lacks may be on their way from a host whose writes paused, or
// behind the repairs of other blocks on a slow link.
func TestNackWaitsForTheBlocksEnd(t *testing.T) {
	m := newPathMember(t, newPathHost(t, new(countSink)))
	m.mu.Lock()
	defer m.mu.Unlock()
	t0 := time.Unix(1_000_000, 0)
	const b = 7
	block := func(got ...uint8) *partial {
		p := &partial{k: 4, sent: 6, have: len(got), last: t0}
		for _, i := range got {
			p.got.add(i)
		}
		return p
	}
	m.rx.lastBlock = b
	quiet := t0.Add(nackHold + nackBackoff) // past any backoff
	for _, tt := range []struct {
		name  string
		p     *partial
		last  uint64    // newest block the member knows
		heard time.Time // when the room's latest packet came
		at    time.Time
		want  bool
	}{
		{"still within the hold", block(0, 5), b, t0, t0.Add(nackHold / 2), false},
		{"the last shard came", block(0, 5), b, t0, quiet, true},
		{"the first shards only", block(0, 1), b, t0, quiet, false},
		{"the first shards, nackRetry later", block(0, 1), b, t0, t0.Add(nackRetry), true},
		{"the first shards, other blocks' repairs since", block(0, 1), b, t0.Add(nackRetry), t0.Add(nackRetry), false},
		{"the first shards, nackRetry after the repairs", block(0, 1), b, t0.Add(nackRetry), t0.Add(2 * nackRetry), true},
		{"the first shards, then a later block", block(0, 1), b + 1, t0, quiet, true},
		{"known only from a later block", &partial{last: t0}, b + 1, t0, quiet, true},
	} {
		m.rx.lastBlock, m.rx.lastMcast = tt.last, tt.heard
		if got := m.nackDueLocked(b, tt.p, tt.at); got != tt.want {
			t.Errorf("%s: NACK due %v, want %v", tt.name, got, tt.want)
		}
	}
}

// TestNackBacksOff: a member asking again for a block none of whose
// shards came since doubles its wait each time, from nackRetry up to 8
// nackRetry, as TCP backs off its retransmissions (on a slow link a
// repair takes longer than nackRetry to come); a shard of the block
// starts it over.
func TestNackBacksOff(t *testing.T) {
	m := newPathMember(t, newPathHost(t, new(countSink)))
	m.mu.Lock()
	defer m.mu.Unlock()
	const b = 7
	t0 := time.Unix(1_000_000, 0)
	p := &partial{k: 4, sent: 6, have: 2, first: t0, last: t0, shards: make([][]byte, wire.MaxShards)}
	p.got.add(0)
	p.got.add(5) // the first transmission is all in: only nackAt times the NACKs
	rx := &m.rx
	rx.partials[b], rx.doneBelow, rx.lastBlock, rx.lastMcast = p, b, b, t0
	now := t0.Add(nackHold + nackBackoff)
	for _, wait := range []time.Duration{1, 2, 4, 8, 8} {
		wait *= nackRetry
		if es := m.nackEntriesLocked(now); len(es) != 1 || es[0].Block != b || es[0].Missing != 2 {
			t.Fatalf("at %v: NACK entries %+v, want block %d missing 2", now.Sub(t0), es, b)
		}
		if got := p.nackAt.Sub(now); got != wait {
			t.Fatalf("at %v: next NACK %v on, want %v", now.Sub(t0), got, wait)
		}
		if es := m.nackEntriesLocked(now.Add(wait - time.Millisecond)); len(es) != 0 {
			t.Fatalf("at %v: NACK entries %+v before the wait is out", now.Sub(t0), es)
		}
		now = now.Add(wait)
	}
	m.shardLocked(wire.ShardInfo{Block: b, Index: 1, K: 4, Sent: 6}, make([]byte, wire.ShardData), now)
	now = now.Add(nackHold)
	if es := m.nackEntriesLocked(now); len(es) != 1 || es[0].Missing != 1 {
		t.Fatalf("%v after a shard: NACK entries %+v, want block %d missing 1", nackHold, es, b)
	}
	if got := p.nackAt.Sub(now); got != nackRetry {
		t.Fatalf("after a shard: next NACK %v on, want %v", got, nackRetry)
	}
}

// TestFirstLossReadingComesEarly: a member's first loss reading counts
// each block as soon as it is resolved and a later one came (its first
// transmission is then all in), not once it is keepResolved blocks
// behind: until the host has a reading, a busy lossy room sends no parity
// and small blocks.
func TestFirstLossReadingComesEarly(t *testing.T) {
	const blocks = keepResolved - 4
	f := newPathFeed(t, 40, blocks, 1, 0.1)
	for f.one() {
	}
	m := f.m
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.rx.lossKnown {
		t.Fatalf("no loss reading after %d blocks that each lost a shard (%d shards counted)", blocks, m.rx.lossSent)
	}
	if m.rx.loss <= 0 || m.rx.loss >= 0.5 {
		t.Errorf("loss reading %.3f after a shard lost of each block, want a share of a shard a block", m.rx.loss)
	}
}
