package ctlserver

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

const (
	// SocketMode lets the owner and the socket's group drive meshd; the
	// group (usually "meshd") is how an administrator grants access.
	SocketMode fs.FileMode = 0o660
	// DirMode is the mode of a socket directory Listen creates: members of
	// the group may reach the socket, nobody else may even see it.
	DirMode fs.FileMode = 0o750
)

// staleDialTimeout bounds the liveness probe of an existing socket; a
// live daemon accepts at once, so waiting longer only delays startup.
const staleDialTimeout = time.Second

// Listen listens on the Unix socket path for the control API. It creates
// the socket's directory (DirMode) if missing, replaces a stale socket
// left by a daemon that died, and refuses to start if another daemon still
// answers on path. The socket gets SocketMode; when running as root and
// group exists, the socket and a directory Listen created are given to
// group. A group that does not exist is skipped: access is then limited
// to root.
//
// Serve checks every connection on the returned listener against a Policy
// with group as the operator group: root, the daemon's own user and
// members of group may do everything, anyone else only read the status
// and the metrics.
func Listen(path, group string) (net.Listener, error) {
	if path == "" {
		return nil, errors.New("ctlserver: listen: empty socket path")
	}
	// Go reads a leading "@" as a Linux abstract socket, which has no file
	// permissions at all; the control socket must be protected by them.
	if strings.HasPrefix(path, "@") {
		return nil, fmt.Errorf("ctlserver: listen: socket path %q would be an abstract socket: use a file path such as /run/meshd/meshd.sock", path)
	}
	gid := groupID(group)

	dir := filepath.Dir(path)
	if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		if err := os.MkdirAll(dir, DirMode); err != nil {
			return nil, fmt.Errorf("ctlserver: create socket directory: %w", err)
		}
		// MkdirAll's mode is filtered by the umask.
		if err := os.Chmod(dir, DirMode); err != nil {
			return nil, fmt.Errorf("ctlserver: chmod socket directory: %w", err)
		}
		if gid >= 0 {
			if err := os.Chown(dir, -1, gid); err != nil {
				return nil, fmt.Errorf("ctlserver: chgrp socket directory to %s: %w", group, err)
			}
		}
	}

	if err := removeStale(path); err != nil {
		return nil, err
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("ctlserver: listen: %w", err)
	}
	// The socket briefly has the umask's mode; DirMode on a directory we
	// create keeps strangers out during that window.
	if err := os.Chmod(path, SocketMode); err != nil {
		ln.Close()
		return nil, fmt.Errorf("ctlserver: chmod socket: %w", err)
	}
	if gid >= 0 {
		if err := os.Chown(path, -1, gid); err != nil {
			ln.Close()
			return nil, fmt.Errorf("ctlserver: chgrp socket to %s: %w", group, err)
		}
	}
	return &policyListener{Listener: ln, policy: newPolicy(group)}, nil
}

// removeStale removes a socket file nobody answers on. Unix sockets outlive
// the process that bound them, so a crashed daemon leaves one behind.
func removeStale(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("ctlserver: check existing socket: %w", err)
	}
	if fi.Mode().Type() != fs.ModeSocket {
		return fmt.Errorf("ctlserver: %s exists and is not a socket: remove it or choose another socket path", path)
	}
	c, err := net.DialTimeout("unix", path, staleDialTimeout)
	if err == nil {
		c.Close()
		return fmt.Errorf("another meshd is already listening on %s", path)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("ctlserver: remove stale socket: %w", err)
	}
	return nil
}

// groupID returns the gid to give the socket to, or -1 to leave it alone:
// only root may chgrp to an arbitrary group, and a group that cannot be
// looked up is treated as absent rather than stopping the daemon.
func groupID(group string) int {
	if group == "" || os.Geteuid() != 0 {
		return -1
	}
	g, err := user.LookupGroup(group)
	if err != nil {
		return -1
	}
	gid, err := strconv.Atoi(g.Gid)
	if err != nil {
		return -1
	}
	return gid
}
