package ctlserver

import (
	"net"

	"golang.org/x/sys/unix"
)

// peerCred asks the kernel who connected c (SO_PEERCRED): the credentials
// of the process at connect time, which it cannot forge.
func peerCred(c *net.UnixConn) (Peer, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return Peer{}, err
	}
	var uc *unix.Ucred
	var serr error
	if err := raw.Control(func(fd uintptr) {
		uc, serr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return Peer{}, err
	}
	if serr != nil {
		return Peer{}, serr
	}
	return Peer{PID: uc.Pid, UID: uc.Uid, GID: uc.Gid}, nil
}
