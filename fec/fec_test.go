package fec

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"testing"

	"github.com/klauspost/reedsolomon"
)

func mustNew(t testing.TB, k, m int) *Coder {
	t.Helper()
	c, err := New(k, m)
	if err != nil {
		t.Fatalf("New(%d, %d): %v", k, m, err)
	}
	return c
}

// randData returns a block's data of a random length up to maxLen, empty
// now and then, ending in zeros now and then (which the padding must not
// swallow).
func randData(rng *rand.Rand, maxLen int) []byte {
	n := rng.IntN(maxLen + 1)
	if rng.IntN(8) == 0 {
		n = 0
	}
	data := make([]byte, n)
	for j := range data {
		data[j] = byte(rng.Uint32())
	}
	if n > 0 && rng.IntN(4) == 0 {
		clear(data[rng.IntN(n):])
	}
	return data
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

func checkDecode(t *testing.T, c *Coder, shards [][]byte, present []int, want []byte) {
	t.Helper()
	got, err := c.Decode(keep(shards, present))
	if err != nil {
		t.Fatalf("Decode with shards %v present: %v", present, err)
	}
	if !bytes.Equal(got, want) {
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
			data := randData(rng, 300*k)
			shards, err := c.Encode(data)
			if err != nil {
				t.Fatal(err)
			}
			n := 0
			subsets(k+m, k, func(present []int) {
				checkDecode(t, c, shards, present, data)
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
			data := randData(rng, 1400*k)
			shards, err := c.Encode(data)
			if err != nil {
				t.Fatal(err)
			}
			for range 200 {
				present := rng.Perm(k + m)[:k+rng.IntN(m+1)]
				checkDecode(t, c, shards, present, data)
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
		data := randData(rng, 1+rng.IntN(1500*k))
		shards, err := c.Encode(data)
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
		// The shards are as short as the data and a byte of padding allow.
		if size := (len(data) + k) / k; len(shards[0]) != size {
			t.Fatalf("k=%d m=%d: %d bytes of data in shards of %d bytes, want %d", k, m, len(data), len(shards[0]), size)
		}
		checkDecode(t, c, shards, rng.Perm(k + m)[:k], data)
	}
}

// TestShardLayout pins the shard bytes: they are a wire format, so a
// change of framing or of reedsolomon's coding matrix must fail here.
func TestShardLayout(t *testing.T) {
	c := mustNew(t, 3, 2)
	shards, err := c.Encode([]byte("abwxyz"))
	if err != nil {
		t.Fatal(err)
	}
	want := [][]byte{
		{'a', 'b', 'w'},
		{'x', 'y', 'z'},
		{0x80, 0, 0},
		{0x68, 0x67, 0x10},
		{0x8c, 0x29, 0x9f},
	}
	if !slices.EqualFunc(shards, want, bytes.Equal) {
		t.Errorf("shards = %x, want %x", shards, want)
	}
}

// TestPadding: the padding is a 0x80 byte and then zeros, at least 1 and
// at most k bytes, wherever the data ends.
func TestPadding(t *testing.T) {
	for _, k := range []int{1, 2, 3, 7} {
		c := mustNew(t, k, 1)
		for n := range 3*k + 2 {
			data := bytes.Repeat([]byte{0}, n) // zeros, which the padding must not swallow
			shards, err := c.Encode(data)
			if err != nil {
				t.Fatal(err)
			}
			var all []byte
			for _, s := range shards[:k] {
				all = append(all, s...)
			}
			pad := all[n:]
			if len(pad) < 1 || len(pad) > k || pad[0] != 0x80 || bytes.ContainsFunc(pad[1:], func(r rune) bool { return r != 0 }) {
				t.Errorf("k=%d, %d bytes: padding %x, want 80 then zeros, 1 to %d bytes", k, n, pad, k)
			}
			// Shard 0 lost, rebuilt from the parity shard.
			present := make([]int, k)
			for i := range present {
				present[i] = i + 1
			}
			checkDecode(t, c, shards, present, data)
		}
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
	data := make([]byte, k*(1+rng.IntN(40)))
	for j := range data {
		data[j] = byte(rng.Uint32())
	}
	shards, err := c.Encode(data)
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

func TestDecodeErrors(t *testing.T) {
	const k, m = 4, 2
	c := mustNew(t, k, m)
	shards, err := c.Encode([]byte("one two three four"))
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
		{"no padding", func(s [][]byte) [][]byte { s[3][len(s[3])-1] = 'x'; return s }, ErrCorrupt},
		{"padding of zeros only", func(s [][]byte) [][]byte {
			for i := range s[:k] {
				clear(s[i])
			}
			return s
		}, ErrCorrupt},
		{"no padding after rebuild", func(s [][]byte) [][]byte { s[3] = nil; s[4][len(s[4])-1] ^= 0xff; return s }, ErrCorrupt},
		// Padding of k+1 bytes: 5-byte shards would fit the data with less.
		{"padding over k bytes", func([][]byte) [][]byte {
			return [][]byte{[]byte("ddddd"), []byte("ddddd"), []byte("dddd\x80"), make([]byte, 5), nil, nil}
		}, ErrCorrupt},
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
	data := []byte("hello, world!")
	shards, err := c.Encode(data)
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
	if !bytes.Equal(got, data) {
		t.Errorf("Decode = %q, want %q", got, data)
	}
	if &in[0][:1][0] != &buf[:1][0] {
		t.Error("Decode did not rebuild shard 0 into the capacity it was given")
	}
}

func TestEncodeToReuses(t *testing.T) {
	c := mustNew(t, 12, 8) // minRSShards: not padded
	rng := rand.New(rand.NewPCG(7, 8))
	var shards [][]byte
	blocks := make([][]byte, 20)
	for i := range blocks {
		blocks[i] = randData(rng, 12*1200)
	}
	blocks[0] = make([]byte, 12*1200) // the first block grows the buffers to the maximum
	for _, data := range blocks {
		var err error
		shards, err = c.EncodeTo(shards, data)
		if err != nil {
			t.Fatal(err)
		}
		// Padding must be cleared even when a buffer held a longer block.
		checkDecode(t, c, shards, []int{2, 3, 4, 5, 6, 7, 8, 9, 14, 15, 16, 17}, data)
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
	// A busy room's largest block until 2026-12-06, with a loss's worth
	// and all of its parity. (1345 was its shard before protocol version
	// 4; the benchmarks keep it, to compare.)
	{64, 8, 1345},
	{64, 32, 1345},
	// The largest now (rooms: wire.MaxBlockShards, maxParity).
	{128, 12, 1361},
	{128, 32, 1361},
}

// benchData is a block of k shards of size bytes: size × k bytes, less
// the padding's byte.
func benchData(k, size int) []byte {
	data := make([]byte, k*size-1)
	rng := rand.New(rand.NewPCG(1, 1))
	for i := range data {
		data[i] = byte(rng.Uint32())
	}
	return data
}

func BenchmarkEncode(b *testing.B) {
	for _, bs := range benchShapes {
		b.Run(fmt.Sprintf("k=%d,m=%d,%dB", bs.k, bs.m, bs.size), func(b *testing.B) {
			c := mustNew(b, bs.k, bs.m)
			data := benchData(bs.k, bs.size)
			var shards [][]byte
			b.SetBytes(int64(bs.k * bs.size))
			b.ReportAllocs()
			for b.Loop() {
				var err error
				if shards, err = c.EncodeTo(shards, data); err != nil {
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
			shards, err := c.Encode(benchData(bs.k, bs.size))
			if err != nil {
				b.Fatal(err)
			}
			in := make([][]byte, len(shards))
			out := make([]byte, 0, bs.k*bs.size)
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

// TestDecodeToAllocs: given a buffer for the data, DecodeTo takes a block
// whose data shards all arrived without allocating, the steady state of a
// clean link. (Rebuilding lost shards costs reedsolomon a few small
// allocations of its own per block; BenchmarkDecode shows them.)
func TestDecodeToAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates on its own account")
	}
	for _, bs := range []struct{ k, m int }{{1, 4}, {8, 2}, {14, 14}} {
		c := mustNew(t, bs.k, bs.m)
		data := randData(rand.New(rand.NewPCG(1, 1)), 300*bs.k)
		shards, err := c.Encode(data)
		if err != nil {
			t.Fatal(err)
		}
		in := make([][]byte, len(shards))
		out := make([]byte, 0, len(shards[0])*bs.k)
		decode := func() {
			copy(in, shards[:bs.k]) // parity lost: not needed
			if out, err = c.DecodeTo(out, in); err != nil {
				t.Fatal(err)
			}
		}
		if n := testing.AllocsPerRun(100, decode); n != 0 {
			t.Errorf("k=%d m=%d: DecodeTo made %v allocations, want 0", bs.k, bs.m, n)
		}
		if !bytes.Equal(out, data) {
			t.Fatalf("k=%d m=%d: data decoded wrong", bs.k, bs.m)
		}
	}
}

// FuzzDecode feeds Decode arbitrary shards, cut from data into k+m equal
// pieces; bit i of missing drops shard i, and bit 63 shortens the last
// shard by a byte. Decode must return data that fits in the shards, or an
// error, never panic; data it returns encodes to the same data shards
// (one encoding). The seed corpus in testdata holds real blocks.
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
		got, err := c.Decode(shards)
		if err != nil {
			return
		}
		if len(got) >= kk*size {
			t.Fatalf("Decode returned %d bytes from %d shards of %d bytes, no room for padding", len(got), kk, size)
		}
		re, err := c.Encode(got)
		if err != nil {
			t.Fatalf("Encode(Decode(…)) = %v", err)
		}
		for i, s := range shards[:kk] { // rebuilt by Decode where missing
			if !bytes.Equal(re[i], s) {
				t.Fatalf("data shard %d re-encodes to %x, was %x", i, re[i], s)
			}
		}
	})
}

// TestExtender: a block coded with some parity, extended tier after tier
// (twice the parity, up to MaxShards shards), has after each extension
// exactly the shards that a Coder for all that parity makes, and the
// shards it had before are the same buffers with the same bytes: their
// packets must be sent again byte for byte (a nonce is a shard's index).
func TestExtender(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 9))
	for _, k := range []int{1, 2, 3, 17, 64, 128, MaxShards - 4, MaxShards - 1} {
		data := randData(rng, 40*k)
		from := min(k, 32, (MaxShards-k)/2) // none for k = MaxShards-1
		shards, err := mustNew(t, k, from).Encode(data)
		if err != nil {
			t.Fatal(err)
		}
		for from < MaxShards-k {
			to := min(max(2*from, 4), MaxShards-k)
			before := slices.Clone(shards)
			orig := make([][]byte, len(shards))
			for i, s := range shards {
				orig[i] = bytes.Clone(s)
			}
			e, err := NewExtender(k, from, to)
			if err != nil {
				t.Fatal(err)
			}
			got, err := e.Extend(shards)
			if err != nil {
				t.Fatalf("k=%d: Extend from %d to %d parity shards: %v", k, from, to, err)
			}
			want, err := mustNew(t, k, to).Encode(data)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.EqualFunc(got, want, bytes.Equal) {
				t.Fatalf("k=%d: extended from %d to %d parity shards = %x, want a Coder's %x", k, from, to, got, want)
			}
			for i := range before {
				if &got[i][0] != &before[i][0] || !bytes.Equal(before[i], orig[i]) {
					t.Fatalf("k=%d: extending from %d to %d parity shards replaced or changed shard %d", k, from, to, i)
				}
			}
			// Again into the same buffers, as a block's memory is reused.
			if again, err := e.Extend(got[:k+from]); err != nil || !slices.EqualFunc(again, want, bytes.Equal) {
				t.Fatalf("k=%d: extending from %d to %d parity shards again = %x, %v", k, from, to, again, err)
			}
			shards, from = got, to
		}
	}
}

func TestExtenderErrors(t *testing.T) {
	for _, a := range [][3]int{{0, 0, 1}, {-1, 0, 1}, {1, -1, 1}, {1, 3, 2}, {1, 0, MaxShards}, {MaxShards, 0, 1}} {
		if _, err := NewExtender(a[0], a[1], a[2]); err == nil {
			t.Errorf("NewExtender(%d, %d, %d) succeeded", a[0], a[1], a[2])
		}
	}
	const k = 5
	shards, err := mustNew(t, k, 2).Encode([]byte("one, two, three, and five!"))
	if err != nil {
		t.Fatal(err)
	}
	e, err := NewExtender(k, 2, 9)
	if err != nil {
		t.Fatal(err)
	}
	for _, in := range [][][]byte{shards[:k+1], append(slices.Clone(shards), shards[0])} {
		if _, err := e.Extend(in); err == nil {
			t.Errorf("extending %d shards with parity from %d succeeded", len(in), k+2)
		}
	}
	short := slices.Clone(shards)
	short[1] = short[1][1:]
	if _, err := e.Extend(short); err == nil {
		t.Error("extending a block with a short data shard succeeded")
	}
}

// TestExtendAllocs: extending into buffers a block already has adds no
// allocation to reedsolomon's own Encode.
func TestExtendAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates on its own account")
	}
	const k, from, to = 17, 17, 34
	shards, err := mustNew(t, k, to).Encode(benchData(k, 100))
	if err != nil {
		t.Fatal(err)
	}
	e, err := NewExtender(k, from, to)
	if err != nil {
		t.Fatal(err)
	}
	sub := append(slices.Clone(shards[:k]), shards[k+from:]...)
	lib := testing.AllocsPerRun(100, func() {
		if err := e.rs.Encode(sub); err != nil {
			t.Fatal(err)
		}
	})
	allocs := testing.AllocsPerRun(100, func() {
		if shards, err = e.Extend(shards[:k+from]); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != lib {
		t.Errorf("Extend allocated %v times per call, reedsolomon.Encode %v; want no more", allocs, lib)
	}
}

// BenchmarkExtend makes the parity that repairs add to a block once they
// have spent what it has: the next tier's (rooms' extendBlock), from and
// to parity shards.
func BenchmarkExtend(b *testing.B) {
	for _, bs := range []struct{ k, from, to, size int }{
		{1, 4, 8, 200},
		{8, 8, 16, 1361},
		{17, 17, 34, 1361},
		{64, 32, 64, 1361},
		{128, 32, 64, 1361},
		{128, 64, 127, 1361},
	} {
		b.Run(fmt.Sprintf("k=%d,%d-%d,%dB", bs.k, bs.from, bs.to, bs.size), func(b *testing.B) {
			shards, err := mustNew(b, bs.k, bs.to).Encode(benchData(bs.k, bs.size))
			if err != nil {
				b.Fatal(err)
			}
			e, err := NewExtender(bs.k, bs.from, bs.to)
			if err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64((bs.to - bs.from) * bs.size)) // the parity made
			b.ReportAllocs()
			for b.Loop() {
				if shards, err = e.Extend(shards[:bs.k+bs.from]); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestNoTwoByteTable: coding, extending and decoding blocks of fewer than
// minRSShards shards never makes reedsolomon build its 32 MiB table of
// the products of every byte pair, which it does on first use for a
// coder of fewer than 20 shards where it has no SIMD: mips and 32-bit
// arm, the routers, and here `go test -tags noasm` (.ci/run runs it).
// In a process of its own: the table, once made, stays.
func TestNoTwoByteTable(t *testing.T) {
	if os.Getenv("FEC_TABLE_CHILD") == "" {
		cmd := exec.Command(os.Args[0], "-test.run=^TestNoTwoByteTable$")
		cmd.Env = append(os.Environ(), "FEC_TABLE_CHILD=1")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		return
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	rng := rand.New(rand.NewPCG(3, 4))
	for k := 1; k < minRSShards; k++ {
		for m := 0; k+m < minRSShards; m++ {
			c := mustNew(t, k, m)
			data := randData(rng, 100*k)
			shards, err := c.Encode(data)
			if err != nil {
				t.Fatal(err)
			}
			e, err := NewExtender(k, m, m+4)
			if err != nil {
				t.Fatal(err)
			}
			if shards, err = e.Extend(shards); err != nil {
				t.Fatal(err)
			}
			// The first min(k, m+4) data shards lost, rebuilt from parity.
			c4 := mustNew(t, k, m+4)
			lost := min(k, m+4)
			present := make([]int, 0, k)
			for i := lost; i < k+lost; i++ {
				present = append(present, i)
			}
			checkDecode(t, c4, shards, present, data)
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	if grew := int64(after.HeapAlloc) - int64(before.HeapAlloc); grew > 8<<20 {
		t.Errorf("small blocks left %d bytes more on the heap: reedsolomon's table of byte-pair products", grew)
	}
}

// TestSmallBlocksAsReedSolomon: the parity of blocks of fewer than
// minRSShards shards, which codeSmall makes rather than reedsolomon, is
// byte for byte reedsolomon's, and decodes with its padded coder.
func TestSmallBlocksAsReedSolomon(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for k := 1; k < minRSShards; k++ {
		for m := 1; k+m < minRSShards; m++ {
			data := randData(rng, 37*k)
			shards, err := mustNew(t, k, m).Encode(data)
			if err != nil {
				t.Fatal(err)
			}
			rs, err := reedsolomon.New(k, m, reedsolomon.WithCauchyMatrix())
			if err != nil {
				t.Fatal(err)
			}
			want := make([][]byte, k+m)
			for i := range want {
				want[i] = slices.Clone(shards[i])
				if i >= k {
					clear(want[i])
				}
			}
			if err := rs.Encode(want); err != nil {
				t.Fatal(err)
			}
			if !slices.EqualFunc(shards, want, bytes.Equal) {
				t.Fatalf("k=%d m=%d: shards %x, reedsolomon's %x", k, m, shards, want)
			}
			// The last k shards: as many data shards lost as there is parity.
			present := make([]int, 0, k)
			for i := m; i < k+m; i++ {
				present = append(present, i)
			}
			checkDecode(t, mustNew(t, k, m), shards, present, data)
		}
	}
}
