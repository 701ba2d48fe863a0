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
// blocks can be repaired more than once, within MaxShards.
func parityFor(k int) int { return min(wire.MaxShards-k, max(k, 4)) }

// coders holds one FEC coder per block size, made on first use: building
// one inverts a matrix, and a room sends blocks of a handful of sizes.
var coders struct {
	sync.Mutex
	c [wire.MaxShards + 1]*fec.Coder
}

func coderFor(k int) (*fec.Coder, error) {
	if k < 1 || k > wire.MaxShards/2 {
		return nil, fmt.Errorf("block of %d data shards: %w", k, wire.ErrInvalid)
	}
	coders.Lock()
	defer coders.Unlock()
	if c := coders.c[k]; c != nil {
		return c, nil
	}
	c, err := fec.New(k, parityFor(k))
	if err != nil {
		return nil, err
	}
	coders.c[k] = c
	return c, nil
}

// encodeBlockTo cuts a signed batch into data shards of wire.ShardData
// bytes and adds parity: k data shards, then parityFor(k) parity shards.
// It reuses the shards of dst, typically an older block's, where their
// capacity allows.
func encodeBlockTo(dst [][]byte, batch []byte) (shards [][]byte, k int, err error) {
	k = (len(batch) + wire.ShardData - 1) / wire.ShardData
	c, err := coderFor(k)
	if err != nil {
		return nil, 0, err
	}
	var chunkArr [wire.MaxShards / 2][]byte // on the stack: no allocation per block
	chunks := chunkArr[:k]
	for i := range chunks {
		chunks[i] = batch[i*wire.ShardData : min(len(batch), (i+1)*wire.ShardData)]
	}
	shards, err = c.EncodeTo(dst, chunks)
	return shards, k, err
}

// decodeBlock rebuilds a batch, into buf[:0], from a block's shards (nil
// where missing; a lost data shard given as an empty buffer is rebuilt
// there).
func decodeBlock(shards [][]byte, k int, buf []byte) ([]byte, error) {
	c, err := coderFor(k)
	if err != nil {
		return nil, err
	}
	var chunkArr [wire.MaxShards / 2][]byte // on the stack: no allocation per block
	chunks, err := c.DecodeTo(chunkArr[:0], shards)
	if err != nil {
		return nil, err
	}
	buf = buf[:0]
	for _, ch := range chunks {
		buf = append(buf, ch...)
	}
	return buf, nil
}

// proactiveParity is how many parity shards to send with a block of k data
// shards at once, before anyone asks, when members lose a share loss of
// shards: the fewest for which a member misses the block with probability
// at most residualFor(k), assuming independent losses. The rest is left to
// NACKs, so a lone line on a clean link costs one packet.
func proactiveParity(k int, loss float64) int {
	if loss <= 0 {
		return 0
	}
	loss = min(loss, 0.9)
	residual := residualFor(k)
	limit := parityFor(k)
	for p := 0; p < limit; p++ {
		if blockLossProb(k, k+p, loss) <= residual {
			return p
		}
	}
	return limit
}

// residualFor is the chance of missing a block of k data shards, per
// member, that proactive parity leaves to NACKs. Small blocks are the
// lines of a quiet room, where a repair's round trip is what a reader
// notices and parity is a packet or two: they are sent so that one member
// in a thousand needs a repair. Blocks of several shards are a busy room,
// where the bytes count and a repair is multicast once for every member
// that lacks the block: one in fifty. (1e-3 throughout sent 40 % parity
// at 5 % loss with 10-shard blocks; 2e-2 sends 20 %.)
func residualFor(k int) float64 {
	if k <= 2 {
		return 1e-3
	}
	return 2e-2
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
