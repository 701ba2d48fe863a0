package roomlog_test

import (
	"os"
	"testing"

	"meshd/rooms/roomlog"
)

// benchDir returns a directory in tmpfs if there is one, as the log is
// kept in production, or else a temporary directory.
func benchDir(b *testing.B) string {
	if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
		dir, err := os.MkdirTemp("/dev/shm", "roomlog-bench")
		if err == nil {
			b.Cleanup(func() { os.RemoveAll(dir) })
			return dir
		}
	}
	return b.TempDir()
}

func BenchmarkAppend(b *testing.B) {
	batch := make([]byte, 300)
	for _, bc := range []struct {
		name string
		dir  func(b *testing.B) string
	}{
		{"tmpfs", benchDir},
		{"memory", func(*testing.B) string { return "" }},
	} {
		b.Run(bc.name, func(b *testing.B) {
			l := open(b, roomlog.Options{Dir: bc.dir(b)})
			b.ReportAllocs()
			b.SetBytes(int64(len(batch)))
			seq := uint64(1)
			for b.Loop() {
				if err := l.Append(seq, 1, batch); err != nil {
					b.Fatal(err)
				}
				seq++
			}
		})
	}
}

func BenchmarkRead100(b *testing.B) {
	l := open(b, roomlog.Options{})
	appendRun(b, l, 1, 1000)
	all := readAll(b, l, 0)
	from := all[len(all)-100].First
	b.ReportAllocs()
	for b.Loop() {
		n := 0
		l.Read(from, func(uint64, int, []byte) bool { n++; return true })
		if n != 100 {
			b.Fatalf("Read yielded %d batches, want 100", n)
		}
	}
}
