package roomlog_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"

	"meshd/rooms/roomlog"
)

// The tests write batches whose bytes and record counts are a function of
// their first sequence number, so that whatever a log serves can be checked
// against what was appended without remembering it.

func countFor(first uint64) int { return 1 + int(first%3) }

func batchFor(first uint64) []byte {
	b := make([]byte, 20+first*7919%300)
	for i := range b {
		b[i] = byte(first*31 + uint64(i))
	}
	return b
}

type batch struct {
	First uint64
	Count int
}

// appendRun appends n batches from sequence number first on, each
// following the last, and returns the sequence number after them.
func appendRun(t testing.TB, l *roomlog.Log, first uint64, n int) uint64 {
	t.Helper()
	for range n {
		if err := l.Append(first, countFor(first), batchFor(first)); err != nil {
			t.Fatalf("Append(%d): %v", first, err)
		}
		first += uint64(countFor(first))
	}
	return first
}

// readAll returns what l serves from sequence number from on, checking
// that every batch's bytes are the ones written for it.
func readAll(t testing.TB, l *roomlog.Log, from uint64) []batch {
	t.Helper()
	var got []batch
	l.Read(from, func(first uint64, count int, b []byte) bool {
		if count != countFor(first) || !bytes.Equal(b, batchFor(first)) {
			t.Errorf("Read served %d records at %d, %d bytes: not what was appended there", count, first, len(b))
		}
		got = append(got, batch{first, count})
		return true
	})
	return got
}

// run lists the batches appendRun(first, n) appends.
func run(first uint64, n int) []batch {
	var bs []batch
	for range n {
		bs = append(bs, batch{first, countFor(first)})
		first += uint64(countFor(first))
	}
	return bs
}

