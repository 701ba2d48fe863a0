package fec

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
)

func mustNew(t testing.TB, k, m int) *Coder {
	t.Helper()
	c, err := New(k, m)
	if err != nil {
		t.Fatalf("New(%d, %d): %v", k, m, err)
	}
	return c
}

// randPackets returns k packets of random lengths up to maxLen, with an
// empty one now and then.
func randPackets(rng *rand.Rand, k, maxLen int) [][]byte {
	packets := make([][]byte, k)
	for i := range packets {
		n := rng.IntN(maxLen + 1)
		if rng.IntN(8) == 0 {
			n = 0
		}
		packets[i] = make([]byte, n)
		for j := range packets[i] {
			packets[i][j] = byte(rng.Uint32())
		}
	}
	return packets
}

// keep returns a copy of shards holding only the shards whose index is
// in present, so that Decode cannot modify the originals.
func keep(shards [][]byte, present []int) [][]byte {
	out := make([][]byte, len(shards))
	for _, i := range present {
		out[i] = bytes.Clone(shards[i])
	}
	return out
}

func checkDecode(t *testing.T, c *Coder, shards [][]byte, present []int, want [][]byte) {
	t.Helper()
	got, err := c.Decode(keep(shards, present))
	if err != nil {
		t.Fatalf("Decode with shards %v present: %v", present, err)
	}
	if !slices.EqualFunc(got, want, bytes.Equal) {
		t.Fatalf("Decode with shards %v present = %q, want %q", present, got, want)
	}
}

// subsets calls f with every k-element subset of [0, n).
func subsets(n, k int, f func([]int)) {
	var rec func(start int, cur []int)
	rec = func(start int, cur []int) {
		if len(cur) == k {
			f(cur)
			return
		}
		for i := start; i <= n-(k-len(cur)); i++ {
			rec(i+1, append(cur, i))
		}
	}
	rec(0, nil)
}

func TestNew(t *testing.T) {
	tests := []struct {
		k, m int
		ok   bool
	}{
		{1, 0, true},
		{1, 1, true},
		{8, 2, true},
		{MaxShards, 0, true},
		{MaxShards - 1, 1, true},
		{0, 1, false},
		{-1, 2, false},
		{4, -1, false},
		{MaxShards, 1, false},
	}
	for _, tt := range tests {
		_, err := New(tt.k, tt.m)
		if (err == nil) != tt.ok {
			t.Errorf("New(%d, %d) error = %v, want ok %v", tt.k, tt.m, err, tt.ok)
		}
	}
}

func TestEveryKSubset(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, km := range [][2]int{{1, 0}, {1, 1}, {1, 3}, {2, 1}, {2, 2}, {3, 2}, {4, 4}, {5, 3}, {8, 2}, {6, 6}} {
		k, m := km[0], km[1]
		t.Run(fmt.Sprintf("k=%d,m=%d", k, m), func(t *testing.T) {
			c := mustNew(t, k, m)
			packets := randPackets(rng, k, 300)
			shards, err := c.Encode(packets)
			if err != nil {
				t.Fatal(err)
			}
			n := 0
			subsets(k+m, k, func(present []int) {
				checkDecode(t, c, shards, present, packets)
				n++
			})
			t.Logf("%d subsets", n)
		})
	}
}

func TestRandomSubsets(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, km := range [][2]int{{10, 4}, {16, 4}, {32, 8}, {48, 16}, {60, 4}} {
		k, m := km[0], km[1]
		t.Run(fmt.Sprintf("k=%d,m=%d", k, m), func(t *testing.T) {
			c := mustNew(t, k, m)
			packets := randPackets(rng, k, 1400)
			shards, err := c.Encode(packets)
			if err != nil {
				t.Fatal(err)
			}
			for range 200 {
				present := rng.Perm(k + m)[:k+rng.IntN(m+1)]
				checkDecode(t, c, shards, present, packets)
			}
		})
	}
}

