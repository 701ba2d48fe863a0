package rooms

import (
	"fmt"
	"math"
	"sync"

	"meshd/fec"
	"meshd/rooms/wire"
)

// parityFor is how many parity shards a block of k data shards can have:
// as many as data shards (enough for 50 % loss), at least 4 so that small
// blocks can be repaired more than once, and at most maxParity. The host
// codes them all when it sends the block and keeps them for repairs; once
// they are spent, repairs send data shards again.
func parityFor(k int) int { return min(max(k, 4), maxParity) }

// maxParity bounds a block's parity: a big block's parity shards cost the
// host CPU (each is a sum over every data shard) and memory while it keeps
// the block for repairs, and a quarter of a full block is more than the
// unluckiest of 16 members loses at 20 %. Repairs past it make more
// (extendBlock).
const maxParity = 32

// coders holds FEC coders per block size, made on first use: for k data
// shards, tier 0 makes the parityFor(k) parity shards a block is sent
// with, and each tier after it twice the tier before, up to all
// wire.MaxShards - k a block may have. Parity shard k+j is the same for
// every tier. Repairs that have spent a block's parity extend it a tier
// at a time (extendBlock, with the tier's Extender, which makes only the
// parity that the tier before lacks), and a member decodes with the least
// tier that holds the shards it has (decodeBlock): a coder's cost grows
// with its parity (reedsolomon's scratch for a decode is k × m × 64
// bytes, 1 MiB for k = 128 with all 127, which kept members' RSS 6 MiB
// higher at full rate; making all of a block's parity at once cost a
// router the CPU of four blocks), and most blocks need no more than tier
// 0. A host makes a tier's Extender, a member its Coder; each holds its
// coding matrix, some k × (k + parity) bytes (41 KB for tier 2 of
// k = 128).
var coders struct {
	sync.Mutex
	tiers [wire.MaxBlockShards + 1][maxTiers]struct {
		c   *fec.Coder
		ext *fec.Extender
	}
}

// maxTiers bounds the tiers of a block size: parityFor(k) is at least 4,
// and 4 doubled 6 times passes wire.MaxShards.
const maxTiers = 8

// tierParity is how many parity shards tier t of blocks of k data shards
// makes.
func tierParity(k, t int) int {
	return min(parityFor(k)<<t, wire.MaxShards-k)
}

// coderFor returns the coder that sends blocks of k data shards.
func coderFor(k int) (*fec.Coder, error) { return tierCoder(k, 0) }

func tierCoder(k, t int) (*fec.Coder, error) {
	c, _, err := tierCoders(k, t, false)
	return c, err
}

// tierCoders returns the Coder of tier t of blocks of k data shards, or
// with ext its Extender, making the one asked for if it is not there.
func tierCoders(k, t int, ext bool) (*fec.Coder, *fec.Extender, error) {
	if err := checkK(k); err != nil {
		return nil, nil, err
	}
	coders.Lock()
	tier := &coders.tiers[k][t]
	var err error
	switch {
	case ext && tier.ext == nil:
		// Tier 0 comes with the block: a block short of it (t = 0)
		// gets an Extender of no parity, which refuses it.
		tier.ext, err = fec.NewExtender(k, tierParity(k, max(t-1, 0)), tierParity(k, t))
	case !ext && tier.c == nil:
		tier.c, err = fec.New(k, tierParity(k, t))
	}
	c, e := tier.c, tier.ext
	coders.Unlock()
	return c, e, err
}

// checkK refuses a block size out of bounds.
func checkK(k int) error {
	if k < 1 || k > wire.MaxBlockShards {
		return fmt.Errorf("block of %d data shards: %w", k, wire.ErrInvalid)
	}
	return nil
}

// tierFor is the least tier of blocks of k data shards that has n shards
// in all (n <= wire.MaxShards).
func tierFor(k, n int) int {
	t := 0
	for k+tierParity(k, t) < n && t < maxTiers-1 {
		t++
	}
	return t
}

// extendBlock adds parity to a block of k data shards whose parity
// repairs have spent: the next tier's. A repair that sent a data shard
// again helped only the members that had lost that shard; a fresh parity
// shard helps every member that lacks any. At 20 % loss, members that
// lost whole runs of a block drew repairs of data shards that others had
// already, four times the data in all. It returns shards unchanged once
// they are all a block may have.
func extendBlock(shards [][]byte, k int) ([][]byte, error) {
	if len(shards) >= wire.MaxShards {
		return shards, nil
	}
	_, e, err := tierCoders(k, tierFor(k, len(shards)+1), true)
	if err != nil {
		return nil, err
	}
	return e.Extend(shards)
}

