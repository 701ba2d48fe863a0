package daemon

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"meshd/rooms"
	"meshd/rooms/roomlog"
	"meshd/rooms/wire"
)

// bootIDFile names the running kernel: it changes at every reboot.
const bootIDFile = "/proc/sys/kernel/random/boot_id"

// roomStore keeps a hosted room's sequence: its log (in tmpfs by default)
// and, in the state directory, the reservation of sequence numbers with
// the boot it was made in.
type roomStore struct {
	*roomlog.Log
	resPath    string
	accessPath string // the room's invites and the keys they admitted
	bootID     []byte
	start      uint64
}

var _ rooms.Store = (*roomStore)(nil)

// historyFormat ends the name of a hosted room's log directory: the batch
// format its batches are in (wire.BatchContext), so that a log is only
// ever read by a daemon that writes the same format.
const historyFormat = ".b3"

// oldHistoryFormats end the names of the log directories of older batch
// formats: v1 (key id and nick in every record) in the directory named by
// the room id alone, v2 (a record's kind and length in 3 fixed bytes).
var oldHistoryFormats = []string{"", ".b2"}

func dirExists(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.IsDir()
}

// openStore opens the store of hosted room name.
//
// Where it starts: the log is exact while the kernel that held its page
// cache still runs, since meshd writes each batch before sending it; a
// process kill loses nothing. After a reboot, a log in tmpfs is gone and
// one on disk may lack its unsynced tail, so the room resumes above the
// reservation instead, and members are told of the unused numbers as a
// gap. No sequence number is ever assigned twice.
func (d *Daemon) openStore(name string, id [wire.RoomIDLen]byte) (rooms.Store, error) {
	idHex := hex.EncodeToString(id[:])
	dir := d.cfg.Host.HistoryDir
	if dir == "" {
		dir = filepath.Join(filepath.Dir(d.cfg.Socket), "history")
	}
	// A log of an older batch format cannot be served: members would
	// reject every batch in it. It goes, and the room resumes above its
	// reservation, so that members asking for it are told it is gone.
	for _, f := range oldHistoryFormats {
		if old := filepath.Join(dir, idHex+f); dirExists(old) {
			d.log.Warn("removing a room's history of an older batch format", "room", name, "dir", old)
			if err := os.RemoveAll(old); err != nil {
				return nil, fmt.Errorf("history: %w", err)
			}
		}
	}
	log, err := roomlog.Open(roomlog.Options{
		Dir:    filepath.Join(dir, idHex+historyFormat),
		Keep:   d.cfg.Host.History,
		Logger: d.log.With("component", "roomlog", "room", name),
	})
	if err != nil {
		return nil, fmt.Errorf("history: %w", err)
	}
	s := &roomStore{
		Log:        log,
		resPath:    filepath.Join(d.cfg.StateDir, "rooms", idHex+".seq"),
		accessPath: filepath.Join(d.cfg.StateDir, "rooms", idHex+".access"),
	}
	if b, err := os.ReadFile(bootIDFile); err == nil {
		s.bootID = bytes.TrimSpace(b)
	}
	reserved, resBoot, err := readReservation(s.resPath)
	if err != nil {
		log.Close()
		return nil, err
	}
	s.start = log.Next()
	if s.start == 0 || len(s.bootID) == 0 || !bytes.Equal(resBoot, s.bootID) {
		s.start = max(s.start, reserved)
	}
	return s, nil
}

// Start implements rooms.Store.
func (s *roomStore) Start() uint64 { return s.start }

// Reserve implements rooms.Store: the reservation file holds the high-water
// mark and the boot it was written in.
func (s *roomStore) Reserve(hw uint64) error {
	if err := os.MkdirAll(filepath.Dir(s.resPath), 0o700); err != nil {
		return err
	}
	b := binary.BigEndian.AppendUint64(nil, hw)
	return writeFileAtomic(s.resPath, append(b, s.bootID...))
}

func readReservation(path string) (hw uint64, bootID []byte, err error) {
	b, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return 0, nil, nil
	case err != nil:
		return 0, nil, fmt.Errorf("read sequence reservation: %w", err)
	case len(b) < 8:
		return 0, nil, fmt.Errorf("sequence reservation %s is damaged (%d bytes); remove it only together with the room's history, or sequence numbers may be reused", path, len(b))
	}
	return binary.BigEndian.Uint64(b), bytes.TrimSpace(b[8:]), nil
}

// maxAccessFile bounds what LoadAccess reads: a room's invites and admitted
// keys fill well under 2 MiB at their caps.
const maxAccessFile = 4 << 20

// LoadAccess implements rooms.Store.
func (s *roomStore) LoadAccess() ([]byte, error) {
	f, err := os.Open(s.accessPath)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read invites: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxAccessFile+1))
	if err != nil {
		return nil, fmt.Errorf("read invites: %w", err)
	}
	if len(b) > maxAccessFile {
		return nil, fmt.Errorf("invites file %s is larger than %d bytes; it is damaged", s.accessPath, maxAccessFile)
	}
	return b, nil
}

// SaveAccess implements rooms.Store: an atomic write, mode 0600.
func (s *roomStore) SaveAccess(b []byte) error {
	if err := os.MkdirAll(filepath.Dir(s.accessPath), 0o700); err != nil {
		return err
	}
	return writeFileAtomic(s.accessPath, b)
}
