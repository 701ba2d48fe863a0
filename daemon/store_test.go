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

// TestOpenStoreDropsOldFormatHistory: a room's log of v1 or v2 batches,
// which no member could verify, is removed, and the room starts above its
// reservation rather than at the old log's end.
func TestOpenStoreDropsOldFormatHistory(t *testing.T) {
	dir := t.TempDir()
	d := &Daemon{log: slog.New(slog.DiscardHandler)}
	d.cfg.StateDir = filepath.Join(dir, "state")
	d.cfg.Host.HistoryDir = filepath.Join(dir, "history")
	id := [wire.RoomIDLen]byte{1, 2, 3}
	old := filepath.Join(d.cfg.Host.HistoryDir, hex.EncodeToString(id[:]))
	for _, f := range []string{"", ".b2"} {
		if err := os.MkdirAll(old+f, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(old+f, "00000000000000000001.seg"), []byte("an old log"), 0o600); err != nil {
			t.Fatal(err)
		}
	}

	s, err := d.openStore("general", id)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, f := range []string{"", ".b2"} {
		if _, err := os.Stat(old + f); !os.IsNotExist(err) {
			t.Errorf("%s: %v, want it removed", old+f, err)
		}
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
