package roomlog_test

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"meshd/rooms/roomlog"
)

// FuzzOpen opens a log whose only segment file, 1, holds arbitrary bytes.
// Whatever the log then serves must be the file's own bytes, entry for
// entry from its start, each entry checked and after the one before; and
// the file must be left as the whole of it (truncated to it) or set aside.
// Seeds are in testdata/fuzz/FuzzOpen.
func FuzzOpen(f *testing.F) {
	f.Add(frame(1, 1, []byte("one")))
	f.Fuzz(func(t *testing.T, b []byte) {
		dir := t.TempDir()
		path := filepath.Join(dir, "00000000000000000001.seg")
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
		l, err := roomlog.Open(roomlog.Options{Dir: dir})
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()

		var served []byte
		var next uint64
		l.Read(0, func(first uint64, count int, batch []byte) bool {
			if first < next || count < 1 {
				t.Fatalf("served %d records at %d after the log reached %d", count, first, next)
			}
			next = first + uint64(count)
			served = append(served, frame(first, uint16(count), batch)...)
			return true
		})
		if !bytes.HasPrefix(b, served) {
			t.Fatalf("served entries %x, not a prefix of the file %x", served, b)
		}
		st := l.Stats()
		if l.Next() < next || st.Bytes != int64(len(served)) {
			t.Fatalf("Next %d, Stats %+v after serving %d bytes up to %d", l.Next(), st, len(served), next)
		}

		switch after, err := os.ReadFile(path); {
		case err == nil:
			if !bytes.Equal(after, served) || st.TruncatedBytes != int64(len(b)-len(served)) {
				t.Fatalf("file left as %x, %d bytes cut; served %x", after, st.TruncatedBytes, served)
			}
		case errors.Is(err, fs.ErrNotExist):
			set, err := os.ReadFile(path + ".corrupt")
			switch {
			case err == nil && bytes.Equal(set, b) && st.Quarantined == 1 && len(served) == 0:
			case errors.Is(err, fs.ErrNotExist) && len(served) == 0 && st.TruncatedBytes == int64(len(b)):
				// Nothing valid at all, and only a torn entry: removed.
			default:
				t.Fatalf("file gone; set aside: %x, %v; Stats %+v; served %x", set, err, st, served)
			}
		default:
			t.Fatal(err)
		}
	})
}
