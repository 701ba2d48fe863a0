package daemon

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"meshd/rooms"
)

// pinsFile, in the state directory, maps each room name this daemon
// joined to the host key it first joined it under (hex), so that a later
// announcement of the name under another key is flagged, across restarts.
const pinsFile = "pins.json"

func (d *Daemon) pinsPath() string { return filepath.Join(d.cfg.StateDir, pinsFile) }

// loadPins reads the pins into the directory. A missing file means none.
func (d *Daemon) loadPins() error {
	b, err := os.ReadFile(d.pinsPath())
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("pins: %w", err)
	}
	var pins map[string]string
	if err := json.Unmarshal(b, &pins); err != nil {
		return fmt.Errorf("pins: %s: %w", d.pinsPath(), err)
	}
	for name, key := range pins {
		q, err := hex.DecodeString(key)
		if err != nil || len(q) != 32 || rooms.ValidateName(name) != nil {
			return fmt.Errorf("pins: %s: entry %q: not a room name and a hex host key", d.pinsPath(), name)
		}
		d.dir.Pin(name, [32]byte(q))
	}
	return nil
}

// pin records the host key of a room just joined, and writes the pins if
// that changed them: at the first join of a name, or at a join that named
// the key (name@fp) when the name was pinned to another.
func (d *Daemon) pin(kn rooms.Known, explicit bool) {
	if _, pinned := d.dir.Pinned(kn.Room); pinned && !explicit {
		return
	}
	if !d.dir.Pin(kn.Room, kn.HostKey) {
		return
	}
	pins := make(map[string]string)
	for name, q := range d.dir.Pins() {
		pins[name] = hex.EncodeToString(q[:])
	}
	b, err := json.MarshalIndent(pins, "", "  ")
	if err == nil {
		err = writeFileAtomic(d.pinsPath(), append(b, '\n'))
	}
	if err != nil {
		d.log.Warn("cannot save the room's host key; it is pinned until meshd restarts", "room", kn.Ref(), "err", err)
	}
}
