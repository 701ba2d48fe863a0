package rooms

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"meshd/fec"
	"meshd/rooms/wire"
)

// testBatch returns n pseudo-random bytes standing in for a signed batch:
// the block coder carries bytes, it does not read them.
func testBatch(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, 1))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

var blockSizes = []int{1, 200, wire.ShardData - 1, wire.ShardData, wire.MaxText + 500, wire.MaxBatch}

func mustEncodeBlock(t testing.TB, batch []byte) ([][]byte, int) {
	t.Helper()
	shards, k, err := encodeBlockTo(nil, batch)
	if err != nil {
		t.Fatalf("encodeBlockTo(%d bytes) = %v, want nil", len(batch), err)
	}
	return shards, k
}

// without returns a copy of shards with those at the given indexes nil.
func without(shards [][]byte, lost []int) [][]byte {
	out := slices.Clone(shards)
	for _, i := range lost {
		out[i] = nil
	}
	return out
}

func TestBlockRoundTrip(t *testing.T) {
	for _, n := range blockSizes {
		batch := testBatch(n, uint64(n))
		shards, k := mustEncodeBlock(t, batch)
		// Room for the payload and the padding's first byte.
		if want := (n + 1 + wire.ShardData - 1) / wire.ShardData; k != want {
			t.Errorf("encodeBlockTo(%d bytes): k = %d, want %d", n, k, want)
		}
		if want := k + parityFor(k); len(shards) != want {
			t.Errorf("encodeBlockTo(%d bytes) = %d shards, want %d", n, len(shards), want)
		}
		for i, s := range shards {
			if len(s) != len(shards[0]) || len(s) > wire.ShardData {
				t.Errorf("encodeBlockTo(%d bytes): shard %d of %d bytes, shard 0 of %d, bound %d", n, i, len(s), len(shards[0]), wire.ShardData)
			}
		}
		// Cut evenly: the padding is at most a byte per shard.
		if pad := k*len(shards[0]) - n; pad < 1 || pad > k {
			t.Errorf("encodeBlockTo(%d bytes): %d shards of %d bytes pad %d bytes, want 1 to %d", n, k, len(shards[0]), pad, k)
		}
		if pkt := wire.ShardHeaderLen + len(shards[0]) + wire.TagLen; pkt > wire.MaxPacket {
			t.Errorf("encodeBlockTo(%d bytes): a shard packet would be %d bytes, over MaxPacket", n, pkt)
		}
		got, err := decodeBlock(slices.Clone(shards), k, nil)
		if err != nil || !bytes.Equal(got, batch) {
			t.Errorf("decodeBlock(all %d shards of %d bytes) = %d bytes, %v, want the batch", len(shards), n, len(got), err)
		}
		// Only the data shards, the way a clean link delivers them.
		onlyData := slices.Clone(shards)
		clear(onlyData[k:])
		got, err = decodeBlock(onlyData, k, make([]byte, 0, n))
		if err != nil || !bytes.Equal(got, batch) {
			t.Errorf("decodeBlock(data shards of %d bytes) = %d bytes, %v, want the batch", n, len(got), err)
		}
	}
}

