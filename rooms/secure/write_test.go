package secure

import (
	"bytes"
	"io"
	"runtime"
	"testing"

	"github.com/flynn/noise"
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
	// A small buffer, and what else a write may allocate (the race
	// detector's pools drop some of what is put back), is far below a
	// large one.
	if per, most := total/writes, uint64(hdrLen+maxSealed)/4; per > most {
		t.Errorf("a %d-byte write allocated %d bytes, want at most %d (not a %d-byte buffer)", len(msg), per, most, hdrLen+maxSealed)
	}
}

// TestDirectionMatchesNoise: a direction seals and opens records as
// Noise's CipherState for ChaChaPoly does, nonce for nonce (past the
// first byte of the nonce), so a session keeps speaking with peers whose
// sessions use CipherState; and it refuses a forged record, as the
// CipherState does, without moving on.
func TestDirectionMatchesNoise(t *testing.T) {
	key := [32]byte{9, 8, 7}
	ours := newDirection(noise.UnsafeNewCipherState(testSuite, key, 0))
	theirs := noise.UnsafeNewCipherState(testSuite, key, 0)
	back := newDirection(noise.UnsafeNewCipherState(testSuite, key, 0))
	backTheirs := noise.UnsafeNewCipherState(testSuite, key, 0)
	for i := range 300 {
		ad := []byte{byte(i >> 8), byte(i)}
		msg := bytes.Repeat([]byte{byte(i)}, i%40)
		sealed, err := ours.seal(nil, ad, msg)
		if err != nil {
			t.Fatal(err)
		}
		want, err := backTheirs.Encrypt(nil, ad, msg)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(sealed, want) {
			t.Fatalf("record %d sealed as %x, CipherState seals %x", i, sealed, want)
		}
		if got, err := theirs.Decrypt(nil, ad, sealed); err != nil || !bytes.Equal(got, msg) {
			t.Fatalf("record %d: CipherState opens %x, %v", i, got, err)
		}
		forged := bytes.Clone(want)
		forged[0] ^= 1
		if _, err := back.open(nil, ad, forged); err == nil {
			t.Fatalf("record %d: a forged record opened", i)
		}
		if got, err := back.open(nil, ad, want); err != nil || !bytes.Equal(got, msg) {
			t.Fatalf("record %d: CipherState's record opens as %x, %v", i, got, err)
		}
	}
}
