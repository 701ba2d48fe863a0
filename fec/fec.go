// Package fec is the FEC block coder: a block's data in, k data shards
// plus m parity shards out; any k of the k+m shards rebuild the data.
//
// The data is padded with one 0x80 byte and then zeros (the bit padding
// of ISO/IEC 7816-4) to k × size bytes, size = ⌈(len(data) + 1) / k⌉,
// and cut into the k data shards:
//
//	+---------------------------------------+------+-------+
//	| data                                  | 0x80 | zeros |
//	+---------------------------------------+------+-------+
//	  shard 0 | shard 1 | … | shard k−1, each size bytes
//
// so a shard carries no length of its own: the padding, at most k bytes
// of a block, says where the data ends. (Until protocol version 4 each
// data shard carried its own packet behind a 2-byte length, 2 bytes in
// every packet sent.) Padding of more than k bytes, or data whose last
// nonzero byte is not 0x80, is not the encoder's and does not decode: a
// block has one encoding.
//
// Parity shards have the same size and are Reed-Solomon code words over
// GF(2^8) (polynomial x^8+x^4+x^3+x^2+1), computed by
// github.com/klauspost/reedsolomon with a Cauchy coding matrix: byte j of
// parity shard r (r >= k) is the sum over data shards c of byte j of shard
// c times 1/(r XOR c). Hosts must agree on that matrix to decode each
// other's parity, so it is part of the wire format: changing the library's
// options or version must keep the parity bytes that TestShardLayout pins.
//
// Cauchy, not the library's default (a Vandermonde matrix made systematic
// by inverting its top and multiplying): a Coder for a block size is made
// when a block of that size first arrives, and making the default one for
// 60 data and 32 parity shards took 1.1 ms here, against 9 µs (a router is
// some 15 times slower, and a busy room's blocks come in dozens of sizes).
// Coding and decoding cost the same with either.
//
// Reed-Solomon recovers erased shards; it does not detect wrong ones. A
// corrupted or forged shard given to Decode rebuilds wrong data, and the
// padding check catches only some of that. Shards must therefore be
// authenticated (AEAD) before they reach Decode.
package fec

import (
	"errors"
	"fmt"
	"slices"

	"github.com/klauspost/reedsolomon"
)

// MaxShards bounds k+m: the most a Reed-Solomon code over GF(2^8) has.
// Decoding costs O(k) per byte of every lost data shard, plus an
// inversion of O(k^3) per pattern of loss, and a block is only decodable
// once k shards of it arrived: a bigger block costs latency and CPU,
// which the callers weigh against parity (wire.MaxBlockShards).
const MaxShards = 256

// padStart is the byte that begins a block's padding.
const padStart = 0x80

// maxCacheBytes bounds the memory that the cache of inverted decode
// matrices of one Coder may reach; see cacheInversions.
const maxCacheBytes = 1 << 20

// minRSShards is the fewest shards, data and parity, that reedsolomon
// codes here. reedsolomon (v1.14) multiplies for a coder of fewer with a
// table of the products of every byte pair where it has no SIMD (mips,
// 32-bit arm: the routers), 32 MiB made on first use and never freed: a
// router's first lone line took half its RAM. A smaller block's parity
// is made here (codeSmall), and it is decoded by a coder padded with
// parity shards that are never present: parity shard k+j does not depend
// on how many a coder has.
const minRSShards = 20

// gfExp and gfLog are the powers and logarithms of 2 in reedsolomon's
// field, GF(2^8) with the polynomial x^8+x^4+x^3+x^2+1; the powers twice
// over, so that a product exp[log a + log b] needs no reduction.
var (
	gfExp [510]byte
	gfLog [256]byte
)

func init() {
	x := 1
	for i := range 255 {
		gfExp[i], gfExp[i+255], gfLog[x] = byte(x), byte(x), byte(i)
		if x <<= 1; x > 0xff {
			x ^= 0x11d
		}
	}
}

