package daemon

import (
	"crypto/ed25519"
	"log/slog"
	"os"
	"strings"
	"testing"

	"meshd/rooms"
	"meshd/rooms/wire"
)

func pinDaemon(t *testing.T, dir string) *Daemon {
	t.Helper()
	cfg := reloadBase()
	cfg.StateDir = dir
	d := &Daemon{cfg: cfg, log: slog.New(slog.DiscardHandler)}
	d.dir = rooms.NewDirectory(&d.stats, nil)
	if err := d.loadPins(); err != nil {
		t.Fatalf("loadPins: %v", err)
	}
	return d
}

func TestPinsPersist(t *testing.T) {
	dir := t.TempDir()
	d := pinDaemon(t, dir)
	key := func(b byte) [ed25519.PublicKeySize]byte { return [32]byte{b} }
	kn := func(k [32]byte) rooms.Known { return rooms.Known{Announce: wire.Announce{Room: "ops", HostKey: k}} }

	d.pin(kn(key(1)), false)
	d.pin(kn(key(2)), false) // a bare-name join never moves the pin
	if q, _ := pinDaemon(t, dir).dir.Pinned("ops"); q != key(1) {
		t.Fatalf("pin after restart = %x, want the first key", q[:2])
	}
	d.pin(kn(key(3)), true) // a join by name@fp does
	if q, _ := pinDaemon(t, dir).dir.Pinned("ops"); q != key(3) {
		t.Fatalf("pin after an explicit join = %x, want key 3", q[:2])
	}
	if fi, err := os.Stat(d.pinsPath()); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("pins file: %v, mode %v; want 0600", err, fi.Mode())
	}

	if err := os.WriteFile(d.pinsPath(), []byte(`{"ops": "zz"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	d2 := &Daemon{cfg: d.cfg, dir: rooms.NewDirectory(new(rooms.Stats), nil)}
	if err := d2.loadPins(); err == nil || !strings.Contains(err.Error(), "pins.json") {
		t.Errorf("loadPins of a bad file = %v, want an error naming it", err)
	}
}
