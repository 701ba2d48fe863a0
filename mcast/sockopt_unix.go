//go:build unix && !linux

package mcast

import (
	"net/netip"
	"syscall"

	"golang.org/x/net/ipv4"
	"golang.org/x/sys/unix"
)

// control prepares the socket before bind.
func control(_, _ string, rc syscall.RawConn) error {
	var err error
	cerr := rc.Control(func(fd uintptr) {
		// Several daemons on one host share the port; on the BSDs
		// SO_REUSEADDR allows that for multicast.
		err = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEADDR, 1)
	})
	if cerr != nil {
		return cerr
	}
	return err
}

// parseDst returns the destination address reported in oob, or the zero
// Addr if there is none.
func parseDst(oob []byte) netip.Addr {
	var cm ipv4.ControlMessage
	if err := cm.Parse(oob); err != nil {
		return netip.Addr{}
	}
	dst, _ := netip.AddrFromSlice(cm.Dst)
	return dst.Unmap()
}