func open(t testing.TB, opts roomlog.Options) *roomlog.Log {
	t.Helper()
	l, err := roomlog.Open(opts)
	if err != nil {
		t.Fatalf("Open(%+v): %v", opts, err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// modes are the two kinds of log that must behave alike.
func modes(t *testing.T) map[string]roomlog.Options {
	return map[string]roomlog.Options{
		"memory": {},
		"disk":   {Dir: filepath.Join(t.TempDir(), "log")},
	}
}

func TestAppendRead(t *testing.T) {
	for name, opts := range modes(t) {
		t.Run(name, func(t *testing.T) {
			l := open(t, opts)
			if l.Next() != 0 || l.Oldest() != 0 || len(readAll(t, l, 0)) != 0 {
				t.Fatalf("empty log: Next %d, Oldest %d, Read %v; want 0, 0, nothing", l.Next(), l.Oldest(), readAll(t, l, 0))
			}
			next := appendRun(t, l, 5, 10)
			next = appendRun(t, l, next+100, 10) // a declared gap
			want := append(run(5, 10), run(run(5, 11)[10].First+100, 10)...)
			if l.Next() != next || l.Oldest() != 5 {
				t.Errorf("Next, Oldest = %d, %d; want %d, 5", l.Next(), l.Oldest(), next)
			}
			for _, tc := range []struct {
				from uint64
				want []batch
			}{
				{0, want},
				{5, want},
				{want[3].First, want[3:]},
				{want[3].First + uint64(want[3].Count) - 1, want[3:]}, // the last record of a batch
				{want[9].First + uint64(want[9].Count), want[10:]},    // inside the gap
				{next - 1, want[19:]},
				{next, nil},
				{next + 1000, nil},
			} {
				if got := readAll(t, l, tc.from); !slices.Equal(got, tc.want) {
					t.Errorf("Read(%d) = %v, want %v", tc.from, got, tc.want)
				}
			}
			// Read stops when yield says so, past the chunk it collects at once.
			for _, stop := range []int{1, 16, 17} {
				n := 0
				l.Read(0, func(uint64, int, []byte) bool { n++; return n < stop })
				if n != stop {
					t.Errorf("Read with yield false at call %d: %d calls", stop, n)
				}
			}
		})
	}
}

func TestAppendRejects(t *testing.T) {
	for name, opts := range modes(t) {
		t.Run(name, func(t *testing.T) {
			l := open(t, opts)
			if err := l.Append(10, 5, []byte("x")); err != nil {
				t.Fatal(err)
			}
			for _, tc := range []struct {
				name  string
				first uint64
				count int
				size  int
				want  error
			}{
				{"first zero", 0, 1, 1, roomlog.ErrInvalid},
				{"count zero", 20, 0, 1, roomlog.ErrInvalid},
				{"count over max", 20, roomlog.MaxCount + 1, 1, roomlog.ErrInvalid},
				{"batch over max", 20, 1, roomlog.MaxBatch + 1, roomlog.ErrInvalid},
				{"sequence wraps", 1<<64 - 2, 3, 1, roomlog.ErrInvalid},
				{"overlaps the last batch", 14, 1, 1, roomlog.ErrOutOfOrder},
				{"before the last batch", 3, 1, 1, roomlog.ErrOutOfOrder},
			} {
				err := l.Append(tc.first, tc.count, make([]byte, tc.size))
				if !errors.Is(err, tc.want) {
					t.Errorf("%s: Append(%d, %d, %d bytes) = %v, want %v", tc.name, tc.first, tc.count, tc.size, err, tc.want)
				}
			}
			if l.Next() != 15 || l.Stats().Entries != 1 {
				t.Errorf("after rejected appends: Next %d, %d entries; want 15, 1", l.Next(), l.Stats().Entries)
			}
			for _, tc := range []struct {
				first uint64
				count int
				size  int
			}{{15, 1, 0}, {16, roomlog.MaxCount, roomlog.MaxBatch}, {1<<64 - 2, 1, 1}} {
				if err := l.Append(tc.first, tc.count, make([]byte, tc.size)); err != nil {
					t.Errorf("Append(%d, %d, %d bytes) = %v, want nil", tc.first, tc.count, tc.size, err)
				}
			}
			if err := l.Append(1<<64-1, 1, nil); !errors.Is(err, roomlog.ErrInvalid) {
				t.Errorf("Append(%d, 1) = %v, want ErrInvalid: no sequence number is left", uint64(1<<64-1), err)
			}
			l.Close()
			l = open(t, opts)
			if opts.Dir != "" && l.Next() != 1<<64-1 {
				t.Errorf("reopened: Next = %d, want %d", l.Next(), uint64(1<<64-1))
			}
			l.Close()
			if err := l.Append(1<<64-2, 1, nil); !errors.Is(err, roomlog.ErrClosed) {
				t.Errorf("Append after Close = %v, want ErrClosed", err)
			}
		})
	}
}

func TestAppendCopies(t *testing.T) {
	l := open(t, roomlog.Options{})
	b := []byte("batch")
	l.Append(1, 1, b)
	copy(b, "XXXXX")
	l.Read(0, func(_ uint64, _ int, got []byte) bool {
		if string(got) != "batch" {
			t.Errorf("Read = %q after the caller reused its buffer, want %q", got, "batch")
		}
		got = append(got, "!!"...) // must not reach into the log
		return true
	})
	l.Append(2, 1, []byte("next"))
	if got := readAll2(l); !slices.Equal(got, []string{"batch", "next"}) {
		t.Errorf("Read = %q, want [batch next]", got)
	}
}

func readAll2(l *roomlog.Log) []string {
	var got []string
	l.Read(0, func(_ uint64, _ int, b []byte) bool { got = append(got, string(b)); return true })
	return got
}

func TestRetention(t *testing.T) {
	const keep = 50
	for name, opts := range modes(t) {
		t.Run(name, func(t *testing.T) {
			opts.Keep, opts.SegmentBytes = keep, 1<<10
			l := open(t, opts)
			next := uint64(1)
			for range 100 {
				next = appendRun(t, l, next, 7)
				st := l.Stats()
				got := readAll(t, l, 0)
				if want := run(l.Oldest(), st.Entries); !slices.Equal(got, want) || len(got) == 0 || got[0].First != l.Oldest() {
					t.Fatalf("Read(0) = %v, want the run from Oldest %d: %v", got, l.Oldest(), want)
				}
				// At least keep records, and at most those of one more segment (a
				// 1 KiB segment holds at most 1024/(18+20) = 26 entries).
				if held := int(next - l.Oldest()); st.Records != held || held < min(keep, int(next-1)) || held > keep+26*3 {
					t.Fatalf("holds %d records from %d to %d (Stats %+v), want %d to %d", held, l.Oldest(), next, st, keep, keep+26*3)
				}
			}
			if l.Oldest() == 1 {
				t.Fatal("nothing was ever trimmed")
			}
			if opts.Dir == "" {
				return
			}
			var names []string
			l.Read(0, func(first uint64, _ int, _ []byte) bool {
				names = append(names, fmt.Sprintf("%020d.seg", first))
				return true
			})
			files, _ := filepath.Glob(filepath.Join(opts.Dir, "*.seg"))
			if len(files) != l.Stats().Segments || filepath.Base(files[0]) != names[0] {
				t.Errorf("segment files %v, want %d starting with %s", files, l.Stats().Segments, names[0])
			}
			for _, f := range files {
				if !slices.Contains(names, filepath.Base(f)) {
					t.Errorf("segment file %s is not named by the first sequence number of an entry", f)
				}
			}
		})
	}
}

func TestReopen(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "log")
	opts := roomlog.Options{Dir: dir, SegmentBytes: 2 << 10}
	l := open(t, opts)
	next := appendRun(t, l, 1, 40)
	want := readAll(t, l, 0)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("log directory: %v, %v; want mode 0700", fi.Mode(), err)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*.seg"))
	for _, f := range files {
		if fi, err := os.Stat(f); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v, %v; want mode 0600", f, fi.Mode(), err)
		}
	}
	if len(files) < 3 {
		t.Fatalf("%d segment files, want several", len(files))
	}

	for round := range 3 {
		l = open(t, opts)
		if got := readAll(t, l, 0); !slices.Equal(got, want) || l.Next() != next || l.Oldest() != 1 {
			t.Fatalf("round %d: reopened log has %v, Next %d, Oldest %d; want %v, %d, 1", round, got, l.Next(), l.Oldest(), want, next)
		}
		if st := l.Stats(); st.TruncatedBytes != 0 || st.Quarantined != 0 {
			t.Errorf("round %d: clean reopen repaired something: %+v", round, st)
		}
		next = appendRun(t, l, next, 3)
		want = readAll(t, l, 0)
		l.Close()
	}
}

func TestConcurrent(t *testing.T) {
	for name, opts := range modes(t) {
		t.Run(name, func(t *testing.T) {
			opts.Keep, opts.SegmentBytes = 20, 512
			l := open(t, opts)
			var wg sync.WaitGroup
			done := make(chan struct{})
			for range 4 {
				wg.Go(func() {
					for {
						select {
						case <-done:
							return
						default:
						}
						got := readAll(t, l, 0)
						for i := 1; i < len(got); i++ {
							if got[i].First != got[i-1].First+uint64(got[i-1].Count) {
								t.Errorf("Read served %v then %v", got[i-1], got[i])
								return
							}
						}
						l.Stats()
						l.Oldest()
					}
				})
			}
			appendRun(t, l, 1, 500)
			close(done)
			wg.Wait()
		})
	}
}

// frame encodes one entry as the package documentation lays it out.
func frame(first uint64, count uint16, batch []byte) []byte {
	body := binary.BigEndian.AppendUint64(nil, first)
	body = binary.BigEndian.AppendUint16(body, count)
	body = append(body, batch...)
	b := binary.BigEndian.AppendUint32(nil, uint32(len(body)))
	b = binary.BigEndian.AppendUint32(b, crc32.Checksum(body, crc32.MakeTable(crc32.Castagnoli)))
	return append(b, body...)
}

func TestFormat(t *testing.T) {
	dir := t.TempDir()
	l := open(t, roomlog.Options{Dir: dir})
	l.Append(42, 3, []byte("abc"))
	l.Append(50, 1, nil)
	l.Close()
	got, err := os.ReadFile(filepath.Join(dir, "00000000000000000042.seg"))
	want := append(frame(42, 3, []byte("abc")), frame(50, 1, nil)...)
	if err != nil || !bytes.Equal(got, want) {
		t.Errorf("segment file = %x, %v; want %x", got, err, want)
	}
}

// TestFileFailure checks that a batch whose file cannot be written is
// still served, and that the log takes to files again once it can.
func TestFileFailure(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "log")
	l := open(t, roomlog.Options{Dir: dir, SegmentBytes: 1}) // a segment file per batch
	next := appendRun(t, l, 1, 3)
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	if err := l.Append(next, countFor(next), batchFor(next)); err == nil {
		t.Fatal("Append with its directory gone = nil, want an error")
	}
	next += uint64(countFor(next))
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	next = appendRun(t, l, next, 2)
	if got, want := readAll(t, l, 0), run(1, 6); !slices.Equal(got, want) || l.Next() != next {
		t.Errorf("Read(0) = %v, Next %d; want %v, %d", got, l.Next(), want, next)
	}
	l.Close()
	l = open(t, roomlog.Options{Dir: dir})
	if got, want := readAll(t, l, 0), run(1, 6)[4:]; !slices.Equal(got, want) {
		t.Errorf("reopened: Read(0) = %v, want what was written after the directory came back: %v", got, want)
	}
}
