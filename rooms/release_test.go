package rooms

import (
	"testing"
	"time"

	"meshd/mcast/memnet"
)

// TestQuietRoomReleasesStore: a room quiet for quietBlocks tells its
// store to let go of what it holds for appends (the log's spare room),
// once, not at every tick of the quiet, nor before.
func TestQuietRoomReleasesStore(t *testing.T) {
	tr := newTestRoom(t, memnet.New(1), "general")
	releases := func() int {
		tr.store.mu.Lock()
		defer tr.store.mu.Unlock()
		return tr.store.releases
	}
	if _, err := tr.seq.Say("one"); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	tr.host.Tick(now.Add(quietBlocks / 2))
	if n := releases(); n != 0 {
		t.Fatalf("store released %d times after %v of quiet, want 0", n, quietBlocks/2)
	}
	for i := range 5 {
		tr.host.Tick(now.Add(quietBlocks + time.Duration(i+1)*time.Second))
	}
	if n := releases(); n != 1 {
		t.Fatalf("store released %d times over 5 s past %v of quiet, want once", n, quietBlocks)
	}
}
