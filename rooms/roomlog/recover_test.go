package roomlog_test

import (
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"testing"

	"meshd/rooms/roomlog"
)

// segFile is a segment file of a log the tests wrote, as parsed by the
// tests' own reading of the documented format.
type segFile struct {
	path   string
	first  uint64
	frames []frameAt
}

type frameAt struct {
	off, size int
	batch
}

func (s segFile) end() uint64 {
	f := s.frames[len(s.frames)-1]
	return f.First + uint64(f.Count)
}

// build writes n batches from sequence number 1 on into a new log and
// returns its directory and segment files.
func build(t *testing.T, segmentBytes, n int) (string, []segFile) {
	t.Helper()
	dir := t.TempDir()
	l := open(t, roomlog.Options{Dir: dir, SegmentBytes: segmentBytes})
	appendRun(t, l, 1, n)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return dir, segFiles(t, dir)
}

func segFiles(t *testing.T, dir string) []segFile {
	t.Helper()
	paths, _ := filepath.Glob(filepath.Join(dir, "*.seg"))
	var segs []segFile
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		s := segFile{path: p}
		fmt.Sscanf(filepath.Base(p), "%d.seg", &s.first)
		for off := 0; off < len(b); {
			size := 8 + int(binary.BigEndian.Uint32(b[off:]))
			body := b[off+8:]
			s.frames = append(s.frames, frameAt{off, size, batch{binary.BigEndian.Uint64(body), int(binary.BigEndian.Uint16(body[8:]))}})
			off += size
		}
		segs = append(segs, s)
	}
	return segs
}

// copyDir copies the segment files of dir into a new directory.
func copyDir(t *testing.T, dir string) string {
	t.Helper()
	dst := t.TempDir()
	paths, _ := filepath.Glob(filepath.Join(dir, "*"))
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err == nil {
			err = os.WriteFile(filepath.Join(dst, filepath.Base(p)), b, 0o600)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	return dst
}

// batches lists the batches of segs, leaving out the last drop of them.
func batches(segs []segFile, drop int) []batch {
	var bs []batch
	for _, s := range segs {
		for _, f := range s.frames {
			bs = append(bs, f.batch)
		}
	}
	return bs[:len(bs)-drop]
}

// checkRecovered opens dir and checks what the log serves and repaired,
// that appending goes on from Next, and that a second Open finds the
// repaired files clean.
func checkRecovered(t *testing.T, dir string, want []batch, next uint64, truncated int64, quarantined int) {
	t.Helper()
	l := open(t, roomlog.Options{Dir: dir})
	if got := readAll(t, l, 0); !slices.Equal(got, want) {
		t.Errorf("Read(0) = %v\nwant %v", got, want)
	}
	if l.Next() != next {
		t.Errorf("Next = %d, want %d", l.Next(), next)
	}
	if st := l.Stats(); st.TruncatedBytes != truncated || st.Quarantined != quarantined {
		t.Errorf("Stats = %+v, want %d bytes truncated and %d segments quarantined", st, truncated, quarantined)
	}
	if err := l.Append(next, countFor(next), batchFor(next)); err != nil {
		t.Fatalf("Append(Next) = %v", err)
	}
	l.Close()

	l = open(t, roomlog.Options{Dir: dir})
	want = append(slices.Clip(want), batch{next, countFor(next)})
	if got := readAll(t, l, 0); !slices.Equal(got, want) {
		t.Errorf("after an Append and a second Open: Read(0) = %v\nwant %v", got, want)
	}
	if st := l.Stats(); st.TruncatedBytes != 0 || st.Quarantined != 0 {
		t.Errorf("second Open repaired again: %+v", st)
	}
}

// TestTornTail cuts the last entry of the log short at every byte, as a
// write interrupted by a crash would.
func TestTornTail(t *testing.T) {
	for _, tc := range []struct {
		name         string
		segmentBytes int
		batches      int
	}{
		// Few files: every cut copies them all.
		{"last of several entries in its segment", 1 << 10, 4},
		{"only entry of its segment", 1, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tmpl, segs := build(t, tc.segmentBytes, tc.batches)
			last := segs[len(segs)-1]
			lf := last.frames[len(last.frames)-1]
			if tc.segmentBytes == 1 && len(last.frames) != 1 || tc.segmentBytes > 1 && len(last.frames) < 2 {
				t.Fatalf("last segment has %d entries", len(last.frames))
			}
			for cut := lf.off; cut < lf.off+lf.size; cut++ {
				dir := copyDir(t, tmpl)
				path := filepath.Join(dir, filepath.Base(last.path))
				if err := os.Truncate(path, int64(cut)); err != nil {
					t.Fatal(err)
				}
				checkRecovered(t, dir, batches(segs, 1), lf.First, int64(cut-lf.off), 0)
				if t.Failed() {
					t.Fatalf("with the last segment cut at byte %d", cut)
				}
			}
		})
	}
}

