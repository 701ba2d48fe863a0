package roomlog

import (
	"bytes"
	"testing"
)

// TestSegmentsFit: a segment that stops growing, at a roll, keeps no
// more spare room than an eighth of its buffer (large batches left more),
// Release leaves the open one none, and what was appended is served
// unchanged, and appending after Release goes on.
func TestSegmentsFit(t *testing.T) {
	// 300-byte batches leave less spare room at a roll than an entry;
	// 4500-byte ones 2506 bytes of a 16 KiB buffer.
	for _, size := range []int{300, 4500} {
		for _, dir := range []string{"", t.TempDir()} {
			l, err := Open(Options{Dir: dir, Keep: 1 << 20, SegmentBytes: 16 << 10})
			if err != nil {
				t.Fatal(err)
			}
			batch := bytes.Repeat([]byte("x"), size)
			seq := uint64(1)
			add := func(n int) {
				t.Helper()
				for range n {
					if err := l.Append(seq, 1, batch); err != nil {
						t.Fatal(err)
					}
					seq++
				}
			}
			// Three full segments and three entries of a fourth, each
			// grown by doubling.
			add(3*((16<<10)/(size+headerLen+fixedLen)) + 3)
			if len(l.segs) != 4 {
				t.Fatalf("%d-byte batches: %d segments, want 4", size, len(l.segs))
			}
			for i, s := range l.segs[:3] {
				if spare := cap(s.buf) - len(s.buf); spare >= cap(s.buf)/8 {
					t.Errorf("%d-byte batches, dir %q: rolled segment %d: %d bytes in a buffer of %d", size, dir, i, len(s.buf), cap(s.buf))
				}
			}
			open := l.segs[3]
			if cap(open.buf) == len(open.buf) {
				t.Fatalf("%d-byte batches, dir %q: the open segment has no spare room to release (%d bytes)", size, dir, len(open.buf))
			}
			l.Release()
			if cap(open.buf) != len(open.buf) {
				t.Errorf("%d-byte batches, dir %q: after Release the open segment holds %d bytes in a buffer of %d", size, dir, len(open.buf), cap(open.buf))
			}
			add(5)
			n := uint64(1)
			l.Read(1, func(first uint64, count int, b []byte) bool {
				if first != n || count != 1 || !bytes.Equal(b, batch) {
					t.Fatalf("%d-byte batches, dir %q: read %d records at %d (%d bytes), want 1 at %d", size, dir, count, first, len(b), n)
				}
				n++
				return true
			})
			if n != seq {
				t.Errorf("%d-byte batches, dir %q: read up to %d, want %d", size, dir, n, seq)
			}
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// BenchmarkHeld appends b.N batches of 1 record and 300 bytes (a line of
// about 200 characters, signed) to a log keeping the default 1000 records,
// in segments of the default size, and reports the RAM its segments'
// buffers take, on average and at most after each append past the first
// 2000: what a busy room's history costs its host. Run with
// -benchtime=20000x or more; the time per op is an append's.
func BenchmarkHeld(b *testing.B) {
	l, err := Open(Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	batch := make([]byte, 300)
	var sum, most, n int
	seq := uint64(1)
	for b.Loop() {
		if err := l.Append(seq, 1, batch); err != nil {
			b.Fatal(err)
		}
		seq++
		if seq <= 2000 {
			continue
		}
		held := 0
		for _, s := range l.segs {
			held += cap(s.buf)
		}
		sum += held
		most = max(most, held)
		n++
	}
	if n > 0 {
		b.ReportMetric(float64(sum)/float64(n)/1024, "held-KiB-avg")
		b.ReportMetric(float64(most)/1024, "held-KiB-max")
	}
}