func TestBlockSurvivesLoss(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, n := range blockSizes {
		batch := testBatch(n, uint64(n)+7)
		shards, k := mustEncodeBlock(t, batch)
		m := parityFor(k)
		trials := 50
		if testing.Short() {
			trials = 10
		}
		for range trials {
			// Any m shards lost: the block still decodes.
			lost := r.Perm(len(shards))[:m]
			got, err := decodeBlock(without(shards, lost), k, nil)
			if err != nil || !bytes.Equal(got, batch) {
				t.Errorf("decodeBlock(%d bytes, shards %v lost) = %d bytes, %v, want the batch", n, lost, len(got), err)
			}
			// Fewer losses, too.
			few := lost[:r.IntN(m+1)]
			got, err = decodeBlock(without(shards, few), k, nil)
			if err != nil || !bytes.Equal(got, batch) {
				t.Errorf("decodeBlock(%d bytes, shards %v lost) = %d bytes, %v, want the batch", n, few, len(got), err)
			}
			// One more: too few shards are left.
			tooMany := r.Perm(len(shards))[:m+1]
			if got, err := decodeBlock(without(shards, tooMany), k, nil); err == nil {
				t.Errorf("decodeBlock(%d bytes, shards %v lost) = %d bytes, nil, want an error", n, tooMany, len(got))
			} else if !errors.Is(err, fec.ErrTooFewShards) {
				t.Errorf("decodeBlock(%d bytes, shards %v lost) = %v, want %v", n, tooMany, err, fec.ErrTooFewShards)
			}
		}
		// Every data shard lost, the parity alone rebuilds the block
		// when there is as much of it as data.
		if m >= k {
			lost := make([]int, k)
			for i := range lost {
				lost[i] = i
			}
			got, err := decodeBlock(without(shards, lost), k, nil)
			if err != nil || !bytes.Equal(got, batch) {
				t.Errorf("decodeBlock(%d bytes, data shards lost) = %d bytes, %v, want the batch", n, len(got), err)
			}
		}
		if _, err := decodeBlock(make([][]byte, len(shards)), k, nil); err == nil {
			t.Errorf("decodeBlock(no shards) = nil, want an error")
		}
	}
}

func TestBlockBounds(t *testing.T) {
	if shards, k, err := encodeBlockTo(nil, nil); err == nil {
		t.Errorf("encodeBlockTo(empty) = %d shards, k %d, nil, want an error", len(shards), k)
	}
	// The largest batch fits in the largest block the coders allow.
	if _, k := mustEncodeBlock(t, testBatch(wire.MaxBatch, 3)); k > wire.MaxBlockShards {
		t.Errorf("encodeBlockTo(MaxBatch) = k %d, over %d", k, wire.MaxBlockShards)
	}
	full := testBatch(wire.MaxBlock, 5)
	shards, k := mustEncodeBlock(t, full)
	if k != wire.MaxBlockShards {
		t.Errorf("encodeBlockTo(MaxBlock) = k %d, want %d", k, wire.MaxBlockShards)
	}
	// Repairs extend it a tier at a time, twice the parity each time,
	// up to all it may have; the last k of those rebuild the block.
	for _, want := range []int{k + 2*maxParity, wire.MaxShards, wire.MaxShards} {
		var err error
		if shards, err = extendBlock(shards, k); err != nil || len(shards) != want {
			t.Fatalf("extendBlock(k %d) = %d shards, %v, want %d", k, len(shards), err, want)
		}
	}
	clear(shards[:wire.MaxShards-k])
	if got, err := decodeBlock(shards, k, nil); err != nil || !bytes.Equal(got, full) {
		t.Errorf("decodeBlock(the last %d of %d shards) = %d bytes, %v, want the block", k, wire.MaxShards, len(got), err)
	}
	for _, k := range []int{0, -1, wire.MaxBlockShards + 1, wire.MaxShards} {
		if _, err := decodeBlock(make([][]byte, 2), k, nil); !errors.Is(err, wire.ErrInvalid) {
			t.Errorf("decodeBlock(k %d) = %v, want %v", k, err, wire.ErrInvalid)
		}
	}
	// Shards of another block size do not decode.
	shards, k = mustEncodeBlock(t, testBatch(3000, 4))
	if _, err := decodeBlock(shards, k+1, nil); err == nil {
		t.Errorf("decodeBlock(k %d shards as k %d) = nil, want an error", k, k+1)
	}
}

func TestParityFor(t *testing.T) {
	for k := 1; k <= wire.MaxBlockShards; k++ {
		p := parityFor(k)
		if p < 4 || k+p > wire.MaxShards {
			t.Errorf("parityFor(%d) = %d", k, p)
		}
		if p < min(k, maxParity) {
			t.Errorf("parityFor(%d) = %d, fewer than the data shards and than %d", k, p, maxParity)
		}
	}
	if got := parityFor(1); got != 4 {
		t.Errorf("parityFor(1) = %d, want 4", got)
	}
}