// TestProperty round-trips random blocks through random losses.
func TestProperty(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for range 500 {
		k := 1 + rng.IntN(20)
		m := rng.IntN(MaxShards - k + 1)
		m = min(m, 12)
		c := mustNew(t, k, m)
		packets := randPackets(rng, k, 1+rng.IntN(1500))
		shards, err := c.Encode(packets)
		if err != nil {
			t.Fatalf("k=%d m=%d: Encode: %v", k, m, err)
		}
		if len(shards) != k+m {
			t.Fatalf("k=%d m=%d: got %d shards, want %d", k, m, len(shards), k+m)
		}
		for i, s := range shards {
			if len(s) != len(shards[0]) {
				t.Fatalf("k=%d m=%d: shard %d is %d bytes, shard 0 is %d", k, m, i, len(s), len(shards[0]))
			}
		}
		checkDecode(t, c, shards, rng.Perm(k + m)[:k], packets)
	}
}

// TestShardLayout pins the shard bytes: they are a wire format, so a
// change of framing or of reedsolomon's coding matrix must fail here.
func TestShardLayout(t *testing.T) {
	c := mustNew(t, 3, 2)
	shards, err := c.Encode([][]byte{[]byte("ab"), nil, []byte("wxyz")})
	if err != nil {
		t.Fatal(err)
	}
	want := [][]byte{
		{0, 2, 'a', 'b', 0, 0},
		{0, 0, 0, 0, 0, 0},
		{0, 4, 'w', 'x', 'y', 'z'},
		{0x00, 0xf1, 0xa3, 0xad, 0x79, 0x7a},
		{0x00, 0x7b, 0xc7, 0x82, 0x6e, 0xe0},
	}
	if !slices.EqualFunc(shards, want, bytes.Equal) {
		t.Errorf("shards = %x, want %x", shards, want)
	}
}

// TestCauchyParity: parity is what the package comment says, computed
// here from the formula alone: byte j of parity shard r is the sum over
// data shards c of their byte j times 1/(r XOR c) in GF(2^8) with the
// polynomial x^8+x^4+x^3+x^2+1, so that another implementation can
// decode it.
func TestCauchyParity(t *testing.T) {
	mul := func(a, b byte) byte {
		var p byte
		for ; b != 0; b >>= 1 {
			if b&1 != 0 {
				p ^= a
			}
			carry := a & 0x80
			a <<= 1
			if carry != 0 {
				a ^= 0x1d
			}
		}
		return p
	}
	inv := func(a byte) byte {
		for x := 1; x < 256; x++ {
			if mul(a, byte(x)) == 1 {
				return byte(x)
			}
		}
		panic("0 has no inverse")
	}
	const k, m = 5, 4
	c := mustNew(t, k, m)
	rng := rand.New(rand.NewPCG(7, 7))
	packets := make([][]byte, k)
	for i := range packets {
		packets[i] = make([]byte, 1+rng.IntN(40))
		for j := range packets[i] {
			packets[i][j] = byte(rng.Uint32())
		}
	}
	shards, err := c.Encode(packets)
	if err != nil {
		t.Fatal(err)
	}
	for r := k; r < k+m; r++ {
		for j := range shards[r] {
			var want byte
			for d := range k {
				want ^= mul(shards[d][j], inv(byte(r^d)))
			}
			if shards[r][j] != want {
				t.Fatalf("parity shard %d byte %d = %#x, want %#x", r, j, shards[r][j], want)
			}
		}
	}
}

func TestEncodeErrors(t *testing.T) {
	c := mustNew(t, 2, 1)
	if _, err := c.Encode([][]byte{nil}); err == nil {
		t.Error("Encode of 1 packet with k=2 succeeded")
	}
	if _, err := c.Encode([][]byte{nil, make([]byte, MaxPacketLen+1)}); err == nil {
		t.Error("Encode of an over-long packet succeeded")
	}
	if _, err := c.Encode([][]byte{nil, make([]byte, MaxPacketLen)}); err != nil {
		t.Errorf("Encode of a MaxPacketLen packet: %v", err)
	}
}