// mutation damages the segment files of a log as a crash or a failing
// medium might, and says what Open must then make of them.
type mutation struct {
	name  string
	apply func(t *testing.T, segs []segFile)
	// want returns the batches served, Next, and the bytes truncated and
	// segments quarantined.
	want func(segs []segFile) ([]batch, uint64, int64, int)
	// corrupt are the indexes in segs of the segments set aside.
	corrupt []int
}

func TestCorruption(t *testing.T) {
	all := func(segs []segFile) ([]batch, uint64, int64, int) {
		return batches(segs, 0), segs[len(segs)-1].end(), 0, 0
	}
	without := func(i int, next func(segs []segFile) uint64) func([]segFile) ([]batch, uint64, int64, int) {
		return func(segs []segFile) ([]batch, uint64, int64, int) {
			j := (i + len(segs)) % len(segs)
			rest := slices.Delete(slices.Clone(segs), j, j+1)
			return batches(rest, 0), next(segs), 0, 1
		}
	}
	end := func(segs []segFile) uint64 { return segs[len(segs)-1].end() }
	mutations := []mutation{
		{
			name:    "byte flipped in the middle of the first segment",
			apply:   func(t *testing.T, segs []segFile) { flip(t, segs[0].path, segs[0].frames[1].off+20) },
			want:    without(0, end),
			corrupt: []int{0},
		},
		{
			name:    "byte flipped in a CRC in an earlier segment",
			apply:   func(t *testing.T, segs []segFile) { flip(t, segs[1].path, segs[1].frames[1].off+5) },
			want:    without(1, end),
			corrupt: []int{1},
		},
		{
			name: "byte flipped in the middle of the last segment",
			apply: func(t *testing.T, segs []segFile) {
				flip(t, segs[len(segs)-1].path, segs[len(segs)-1].frames[1].off+30)
			},
			corrupt: []int{-1},
			// The valid entry before the damage still counts for Next.
			want: without(-1, func(segs []segFile) uint64 {
				f := segs[len(segs)-1].frames[0]
				return f.First + uint64(f.Count)
			}),
		},
		{
			name: "huge length in the middle of an earlier segment",
			apply: func(t *testing.T, segs []segFile) {
				overwrite(t, segs[1].path, segs[1].frames[1].off, []byte{0xff, 0xff, 0xff, 0xff})
			},
			want:    without(1, end),
			corrupt: []int{1},
		},
		{
			name: "huge length at the end of the last segment",
			apply: func(t *testing.T, segs []segFile) {
				appendTo(t, segs[len(segs)-1].path, []byte{0xff, 0xff, 0xff, 0xf0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10})
			},
			// Nothing a write leaves looks like this: it is damage, not a torn write.
			want:    without(-1, func(segs []segFile) uint64 { return end(segs) }),
			corrupt: []int{-1},
		},
		{
			name: "zeros after the last entry",
			apply: func(t *testing.T, segs []segFile) {
				appendTo(t, segs[len(segs)-1].path, make([]byte, 4096))
			},
			want: func(segs []segFile) ([]batch, uint64, int64, int) {
				return batches(segs, 0), end(segs), 4096, 0
			},
		},
		{
			name: "last entry fails its CRC",
			apply: func(t *testing.T, segs []segFile) {
				s := segs[len(segs)-1]
				flip(t, s.path, s.frames[len(s.frames)-1].off+20)
			},
			want: func(segs []segFile) ([]batch, uint64, int64, int) {
				f := segs[len(segs)-1].frames[len(segs[len(segs)-1].frames)-1]
				return batches(segs, 1), f.First, int64(f.size), 0
			},
		},
		{
			name: "entry going backwards in an earlier segment",
			apply: func(t *testing.T, segs []segFile) {
				appendTo(t, segs[0].path, frame(segs[0].frames[0].First, 1, []byte("replay")))
			},
			want:    without(0, end),
			corrupt: []int{0},
		},
		{
			name: "entry going backwards at the end of the last segment",
			apply: func(t *testing.T, segs []segFile) {
				appendTo(t, segs[len(segs)-1].path, frame(segs[0].end(), 1, []byte("replay")))
			},
			want:    without(-1, func(segs []segFile) uint64 { return end(segs) }),
			corrupt: []int{-1},
		},
		{
			name: "segment overlapping the one before",
			apply: func(t *testing.T, segs []segFile) {
				first := segs[1].end() - 1
				write(t, filepath.Join(filepath.Dir(segs[0].path), fmt.Sprintf("%020d.seg", first)), frame(first, 1, batchFor(first)))
			},
			want: func(segs []segFile) ([]batch, uint64, int64, int) {
				return batches(segs, 0), end(segs), 0, 1
			},
		},
		{
			name: "segment named after another sequence number",
			apply: func(t *testing.T, segs []segFile) {
				to := filepath.Join(filepath.Dir(segs[1].path), fmt.Sprintf("%020d.seg", segs[1].first+1))
				if err := os.Rename(segs[1].path, to); err != nil {
					t.Fatal(err)
				}
				segs[1].path = to
			},
			want:    without(1, end),
			corrupt: []int{1},
		},
		{
			name: "empty last segment",
			apply: func(t *testing.T, segs []segFile) {
				write(t, filepath.Join(filepath.Dir(segs[0].path), fmt.Sprintf("%020d.seg", end(segs))), nil)
			},
			want: all,
		},
		{
			name: "leftover and unknown files",
			apply: func(t *testing.T, segs []segFile) {
				dir := filepath.Dir(segs[0].path)
				for _, name := range []string{"00000000000000000001.seg.tmp", "junk", "1.seg", "+0000000000000000001.seg", "00000000000000000001.seg.corrupt"} {
					write(t, filepath.Join(dir, name), []byte("garbage"))
				}
				if err := os.Mkdir(filepath.Join(dir, fmt.Sprintf("%020d.seg", end(segs)+5)), 0o700); err != nil {
					t.Fatal(err)
				}
			},
			want: all,
		},
	}
	for _, m := range mutations {
		t.Run(m.name, func(t *testing.T) {
			tmpl, segs := build(t, 1<<10, 33)
			if len(segs) < 3 || len(segs[len(segs)-1].frames) < 3 {
				t.Fatalf("fixture has %d segments, the last with %d entries; want 3 and 3", len(segs), len(segs[len(segs)-1].frames))
			}
			dir := copyDir(t, tmpl)
			for i := range segs {
				segs[i].path = filepath.Join(dir, filepath.Base(segs[i].path))
			}
			m.apply(t, segs)
			want, next, truncated, quarantined := m.want(segs)
			checkRecovered(t, dir, want, next, truncated, quarantined)
			for _, i := range m.corrupt {
				if i < 0 {
					i += len(segs)
				}
				if _, err := os.Stat(segs[i].path + ".corrupt"); err != nil {
					t.Errorf("segment %s not set aside: %v", segs[i].path, err)
				}
			}
		})
	}
}