func TestProactiveParity(t *testing.T) {
	losses := []float64{0, 0.001, 0.01, 0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1}
	for _, members := range []int{1, 2, 16, 50} {
		for k := 1; k <= wire.MaxBlockShards; k++ {
			limit := parityFor(k)
			if got := proactiveParity(k, members, 0); got != 0 {
				t.Errorf("proactiveParity(%d, %d, 0) = %d, want 0", k, members, got)
			}
			if got := proactiveParity(k, members, -0.5); got != 0 {
				t.Errorf("proactiveParity(%d, %d, -0.5) = %d, want 0", k, members, got)
			}
			prev := 0
			for _, loss := range losses {
				p := proactiveParity(k, members, loss)
				if p < prev {
					t.Errorf("proactiveParity(%d, %d, %v) = %d, less than %d at a lower loss", k, members, loss, p, prev)
				}
				prev = p
				if p < 0 || p > limit {
					t.Errorf("proactiveParity(%d, %d, %v) = %d, want 0..parityFor = %d", k, members, loss, p, limit)
				}
				if got := proactiveParity(k, 0, loss); got != 0 {
					t.Errorf("proactiveParity(%d, 0, %v) = %d, want 0: no member on multicast", k, loss, got)
				}
				if loss <= 0 {
					continue
				}
				eff := min(loss, 0.9)
				// The unluckiest member loses at least p shards of the k+p
				// sent with probability ≥ 0.9, and p+1 of k+p+1 with less.
				unluckiest := func(p int) float64 {
					return 1 - math.Pow(1-blockLossProb(k+1, k+p, eff), float64(members))
				}
				if p > 0 && unluckiest(p) < 0.9 {
					t.Errorf("proactiveParity(%d, %d, %v) = %d, but the unluckiest member loses %d with probability %v < 0.9", k, members, loss, p, p, unluckiest(p))
				}
				if p < limit && unluckiest(p+1) >= 0.9 {
					t.Errorf("proactiveParity(%d, %d, %v) = %d, but the unluckiest member loses %d with probability %v ≥ 0.9", k, members, loss, p, p+1, unluckiest(p+1))
				}
			}
		}
	}
	// More members, more parity: the unluckiest of many loses more.
	for k := 3; k <= wire.MaxBlockShards; k++ {
		if a, b := proactiveParity(k, 2, 0.1), proactiveParity(k, 50, 0.1); a > b {
			t.Errorf("proactiveParity(%d, 2, 0.1) = %d > proactiveParity(%d, 50, 0.1) = %d", k, a, k, b)
		}
	}

	// A lone line keeps the strict residual: at 10 % loss, at least 2
	// parity (0.1³ is 1e-3 only in exact arithmetic).
	const residual = 1e-3
	for k := 1; k <= 2; k++ {
		prev := 0
		for _, loss := range losses {
			p := loneLineParity(k, loss)
			if p < prev || p > parityFor(k) {
				t.Errorf("loneLineParity(%d, %v) = %d, want %d..parityFor", k, loss, p, prev)
			}
			prev = p
			eff := min(loss, 0.9)
			if loss > 0 && p < parityFor(k) && blockLossProb(k, k+p, eff) > residual {
				t.Errorf("loneLineParity(%d, %v) = %d, but a member misses the block with probability %v > %v", k, loss, p, blockLossProb(k, k+p, eff), residual)
			}
			if p > 0 && blockLossProb(k, k+p-1, eff) <= residual {
				t.Errorf("loneLineParity(%d, %v) = %d, but %d would do", k, loss, p, p-1)
			}
		}
	}
	if got := loneLineParity(1, 0.1); got < 2 {
		t.Errorf("loneLineParity(1, 0.1) = %d, want ≥ 2", got)
	}
	// A busy room's blocks: at 5 % loss, 16 members, 9 data shards get 1
	// parity (the unluckiest member loses 2 of 11 with probability 0.82
	// only); at 20 %, 12 data shards get 5.
	if got := proactiveParity(9, 16, 0.05); got != 1 {
		t.Errorf("proactiveParity(9, 16, 0.05) = %d, want 1", got)
	}
	if got := proactiveParity(12, 16, 0.2); got != 5 {
		t.Errorf("proactiveParity(12, 16, 0.2) = %d, want 5", got)
	}
	// High loss asks for all the parity there is.
	if got := proactiveParity(20, 16, 0.9); got != parityFor(20) {
		t.Errorf("proactiveParity(20, 16, 0.9) = %d, want parityFor(20) = %d", got, parityFor(20))
	}
}