func TestDecodeErrors(t *testing.T) {
	const k, m = 4, 2
	c := mustNew(t, k, m)
	shards, err := c.Encode([][]byte{[]byte("one"), []byte("two"), []byte("three"), []byte("four")})
	if err != nil {
		t.Fatal(err)
	}
	all := []int{0, 1, 2, 3, 4, 5}
	tests := []struct {
		name   string
		modify func([][]byte) [][]byte
		want   error // nil means any error
	}{
		{"too few", func(s [][]byte) [][]byte { s[0], s[2], s[5] = nil, nil, nil; return s }, ErrTooFewShards},
		{"none", func(s [][]byte) [][]byte { return make([][]byte, k+m) }, ErrTooFewShards},
		{"too many", func(s [][]byte) [][]byte { return append(s, s[0]) }, nil},
		{"missing entries", func(s [][]byte) [][]byte { return s[:k] }, nil},
		{"short shard", func(s [][]byte) [][]byte { s[1] = s[1][:3]; return s }, ErrShardSize},
		{"long shard", func(s [][]byte) [][]byte { s[4] = append(s[4], 0); return s }, ErrShardSize},
		{"one-byte shards", func(s [][]byte) [][]byte {
			for i := range s {
				s[i] = s[i][:1]
			}
			return s
		}, ErrCorrupt},
		{"length past shard", func(s [][]byte) [][]byte { s[2][0] = 0xff; return s }, ErrCorrupt},
		{"length past shard after rebuild", func(s [][]byte) [][]byte { s[2] = nil; s[4][0] ^= 0xff; return s }, ErrCorrupt},
		{"no packet fills the shard", func(s [][]byte) [][]byte { s[2][1] = 4; return s }, ErrCorrupt},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := c.Decode(tt.modify(keep(shards, all)))
			if err == nil || tt.want != nil && !errors.Is(err, tt.want) {
				t.Errorf("Decode error = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestDecodeReusesEmptyShards(t *testing.T) {
	c := mustNew(t, 2, 2)
	packets := [][]byte{[]byte("hello"), []byte("world!")}
	shards, err := c.Encode(packets)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 0, len(shards[0]))
	in := keep(shards, []int{1, 2, 3})
	in[0] = buf
	got, err := c.Decode(in)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.EqualFunc(got, packets, bytes.Equal) {
		t.Errorf("Decode = %q, want %q", got, packets)
	}
	if &in[0][:1][0] != &buf[:1][0] {
		t.Error("Decode did not rebuild shard 0 into the capacity it was given")
	}
}

func TestEncodeToReuses(t *testing.T) {
	c := mustNew(t, 8, 2)
	rng := rand.New(rand.NewPCG(7, 8))
	var shards [][]byte
	blocks := make([][][]byte, 20)
	for i := range blocks {
		blocks[i] = randPackets(rng, 8, 1200)
	}
	blocks[0][0] = make([]byte, 1200) // the first block grows the buffers to the maximum
	for _, packets := range blocks {
		var err error
		shards, err = c.EncodeTo(shards, packets)
		if err != nil {
			t.Fatal(err)
		}
		// Padding must be cleared even when a buffer held a longer block.
		checkDecode(t, c, shards, []int{2, 3, 4, 5, 6, 7, 8, 9}, packets)
	}
	if raceEnabled {
		return // the race detector allocates
	}
	// Depending on the CPU, reedsolomon's Encode allocates a scratch
	// matrix per call; that is its business. EncodeTo must add nothing.
	shards, _ = c.EncodeTo(shards, blocks[0])
	lib := testing.AllocsPerRun(100, func() {
		if err := c.rs.Encode(shards); err != nil {
			t.Fatal(err)
		}
	})
	allocs := testing.AllocsPerRun(100, func() {
		var err error
		shards, err = c.EncodeTo(shards, blocks[0])
		if err != nil {
			t.Fatal(err)
		}
	})
	if allocs != lib {
		t.Errorf("EncodeTo allocated %v times per call, reedsolomon.Encode %v; want no more", allocs, lib)
	}
}

func TestCacheInversions(t *testing.T) {
	tests := []struct {
		k, m int
		want bool
	}{
		{1, 0, true},
		{8, 2, true},
		{10, 4, true},
		{16, 4, false},
		{32, 8, false},
		{63, 1, true},
		{MaxShards - 1, 1, false},
		{MaxShards / 2, MaxShards / 2, false},
	}
	for _, tt := range tests {
		if got := cacheInversions(tt.k, tt.m); got != tt.want {
			t.Errorf("cacheInversions(%d, %d) = %v, want %v", tt.k, tt.m, got, tt.want)
		}
	}
}

var benchShapes = []struct{ k, m, size int }{
	{8, 2, 200},
	{8, 2, 1200},
	{32, 8, 200},
	{32, 8, 1200},
	// A busy room's largest block (rooms: MaxBlockShards, maxParity),
	// with a loss's worth and all of its parity.
	{64, 8, 1345},
	{64, 32, 1345},
}

func BenchmarkEncode(b *testing.B) {
	for _, bs := range benchShapes {
		b.Run(fmt.Sprintf("k=%d,m=%d,%dB", bs.k, bs.m, bs.size), func(b *testing.B) {
			c := mustNew(b, bs.k, bs.m)
			packets := randPackets(rand.New(rand.NewPCG(1, 1)), bs.k, bs.size)
			packets[0] = make([]byte, bs.size)
			var shards [][]byte
			b.SetBytes(int64(bs.k * bs.size))
			b.ReportAllocs()
			for b.Loop() {
				var err error
				if shards, err = c.EncodeTo(shards, packets); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkDecode rebuilds a block whose first m data shards are lost,
// the most work Decode does, into buffers it supplies (DecodeTo), as a
// receiver does.
func BenchmarkDecode(b *testing.B) {
	for _, bs := range benchShapes {
		b.Run(fmt.Sprintf("k=%d,m=%d,%dB", bs.k, bs.m, bs.size), func(b *testing.B) {
			c := mustNew(b, bs.k, bs.m)
			packets := randPackets(rand.New(rand.NewPCG(1, 1)), bs.k, bs.size)
			packets[0] = make([]byte, bs.size)
			shards, err := c.Encode(packets)
			if err != nil {
				b.Fatal(err)
			}
			in := make([][]byte, len(shards))
			out := make([][]byte, 0, bs.k)
			b.SetBytes(int64(bs.k * bs.size))
			b.ReportAllocs()
			for b.Loop() {
				copy(in, shards)
				for i := range bs.m {
					in[i] = in[i][:0] // lost; the buffer is reused for the rebuilt shard
				}
				if out, err = c.DecodeTo(out, in); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestDecodeToAllocs: given the packets' slice, DecodeTo takes a block
// whose data shards all arrived without allocating, the steady state of a
// clean link. (Rebuilding lost shards costs reedsolomon a few small
// allocations of its own per block; BenchmarkDecode shows them.)
func TestDecodeToAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates on its own account")
	}
	for _, bs := range []struct{ k, m int }{{1, 4}, {8, 2}, {14, 14}} {
		c := mustNew(t, bs.k, bs.m)
		packets := randPackets(rand.New(rand.NewPCG(1, 1)), bs.k, 300)
		shards, err := c.Encode(packets)
		if err != nil {
			t.Fatal(err)
		}
		in := make([][]byte, len(shards))
		out := make([][]byte, 0, bs.k)
		decode := func() {
			copy(in, shards[:bs.k]) // parity lost: not needed
			if out, err = c.DecodeTo(out, in); err != nil {
				t.Fatal(err)
			}
		}
		if n := testing.AllocsPerRun(100, decode); n != 0 {
			t.Errorf("k=%d m=%d: DecodeTo made %v allocations, want 0", bs.k, bs.m, n)
		}
		for i, p := range out {
			if !bytes.Equal(p, packets[i]) {
				t.Fatalf("k=%d m=%d: packet %d decoded wrong", bs.k, bs.m, i)
			}
		}
	}
}

// FuzzDecode feeds Decode arbitrary shards, cut from data into k+m equal
// pieces; bit i of missing drops shard i, and bit 63 shortens the last
// shard by a byte. Decode must return k packets that fit in the shards or
// an error, never panic. The seed corpus in testdata holds real blocks.
func FuzzDecode(f *testing.F) {
	f.Fuzz(func(t *testing.T, k, m uint8, missing uint64, data []byte) {
		kk, mm := 1+int(k)%16, int(m)%9
		c, err := New(kk, mm)
		if err != nil {
			t.Fatal(err)
		}
		n := kk + mm
		size := len(data) / n
		shards := make([][]byte, n)
		for i := range shards {
			if missing&(1<<i) == 0 {
				shards[i] = data[i*size : (i+1)*size : (i+1)*size]
			}
		}
		if missing&(1<<63) != 0 && len(shards[n-1]) > 0 {
			shards[n-1] = shards[n-1][:size-1]
		}
		packets, err := c.Decode(shards)
		if err != nil {
			return
		}
		if len(packets) != kk {
			t.Fatalf("Decode returned %d packets, want %d", len(packets), kk)
		}
		for i, p := range packets {
			if len(p) > size-lenSize {
				t.Fatalf("packet %d is %d bytes, longer than its %d-byte shard allows", i, len(p), size)
			}
		}
	})
}
