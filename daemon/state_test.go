package daemon

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

func TestIdentityPersists(t *testing.T) {
	dir := t.TempDir()
	k1, err := loadIdentity(dir)
	if err != nil {
		t.Fatal(err)
	}
	k2, err := loadIdentity(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(k1, k2) {
		t.Fatal("second start made a new identity")
	}
	fi, err := os.Stat(filepath.Join(dir, identityFile))
	if err != nil {
		t.Fatal(err)
	}
	if mode := fi.Mode().Perm(); mode != 0o600 {
		t.Errorf("identity mode = %o, want 600", mode)
	}
	left, _ := filepath.Glob(filepath.Join(dir, ".*tmp*"))
	if len(left) != 0 {
		t.Errorf("temp files left behind: %v", left)
	}
}

func TestIdentityDamaged(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, identityFile), []byte("short"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := loadIdentity(dir); err == nil {
		t.Fatal("damaged identity accepted")
	}
}

func TestBootCounterGrows(t *testing.T) {
	dir := t.TempDir()
	for want := uint32(1); want <= 3; want++ {
		got, err := nextBoot(dir)
		if err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Fatalf("boot = %d, want %d", got, want)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, bootFile), []byte{0xff, 0xff, 0xff, 0xff}, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := nextBoot(dir); err == nil {
		t.Fatal("exhausted boot counter wrapped")
	}
	if err := os.WriteFile(filepath.Join(dir, bootFile), []byte{1}, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := nextBoot(dir); err == nil {
		t.Fatal("damaged boot counter accepted")
	}
}