func TestBlockLossProb(t *testing.T) {
	tests := []struct {
		k, n int
		p    float64
		want float64
	}{
		{1, 1, 0.1, 0.1},
		{1, 3, 0.1, 1e-3},
		{2, 2, 0.5, 0.75},
		{2, 3, 0.5, 0.5},
		{3, 3, 0, 0},
		{3, 5, 1, 1},
	}
	for _, tt := range tests {
		if got := blockLossProb(tt.k, tt.n, tt.p); got < tt.want-1e-12 || got > tt.want+1e-12 {
			t.Errorf("blockLossProb(%d, %d, %v) = %v, want %v", tt.k, tt.n, tt.p, got, tt.want)
		}
	}
}

func benchBlock(b *testing.B, n int) {
	batch := testBatch(n, 9)
	b.Run("encode", func(b *testing.B) {
		b.SetBytes(int64(n))
		b.ReportAllocs()
		for b.Loop() {
			if _, _, err := encodeBlockTo(nil, batch); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("decode", func(b *testing.B) {
		shards, k := mustEncodeBlock(b, batch)
		lost := slices.Clone(shards[0])
		work := make([][]byte, len(shards))
		buf := make([]byte, 0, n)
		b.SetBytes(int64(n))
		b.ReportAllocs()
		for b.Loop() {
			// The first data shard lost; Decode rebuilds it into the
			// spare capacity given in its place.
			copy(work, shards)
			work[0] = lost[:0]
			out, err := decodeBlock(work, k, buf)
			if err != nil {
				b.Fatal(err)
			}
			buf = out
		}
		if !bytes.Equal(buf, batch) {
			b.Fatal("decodeBlock did not rebuild the batch")
		}
	})
}

func BenchmarkBlock200(b *testing.B) { benchBlock(b, 200) }
func BenchmarkBlock16K(b *testing.B) { benchBlock(b, 16<<10) }

// TestBlockParityFromMembersLoss: a busy block's proactive parity is sized
// for the unluckiest of the members on multicast at their mean reported
// loss, a lone line's for the worst loss any member reported; members on
// the stream count for neither, and one that has not reported yet counts
// as a member but not in the mean.
func TestBlockParityFromMembersLoss(t *testing.T) {
	s := newPathHost(t, new(countSink))
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range 15 {
		s.members[[wire.KeyIDLen]byte{0xfe, byte(i)}] = &hostSession{loss: 0.04, reported: true}
	}
	s.members[[wire.KeyIDLen]byte{0xfe, 15}] = &hostSession{loss: 0.2, reported: true}
	s.members[[wire.KeyIDLen]byte{0xfe, 16}] = &hostSession{loss: 0.9, reported: true, streaming: true}
	s.members[[wire.KeyIDLen]byte{0xfe, 17}] = &hostSession{} // joined, no report yet: counted, not averaged
	s.loss = 0.2
	mean := (15*0.04 + 0.2) / 16
	for _, lines := range []int{1, 50} {
		for range lines {
			if _, err := s.submitLocked(wire.Record{Kind: wire.KindMessage, KeyID: s.keyID, Nick: "ann", Text: pathLine}); err != nil {
				t.Fatal(err)
			}
		}
		s.flushLocked()
		s.sendBlockLocked() // a busy room would hold it for more lines
		sb := s.blocks[s.block%sentBlocks]
		want := proactiveParity(sb.k, 17, mean)
		if lines == 1 {
			want = loneLineParity(sb.k, 0.2)
		}
		if sb.sent-sb.k != want {
			t.Errorf("block of %d lines, k = %d: %d parity sent, want %d", lines, sb.k, sb.sent-sb.k, want)
		}
	}
}

// TestRepairShards: a repair sends what was asked where nothing is lost,
// otherwise the fewest shards that bring the asker all it asked for with
// probability 0.9, within the limit.
func TestRepairShards(t *testing.T) {
	for _, missing := range []int{1, 2, 4, 10, 30} {
		if got := repairShards(missing, 96, 0); got != missing {
			t.Errorf("repairShards(%d, 96, 0) = %d, want %d", missing, got, missing)
		}
		for _, loss := range []float64{0.01, 0.05, 0.2, 0.5, 0.95} {
			r := repairShards(missing, 96, loss)
			eff := min(loss, 0.9)
			switch {
			case r < missing || r > 96:
				t.Errorf("repairShards(%d, 96, %v) = %d, want %d..96", missing, loss, r, missing)
			case r < 96 && blockLossProb(missing, r, eff) > 0.1:
				t.Errorf("repairShards(%d, 96, %v) = %d: the asker misses some with probability %v > 0.1", missing, loss, r, blockLossProb(missing, r, eff))
			case r > missing && blockLossProb(missing, r-1, eff) <= 0.1:
				t.Errorf("repairShards(%d, 96, %v) = %d, but %d would do", missing, loss, r, r-1)
			}
		}
	}
	if got := repairShards(4, 96, 0.2); got != 6 {
		t.Errorf("repairShards(4, 96, 0.2) = %d, want 6", got)
	}
	if got := repairShards(30, 32, 0.5); got != 32 {
		t.Errorf("repairShards(30, 32, 0.5) = %d, want the limit 32", got)
	}
}

// TestRepairsMakeFreshParity: repairs that have spent a block's parity
// send parity made for them, never sent before, up to wire.MaxShards
// shards, and a member that got nothing else of the block rebuilds it
// from them.
func TestRepairsMakeFreshParity(t *testing.T) {
	sink := new(pktSink)
	s := newPathHost(t, sink)
	makeBlocks(t, s, sink, 1, 1, 0) // a quiet room's first line: a block of its own
	m := newPathMember(t, s)
	makeBlocks(t, s, sink, 1, 40, 0)
	clock := time.Unix(1_000_000, 0)
	s.mu.Lock()
	s.now = func() time.Time { return clock }
	no, last := s.block, s.next-1
	k := s.blocks[no%sentBlocks].k
	s.mu.Unlock()
	if k < 4 || 2*k+parityFor(k) > wire.MaxShards {
		t.Fatalf("a block of 40 lines has k = %d; the test wants 4 <= k <= %d", k, (wire.MaxShards-parityFor(k))/2)
	}
	round := func() []wire.ShardInfo {
		sink.pkts = nil
		s.mu.Lock()
		s.askLocked(no, k)
		clock = clock.Add(repairHold)
		s.mu.Unlock()
		s.repair()
		var got []wire.ShardInfo
		for _, p := range sink.pkts {
			si, err := wire.ParseShardInfo(p)
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, si)
		}
		return got
	}
	var fresh [][]byte
	next := k
	for r := range 2 {
		got := round()
		if len(got) != k {
			t.Fatalf("repair round %d: %d shards, want %d", r, len(got), k)
		}
		for _, si := range got {
			if int(si.Index) != next {
				t.Fatalf("repair round %d sent shard %d, want %d: parity not sent before", r, si.Index, next)
			}
			next++
		}
		if r == 1 {
			fresh = sink.pkts
		}
	}
	if next <= k+parityFor(k) {
		t.Fatalf("two rounds of %d sent up to shard %d, within the block's first %d parity", k, next-1, parityFor(k))
	}
	for _, p := range fresh {
		m.HandlePacket(p)
	}
	m.mu.Lock()
	got := m.rx.next - 1
	m.mu.Unlock()
	if got != last {
		t.Fatalf("from the second round's parity alone the member delivered up to %d, want %d", got, last)
	}
}

// TestDecodeAnyTier: a block repairs extended tier after tier decodes
// from any k of its shards, whichever tier the highest of them is from;
// the shards of one tier are the same as another tier's at their index.
func TestDecodeAnyTier(t *testing.T) {
	for _, n := range []int{100, 5000, 60000, wire.MaxBlock} {
		payload := testBatch(n, uint64(n))
		shards, k := mustEncodeBlock(t, payload)
		first := bytes.Clone(shards[len(shards)-1])
		for len(shards) < wire.MaxShards {
			var err error
			if shards, err = extendBlock(shards, k); err != nil {
				t.Fatal(err)
			}
		}
		if !bytes.Equal(shards[k+parityFor(k)-1], first) {
			t.Errorf("k %d: the last parity shard of the first tier changed when repairs extended the block", k)
		}
		for tier := 0; tier < maxTiers && (tier == 0 || tierParity(k, tier) > tierParity(k, tier-1)); tier++ {
			end := k + tierParity(k, tier)
			in := make([][]byte, wire.MaxShards)
			copy(in[end-k:end], shards[end-k:end])
			for i := range min(end-k, k) {
				in[i] = make([]byte, 0, len(shards[0])) // lost: rebuilt here
			}
			got, err := decodeBlock(in, k, nil)
			if err != nil || !bytes.Equal(got, payload) {
				t.Errorf("k %d, tier %d: decodeBlock(shards %d..%d) = %d bytes, %v, want the block", k, tier, end-k, end-1, len(got), err)
			}
		}
	}
}

// TestExtendBlockMatchesTier: extending a block from each tier to the next
// gives exactly the shards that the bigger tier's coder makes of the
// block, up to wire.MaxShards, and leaves the shards it had as they were,
// the same buffers with the same bytes: a repair's packet must be the
// first one again byte for byte (§4.3).
func TestExtendBlockMatchesTier(t *testing.T) {
	for _, k := range []int{1, 2, 17, 64, wire.MaxBlockShards} {
		payload := testBatch(k*wire.ShardData-1-int(k%3), uint64(k))
		shards, got := mustEncodeBlock(t, payload)
		if got != k {
			t.Fatalf("encodeBlockTo(%d bytes) = k %d, want %d", len(payload), got, k)
		}
		for tier := 1; len(shards) < wire.MaxShards; tier++ {
			before := slices.Clone(shards)
			orig := make([][]byte, len(shards))
			for i, s := range shards {
				orig[i] = bytes.Clone(s)
			}
			var err error
			if shards, err = extendBlock(shards, k); err != nil {
				t.Fatalf("k %d: extendBlock(%d shards) = %v", k, len(before), err)
			}
			c, err := tierCoder(k, tier)
			if err != nil {
				t.Fatal(err)
			}
			want, err := c.Encode(payload)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.EqualFunc(shards, want, bytes.Equal) {
				t.Fatalf("k %d: extendBlock(%d shards) = %d shards, not the %d of tier %d", k, len(before), len(shards), len(want), tier)
			}
			for i := range before {
				if &shards[i][0] != &before[i][0] || !bytes.Equal(before[i], orig[i]) {
					t.Fatalf("k %d: extendBlock(%d shards) replaced or changed shard %d", k, len(before), i)
				}
			}
		}
		if len(shards) != wire.MaxShards {
			t.Fatalf("k %d: extended to %d shards, want %d", k, len(shards), wire.MaxShards)
		}
		if more, err := extendBlock(shards, k); err != nil || len(more) != wire.MaxShards {
			t.Errorf("k %d: extendBlock(all %d shards) = %d shards, %v, want them unchanged", k, wire.MaxShards, len(more), err)
		}
	}
}

// BenchmarkExtendBlock is a repair's extension of a block of k full
// shards from one tier to the next, the first two tiers after the one it
// is sent with, into the buffers the block already has.
func BenchmarkExtendBlock(b *testing.B) {
	for _, k := range []int{1, 8, 17, 64, wire.MaxBlockShards} {
		for tier := 1; tier <= 2; tier++ {
			from, to := tierParity(k, tier-1), tierParity(k, tier)
			b.Run(fmt.Sprintf("k=%d,%d-%d", k, from, to), func(b *testing.B) {
				shards, _ := mustEncodeBlock(b, testBatch(k*wire.ShardData-1, 1))
				for len(shards) < k+to {
					var err error
					if shards, err = extendBlock(shards, k); err != nil {
						b.Fatal(err)
					}
				}
				b.SetBytes(int64((to - from) * wire.ShardData)) // the parity made
				b.ReportAllocs()
				for b.Loop() {
					var err error
					if shards, err = extendBlock(shards[:k+from], k); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
