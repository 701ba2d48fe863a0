package daemon

import (
	"encoding/hex"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"meshd/rooms/roomlog"
	"meshd/rooms/wire"
)

// TestLogHoldsAnyBatch: the log takes any batch a host may sign; a batch
// it refused would go out unlogged, and no member could fetch it.
func TestLogHoldsAnyBatch(t *testing.T) {
	if roomlog.MaxBatch < wire.MaxBatch || roomlog.MaxCount < wire.MaxRecords {
		t.Errorf("roomlog takes batches of %d bytes and %d records, wire allows %d and %d", roomlog.MaxBatch, roomlog.MaxCount, wire.MaxBatch, wire.MaxRecords)
	}
}

// TestOpenStoreDropsOldFormatHistory: a room's log of v1 batches, which
// no member could verify, is removed, and the room starts above its
// reservation rather than at the old log's end.
func TestOpenStoreDropsOldFormatHistory(t *testing.T) {
	dir := t.TempDir()
	d := &Daemon{log: slog.New(slog.DiscardHandler)}
	d.cfg.StateDir = filepath.Join(dir, "state")
	d.cfg.Host.HistoryDir = filepath.Join(dir, "history")
	id := [wire.RoomIDLen]byte{1, 2, 3}
	old := filepath.Join(d.cfg.Host.HistoryDir, hex.EncodeToString(id[:]))
	if err := os.MkdirAll(old, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(old, "00000000000000000001.seg"), []byte("a v1 log"), 0o600); err != nil {
		t.Fatal(err)
	}

	s, err := d.openStore("general", id)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := os.Stat(old); !os.IsNotExist(err) {
		t.Errorf("%s: %v, want it removed", old, err)
	}
	if err := s.Append(1, 1, []byte("batch")); err != nil {
		t.Fatal(err)
	}
	if s.Next() != 2 {
		t.Errorf("Next() = %d after one record, want 2", s.Next())
	}
	if _, err := os.Stat(old + historyFormat); err != nil {
		t.Errorf("the log is not in %s: %v", old+historyFormat, err)
	}
}
