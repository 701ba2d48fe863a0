//go:build darwin || freebsd

package ctlserver

import (
	"net"

	"golang.org/x/sys/unix"
)

// peerCred asks the kernel who connected c (LOCAL_PEERCRED).
func peerCred(c *net.UnixConn) (Peer, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return Peer{}, err
	}
	var xu *unix.Xucred
	var serr error
	if err := raw.Control(func(fd uintptr) {
		xu, serr = unix.GetsockoptXucred(int(fd), unix.SOL_LOCAL, unix.LOCAL_PEERCRED)
	}); err != nil {
		return Peer{}, err
	}
	if serr != nil {
		return Peer{}, serr
	}
	p := Peer{UID: xu.Uid}
	if xu.Ngroups > 0 {
		p.GID = xu.Groups[0]
	}
	return p, nil
}