// codeSmall makes parity shards first, first+1, ... of a block into out
// from its data shards: each the sum over data shards c of shard c times
// 1/(r XOR c), as the package comment has it, for blocks of fewer than
// minRSShards shards.
func codeSmall(data, out [][]byte, first int) {
	var mul [256]byte // a byte's product with the coefficient
	for i, o := range out {
		clear(o)
		for c, d := range data {
			l := 255 - int(gfLog[(first+i)^c]) // the coefficient's, an inverse's
			for b := 1; b < 256; b++ {
				mul[b] = gfExp[l+int(gfLog[b])]
			}
			mulAdd(&mul, d, o[:len(d)])
		}
	}
}

var (
	// ErrTooFewShards is returned by Decode when fewer than k shards are
	// present.
	ErrTooFewShards = errors.New("fec: too few shards")

	// ErrShardSize is returned by Decode when the present shards differ
	// in size.
	ErrShardSize = errors.New("fec: shard sizes differ")

	// errShardCounts is returned by New and NewExtender for shard counts
	// out of bounds, and by Extend for a block of other than k+from
	// shards: a caller's mistake, never a peer's.
	errShardCounts = errors.New("fec: invalid shard counts")

	// ErrCorrupt is returned by Decode when the rebuilt data shards
	// cannot have come from Encode: their padding is not Encode's.
	ErrCorrupt = errors.New("fec: corrupt block")
)

// Coder encodes and decodes blocks of k data shards with m parity shards. It
// is safe for concurrent use, but the slices passed to one call must not
// be used by another call at the same time.
type Coder struct {
	k, m int
	rs   reedsolomon.Encoder // of at least minRSShards shards
	_    [0]func()           // no ==, whose code a router's build would carry
}

// New returns a Coder for k data and m parity shards per block, where
// 1 <= k, 0 <= m and k+m <= MaxShards.
func New(k, m int) (*Coder, error) {
	if !validCounts(k, 0, m) {
		return nil, errShardCounts
	}
	// Loss patterns are among the k+m shards a block has: the padding's
	// are never present, so never before the k-th present one.
	rs, err := newRS(k, max(m, minRSShards-k), cacheInversions(k, m), reedsolomon.WithCauchyMatrix())
	if err != nil {
		return nil, err
	}
	return &Coder{k: k, m: m, rs: rs}, nil
}

// mulAdd adds to out the products of in's bytes that mul gives, eight
// at a time where it can (a block of 8 data shards of 1200 bytes and 2
// parity took 12 µs here rather than 17 one at a time).
func mulAdd(mul *[256]byte, in, out []byte) {
	for len(in) >= 8 && len(out) >= 8 {
		out[0] ^= mul[in[0]]
		out[1] ^= mul[in[1]]
		out[2] ^= mul[in[2]]
		out[3] ^= mul[in[3]]
		out[4] ^= mul[in[4]]
		out[5] ^= mul[in[5]]
		out[6] ^= mul[in[6]]
		out[7] ^= mul[in[7]]
		in, out = in[8:], out[8:]
	}
	for j, b := range in {
		out[j] ^= mul[b]
	}
}

// padded reports whether k data and m parity shards are fewer than
// minRSShards.
func padded(k, m int) bool { return k+m < minRSShards }

// validCounts reports whether blocks of k data shards can have parity
// shards k+from to k+to-1.
func validCounts(k, from, to int) bool {
	return k >= 1 && from >= 0 && to >= from && k+to <= MaxShards
}

// newRS returns reedsolomon's coder for k data and m parity shards, with
// that coding matrix.
func newRS(k, m int, cacheInversions bool, matrix reedsolomon.Option) (reedsolomon.Encoder, error) {
	rs, err := reedsolomon.New(k, m,
		reedsolomon.WithInversionCache(cacheInversions),
		// Blocks are a few KB: splitting one across goroutines costs more
		// than it saves, and the daemon codes many blocks in parallel anyway.
		reedsolomon.WithMaxGoroutines(1),
		matrix,
	)
	if err != nil {
		return nil, fmt.Errorf("fec: %w", err)
	}
	return rs, nil
}