// encodeBlockTo codes a block's payload, its batches and signature, into
// k data shards of at most wire.ShardData bytes, padded (package fec), and
// adds parity: k data shards, then parityFor(k) parity shards. It reuses
// the shards of dst, typically an older block's, where their capacity
// allows.
func encodeBlockTo(dst [][]byte, payload []byte) (shards [][]byte, k int, err error) {
	if len(payload) == 0 {
		return nil, 0, fmt.Errorf("empty block: %w", wire.ErrInvalid)
	}
	k = (len(payload) + wire.ShardData) / wire.ShardData // ⌈(len + 1) / ShardData⌉: the padding's first byte
	c, err := coderFor(k)
	if err != nil {
		return nil, 0, err
	}
	shards, err = c.EncodeTo(dst, payload)
	return shards, k, err
}

// decodeBlock rebuilds a block's payload, into buf[:0], from its shards in
// index order, up to wire.MaxShards of them (nil where missing; a lost
// data shard given as an empty buffer is rebuilt there).
func decodeBlock(shards [][]byte, k int, buf []byte) ([]byte, error) {
	if err := checkK(k); err != nil {
		return nil, err
	}
	n := min(len(shards), wire.MaxShards)
	for n > k && len(shards[n-1]) == 0 {
		n--
	}
	t := tierFor(k, n)
	c, err := tierCoder(k, t)
	if err != nil {
		return nil, err
	}
	if all := k + tierParity(k, t); len(shards) < all {
		// A block as its host made it may have fewer.
		shards = append(shards[:len(shards):len(shards)], make([][]byte, all-len(shards))...)
	} else {
		shards = shards[:all]
	}
	return c.DecodeTo(buf, shards)
}

// Proactive parity: how many parity shards go with a block's data shards
// at once, before anyone asks. What it leaves, NACKs fetch (§4.5).

// loneLineParity is the proactive parity of a lone line in a quiet room
// (a batch of one record, one or two shards), where a repair's round trip
// is what a reader notices and parity is a packet or two: the fewest
// parity shards for which a member that loses a share loss of shards
// (independently) misses the block with probability at most 1e-3.
func loneLineParity(k int, loss float64) int {
	if loss <= 0 {
		return 0
	}
	loss = min(loss, 0.9)
	limit := parityFor(k)
	for p := 0; p < limit; p++ {
		if blockLossProb(k, k+p, loss) <= 1e-3 {
			return p
		}
	}
	return limit
}

// proactiveParity is the proactive parity of a busy room's block of k data
// shards, when the room's members on multicast each lose a share loss of
// shards (independently). Here the bytes count. A repair is multicast once
// for every member that lacks the block, so the host has to send, one way
// or the other, as many shards beyond k as the unluckiest member loses;
// sending them before anyone asks costs no more bytes, as long as that
// member would have asked for them. So a busy block gets the parity that
// the unluckiest of the members almost surely (probability 0.9) loses
// anyway, and NACKs fetch the rest. (Parity for each member to get the
// block with probability 0.98, or 0.999 for blocks of one or two shards,
// at the worst loss any member reported, cost 38 % of the data at 5 %
// loss with 16 members in the benchmark harness's capacity case, where
// this sends 20 to 25 %; docs/BENCHMARKS.md.)
func proactiveParity(k, members int, loss float64) int {
	if loss <= 0 || members <= 0 {
		return 0
	}
	loss = min(loss, 0.9)
	limit := parityFor(k)
	for p := 1; p <= limit; p++ {
		// The chance that every member loses fewer than p of k+p
		// shards: that each gets at least k+1 of them.
		if math.Pow(1-blockLossProb(k+1, k+p, loss), float64(members)) > 0.1 {
			return p - 1
		}
	}
	return limit
}

// repairShards is how many shards a repair sends, at most limit, when the
// neediest member asks for missing and members each lose a share loss of
// shards: enough that it gets all it asked for with probability 0.9. A
// repair of exactly what was asked is short by the loss, and each round
// that follows costs a NACK's hold and a round trip: at 20 % loss, blocks
// waiting on their third or fourth round outlived fetchAfter, and members
// fetched every record after them over their sessions.
func repairShards(missing, limit int, loss float64) int {
	if loss <= 0 || missing <= 0 {
		return min(missing, limit)
	}
	loss = min(loss, 0.9)
	for r := missing; r < limit; r++ {
		if blockLossProb(missing, r, loss) <= 0.1 {
			return r
		}
	}
	return limit
}

// blockLossProb is the probability that fewer than k of n shards arrive
// when each is lost independently with probability p.
func blockLossProb(k, n int, p float64) float64 {
	var prob float64
	for got := 0; got < k; got++ {
		prob += binomial(n, got) * math.Pow(1-p, float64(got)) * math.Pow(p, float64(n-got))
	}
	return prob
}

func binomial(n, r int) float64 {
	v := 1.0
	for i := 1; i <= r; i++ {
		v = v * float64(n-r+i) / float64(i)
	}
	return v
}
