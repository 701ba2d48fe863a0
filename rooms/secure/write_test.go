package secure

import (
	"io"
	"runtime"
	"testing"
)

// TestSmallWriteSmallBuffer: a small write is sealed in a small buffer,
// not a full-size one, even when a collection has just emptied the pools,
// as it often has in a quiet host: each such write allocated 16 KiB.
func TestSmallWriteSmallBuffer(t *testing.T) {
	s := newSession(t, pipe)
	got := make([]byte, 64)
	done := make(chan error, 1)
	const writes = 20
	go func() {
		for range writes {
			if _, err := io.ReadFull(s.b, got); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	msg := make([]byte, len(got))
	var total uint64
	for range writes {
		// Two collections: the first moves a pool's buffers to its victim
		// cache, the second drops them.
		runtime.GC()
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		if _, err := s.a.Write(msg); err != nil {
			t.Fatal(err)
		}
		runtime.ReadMemStats(&after)
		total += after.TotalAlloc - before.TotalAlloc
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if per := total / writes; per > 2*smallBuf {
		t.Errorf("a %d-byte write allocated %d bytes, want at most %d (a small buffer)", len(msg), per, 2*smallBuf)
	}
}