// cacheInversions reports whether reedsolomon may cache the inverted
// matrix of every loss pattern. The cache is never evicted and a peer
// chooses which shards we lose, so it is used only if it fits in
// maxCacheBytes with every pattern cached: a pattern is the set of missing
// shards among the first k present, at most sum(C(k+m, j), j=1..m) sets,
// each costing a k×k matrix plus a tree node with k+m children.
func cacheInversions(k, m int) bool {
	n := k + m
	limit := maxCacheBytes / (k*k + k*24 + n*8 + 64)
	patterns, c := 0, 1
	for j := 1; j <= m; j++ {
		// C(n, j) from C(n, j-1); exact, and c <= limit keeps it from
		// overflowing.
		c = c * (n - j + 1) / j
		patterns += c
		if patterns > limit {
			return false
		}
	}
	return true
}

// Encode returns the k+m shards of a block of data, of any length.
func (c *Coder) Encode(data []byte) ([][]byte, error) {
	return c.EncodeTo(nil, data)
}

// EncodeTo is Encode writing into dst, typically the shards of a
// previous block, whose slice and shard buffers it reuses where their
// capacity allows; it returns the resized dst. Once the buffers have
// grown to the largest block, EncodeTo does not allocate. The shards of
// dst must not overlap data.
func (c *Coder) EncodeTo(dst [][]byte, data []byte) ([][]byte, error) {
	size := (len(data) + c.k) / c.k // ⌈(len(data) + 1) / k⌉: room for the padding's first byte
	shards := resize(dst, c.k+c.m, size)
	rest := data
	for _, s := range shards[:c.k] {
		n := copy(s, rest)
		clear(s[n:]) // a buffer may hold a longer block
		rest = rest[n:]
	}
	shards[len(data)/size][len(data)%size] = padStart
	if padded(c.k, c.m) {
		codeSmall(shards[:c.k], shards[c.k:], c.k)
	} else if err := c.rs.Encode(shards); err != nil {
		return nil, fmt.Errorf("fec: encode: %w", err)
	}
	return shards, nil
}

// Extender makes the parity that repairs add to a block of k data shards
// once they have spent what it has: parity shards k+from to k+to-1, byte
// for byte what a Coder for k data and to parity shards makes (parity
// shard k+j does not depend on how many a Coder makes), without making
// again the from parity shards the block has, which a Coder's Encode
// would: that was twice the work, and a router without SIMD extends
// blocks often at 20 % loss. Like a Coder, it is safe for concurrent use.
type Extender struct {
	k, from, to int
	rs          reedsolomon.Encoder // nil: codeSmall's
	_           [0]func()           // no ==, whose code a router's build would carry
}

// NewExtender returns an Extender for parity shards k+from to k+to-1 of
// blocks of k data shards, where 1 <= k, 0 <= from <= to and k+to <=
// MaxShards.
func NewExtender(k, from, to int) (*Extender, error) {
	if !validCounts(k, from, to) {
		return nil, errShardCounts
	}
	e := &Extender{k: k, from: from, to: to}
	if padded(k, to-from) {
		return e, nil // codeSmall's
	}
	// The Cauchy rows of those parity shards alone, as WithCauchyMatrix
	// makes them (see the package comment), last first: Extend reverses
	// the parity shards to code them.
	rows := make([][]byte, to-from)
	for i := range rows {
		rows[i] = make([]byte, k)
		for c := range rows[i] {
			rows[i][c] = reedsolomon.Inv(byte((k + to - 1 - i) ^ c))
		}
	}
	var err error
	e.rs, err = newRS(k, len(rows), false, reedsolomon.WithCustomMatrix(rows)) // no decodes, no inversions
	if err != nil {
		return nil, err
	}
	return e, nil
}

