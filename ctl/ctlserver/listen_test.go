package ctlserver_test

import (
	"io/fs"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"meshd/ctl/ctlserver"
)

func TestListenModes(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "run", "meshd")
	path := filepath.Join(dir, "meshd.sock")
	ln, err := ctlserver.Listen(path, "")
	if err != nil {
		t.Fatalf("Listen: %v", err)
	}
	defer ln.Close()
	if got := ln.Addr().String(); got != path {
		t.Errorf("listening on %q, want the pathname socket %q", got, path)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Type() != fs.ModeSocket || fi.Mode().Perm() != ctlserver.SocketMode {
		t.Errorf("socket mode = %v, want socket with %v", fi.Mode(), ctlserver.SocketMode)
	}
	di, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if di.Mode().Perm() != ctlserver.DirMode {
		t.Errorf("created directory mode = %v, want %v", di.Mode().Perm(), ctlserver.DirMode)
	}
}

func TestListenExistingDirUntouched(t *testing.T) {
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	ln, err := ctlserver.Listen(filepath.Join(dir, "s"), "")
	if err != nil {
		t.Fatalf("Listen: %v", err)
	}
	defer ln.Close()
	if di, err := os.Stat(dir); err != nil || di.Mode().Perm() != 0o755 {
		t.Errorf("existing directory mode = %v (%v), want it left at 0755", di.Mode().Perm(), err)
	}
}

func TestListenGroup(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("chgrp to another group needs root")
	}
	g, err := user.LookupGroup("daemon")
	if err != nil {
		t.Skipf("no group to test with: %v", err)
	}
	gid, _ := strconv.Atoi(g.Gid)
	dir := filepath.Join(t.TempDir(), "meshd")
	path := filepath.Join(dir, "meshd.sock")
	ln, err := ctlserver.Listen(path, "daemon")
	if err != nil {
		t.Fatalf("Listen: %v", err)
	}
	defer ln.Close()
	for _, p := range []string{dir, path} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if got := int(fi.Sys().(*syscall.Stat_t).Gid); got != gid {
			t.Errorf("group of %s = %d, want %d (daemon)", p, got, gid)
		}
	}

	// A group that does not exist is skipped, not an error.
	ln2, err := ctlserver.Listen(filepath.Join(t.TempDir(), "s"), "no-such-group-meshd-test")
	if err != nil {
		t.Fatalf("Listen with a missing group: %v", err)
	}
	ln2.Close()
}

func TestListenReplacesStaleSocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "meshd.sock")
	old, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	// Leave the file behind as a crashed daemon would.
	old.(*net.UnixListener).SetUnlinkOnClose(false)
	old.Close()
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("stale socket missing before the test: %v", err)
	}

	ln, err := ctlserver.Listen(path, "")
	if err != nil {
		t.Fatalf("Listen over a stale socket: %v", err)
	}
	defer ln.Close()
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatalf("dial the new socket: %v", err)
	}
	c.Close()
}

func TestListenRefusesLiveSocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "meshd.sock")
	ln, err := ctlserver.Listen(path, "")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, err = ctlserver.Listen(path, "")
	if want := "another meshd is already listening on " + path; err == nil || err.Error() != want {
		t.Errorf("second Listen = %v, want %q", err, want)
	}
}

func TestListenRefusesBadPaths(t *testing.T) {
	regular := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(regular, []byte("keep me"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct{ path, want string }{
		{regular, "exists and is not a socket"},
		{"@meshd", "abstract socket"},
		{"", "empty socket path"},
	}
	for _, tt := range tests {
		ln, err := ctlserver.Listen(tt.path, "")
		if err == nil {
			ln.Close()
			t.Errorf("Listen(%q) succeeded, want an error", tt.path)
			continue
		}
		if !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Listen(%q) = %v, want it to mention %q", tt.path, err, tt.want)
		}
	}
	if b, err := os.ReadFile(regular); err != nil || string(b) != "keep me" {
		t.Errorf("regular file at the socket path was changed: %q, %v", b, err)
	}
}
