package roomlog

import (
	"bytes"
	"testing"
)

// TestSegmentsFit: a segment that stops growing, at a roll, holds a
// buffer of its size, and Release does the same for the open one; what
// was appended is served unchanged, and appending after Release goes on.
func TestSegmentsFit(t *testing.T) {
	for _, dir := range []string{"", t.TempDir()} {
		l, err := Open(Options{Dir: dir, Keep: 1 << 20, SegmentBytes: 16 << 10})
		if err != nil {
			t.Fatal(err)
		}
		batch := bytes.Repeat([]byte("x"), 300)
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
		// 200 entries of 318 bytes: three full segments and part of a
		// fourth, each grown by doubling.
		add(200)
		if len(l.segs) != 4 {
			t.Fatalf("%d segments, want 4", len(l.segs))
		}
		for i, s := range l.segs[:3] {
			if cap(s.buf) != len(s.buf) {
				t.Errorf("dir %q: rolled segment %d: %d bytes in a buffer of %d", dir, i, len(s.buf), cap(s.buf))
			}
		}
		open := l.segs[3]
		if cap(open.buf) == len(open.buf) {
			t.Fatalf("dir %q: the open segment has no spare room to release (%d bytes)", dir, len(open.buf))
		}
		l.Release()
		if cap(open.buf) != len(open.buf) {
			t.Errorf("dir %q: after Release the open segment holds %d bytes in a buffer of %d", dir, len(open.buf), cap(open.buf))
		}
		add(5)
		n := uint64(1)
		l.Read(1, func(first uint64, count int, b []byte) bool {
			if first != n || count != 1 || !bytes.Equal(b, batch) {
				t.Fatalf("dir %q: read %d records at %d (%d bytes), want 1 at %d", dir, count, first, len(b), n)
			}
			n++
			return true
		})
		if n != seq {
			t.Errorf("dir %q: read up to %d, want %d", dir, n, seq)
		}
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
	}
}