// Extend adds parity shards k+from to k+to-1 to a block: shards holds its
// k data shards and its first from parity shards, as a Coder made them.
// It returns them, untouched, followed by the new parity, reusing the
// capacity of shards.
func (e *Extender) Extend(shards [][]byte) ([][]byte, error) {
	have, m := e.k+e.from, e.to-e.from
	if len(shards) != have {
		return nil, errShardCounts
	}
	for _, s := range shards {
		if len(s) != len(shards[0]) {
			return nil, ErrShardSize
		}
	}
	if cap(shards) < have+m {
		shards = append(make([][]byte, 0, have+m), shards...)
	}
	// The new shards, sized as shard 0, in the capacity after the
	// block's (which is enough: resize keeps the slice in place).
	// reedsolomon's Encode refuses data shards of other sizes.
	resize(shards[have:have], m, len(shards[0]))
	shards = shards[:have+m]
	var err error
	if e.rs == nil {
		codeSmall(shards[:e.k], shards[have:], have)
	} else {
		// reedsolomon codes one slice of the data shards and the parity
		// its matrix makes: reverse the parity shards, which puts the new
		// ones, last first as the matrix's rows are, just after the data,
		// code, and reverse them back, rather than allocate a slice for
		// each call.
		slices.Reverse(shards[e.k:])
		err = e.rs.Encode(shards[:e.k+m])
		slices.Reverse(shards[e.k:])
	}
	if err != nil {
		return nil, fmt.Errorf("fec: extend: %w", err)
	}
	return shards, nil
}

// resize returns dst with n shards of size bytes, reusing the capacity of
// dst and its shards and allocating what is missing in one piece. Shards
// beyond n that dst held are let go: a block that repairs extended keeps
// no more than the next block needs.
func resize(dst [][]byte, n, size int) [][]byte {
	if cap(dst) < n {
		dst = make([][]byte, n)
	}
	clear(dst[n:cap(dst)])
	dst = dst[:n]
	short := 0
	for _, s := range dst {
		if cap(s) < size {
			short++
		}
	}
	var buf []byte
	if short > 0 {
		buf = make([]byte, short*size)
	}
	for i, s := range dst {
		if cap(s) >= size {
			dst[i] = s[:size]
			continue
		}
		dst[i], buf = buf[:size:size], buf[size:]
	}
	return dst
}

// reconstruct rebuilds the missing data shards of shards, the k+m of a
// block, through rs's minRSShards when it is padded.
func (c *Coder) reconstruct(shards [][]byte) error {
	if !padded(c.k, c.m) {
		return c.rs.ReconstructData(shards)
	}
	if !slices.ContainsFunc(shards[:c.k], func(s []byte) bool { return len(s) == 0 }) {
		return nil
	}
	var all [minRSShards][]byte
	copy(all[:], shards)
	if err := c.rs.ReconstructData(all[:]); err != nil {
		return err
	}
	copy(shards[:c.k], all[:c.k])
	return nil
}

// Decode rebuilds a block's data from its k+m shards, in which nil or
// empty entries are missing; at least k must be present. Decode stores
// the rebuilt data shards in shards, reusing the capacity of empty
// entries.
func (c *Coder) Decode(shards [][]byte) ([]byte, error) {
	return c.DecodeTo(nil, shards)
}

// DecodeTo is Decode appending the data to buf[:0], whose capacity it
// reuses. A missing data shard is rebuilt into the capacity of its empty
// entry when that holds a shard (give s[:0] for a spare buffer s), so
// with both supplied DecodeTo does not allocate.
func (c *Coder) DecodeTo(buf []byte, shards [][]byte) ([]byte, error) {
	if len(shards) != c.k+c.m {
		return nil, fmt.Errorf("fec: got %d shards, want %d", len(shards), c.k+c.m)
	}
	size, present := 0, 0
	for _, s := range shards {
		if len(s) == 0 {
			continue
		}
		if size == 0 {
			size = len(s)
		} else if len(s) != size {
			return nil, ErrShardSize
		}
		present++
	}
	if present < c.k {
		return nil, ErrTooFewShards
	}
	if err := c.reconstruct(shards); err != nil {
		return nil, fmt.Errorf("fec: reconstruct: %w", err)
	}
	buf = buf[:0]
	for _, s := range shards[:c.k] {
		buf = append(buf, s...)
	}
	// The padding: 0x80, then zeros, at most k bytes in all, as Encode
	// makes it.
	end := len(buf) - 1
	for end >= 0 && buf[end] == 0 && len(buf)-end < c.k {
		end--
	}
	if end < 0 || buf[end] != padStart {
		return nil, ErrCorrupt
	}
	return buf[:end], nil
}