// TestHugeLength checks that a length field claiming gigabytes makes Open
// allocate no more than the file holds.
func TestHugeLength(t *testing.T) {
	dir := t.TempDir()
	huge := []byte{0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0}
	write(t, filepath.Join(dir, "00000000000000000001.seg"), append(frame(1, 1, []byte("a")), huge...))
	write(t, filepath.Join(dir, "00000000000000000002.seg"), append(frame(2, 1, []byte("b")), huge...))
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	l, err := roomlog.Open(roomlog.Options{Dir: dir})
	runtime.ReadMemStats(&after)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if n := after.TotalAlloc - before.TotalAlloc; n > 1<<20 {
		t.Errorf("Open allocated %d bytes for files of %d bytes", n, 2*(len(huge)+19))
	}
	if st := l.Stats(); st.Quarantined != 2 || st.Entries != 0 || l.Next() != 3 {
		t.Errorf("Stats %+v, Next %d; want both segments quarantined, Next 3", st, l.Next())
	}
}

func flip(t *testing.T, path string, off int) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b[off] ^= 0x10
	write(t, path, b)
}

func overwrite(t *testing.T, path string, off int, p []byte) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	copy(b[off:], p)
	write(t, path, b)
}

func appendTo(t *testing.T, path string, p []byte) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	write(t, path, append(b, p...))
}

func write(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}
