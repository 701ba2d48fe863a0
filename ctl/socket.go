package ctl

import (
	"fmt"
	"os"
	"path/filepath"
)

// SystemSocket is where a system-wide meshd (root, or a systemd service)
// listens.
const SystemSocket = "/run/meshd/meshd.sock"

// DefaultSocketPath is where a meshd started without a configured socket
// listens: the system path for root and for systemd services (which get
// RUNTIME_DIRECTORY), else a per-user path so that an unprivileged meshd on
// a laptop needs no setup.
func DefaultSocketPath() string {
	if dir := os.Getenv("RUNTIME_DIRECTORY"); dir != "" {
		return filepath.Join(dir, "meshd.sock")
	}
	if os.Geteuid() == 0 {
		return SystemSocket
	}
	if dir := os.Getenv("XDG_RUNTIME_DIR"); dir != "" {
		return filepath.Join(dir, "meshd", "meshd.sock")
	}
	return filepath.Join(os.TempDir(), fmt.Sprintf("meshd-%d", os.Geteuid()), "meshd.sock")
}

// ClientSocketPath is the socket a front end dials when it is not told one:
// $MESHD_SOCKET, else the system socket if it exists, else the socket a
// meshd run by this user would use.
func ClientSocketPath() string {
	if p := os.Getenv("MESHD_SOCKET"); p != "" {
		return p
	}
	if _, err := os.Stat(SystemSocket); err == nil {
		return SystemSocket
	}
	return DefaultSocketPath()
}
