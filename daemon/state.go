package daemon

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// State file names inside the state directory.
const (
	identityFile = "identity.key" // the 32-byte Ed25519 seed
	bootFile     = "boot"         // the boot counter, a big-endian uint32
)

// loadIdentity reads the daemon's Ed25519 key, making and storing one on
// first start.
func loadIdentity(dir string) (ed25519.PrivateKey, error) {
	path := filepath.Join(dir, identityFile)
	seed, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		seed = make([]byte, ed25519.SeedSize)
		if _, err := rand.Read(seed); err != nil {
			return nil, fmt.Errorf("new identity: %w", err)
		}
		if err := writeFileAtomic(path, seed); err != nil {
			return nil, fmt.Errorf("store identity: %w", err)
		}
	case err != nil:
		return nil, fmt.Errorf("read identity: %w", err)
	case len(seed) != ed25519.SeedSize:
		return nil, fmt.Errorf("identity %s is %d bytes, want %d: it is damaged; move it away to make a new identity (rooms you host will get a new key)", path, len(seed), ed25519.SeedSize)
	}
	return ed25519.NewKeyFromSeed(seed), nil
}

// nextBoot increments and stores the boot counter and returns the new
// value. It is stored before it is used, so that after any crash the next
// boot's epochs and serials are higher than every one already sent:
// nothing that must grow depends on a clock that routers may not have.
func nextBoot(dir string) (uint32, error) {
	path := filepath.Join(dir, bootFile)
	var boot uint32
	b, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return 0, fmt.Errorf("read boot counter: %w", err)
	case len(b) != 4:
		return 0, fmt.Errorf("boot counter %s is %d bytes, want 4: it is damaged; it cannot be guessed safely, so restore it or remove it together with %s", path, len(b), identityFile)
	default:
		boot = binary.BigEndian.Uint32(b)
	}
	if boot == ^uint32(0) {
		return 0, fmt.Errorf("boot counter %s is exhausted; remove it together with %s to start over under a new identity", path, identityFile)
	}
	boot++
	if err := writeFileAtomic(path, binary.BigEndian.AppendUint32(nil, boot)); err != nil {
		return 0, fmt.Errorf("store boot counter: %w", err)
	}
	return boot, nil
}

// writeFileAtomic replaces path with data so that a crash leaves either
// the old or the new contents: temp file, fsync, rename, fsync of the
// directory. The file is readable by its owner only.
func writeFileAtomic(path string, data []byte) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
